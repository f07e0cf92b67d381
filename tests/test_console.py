"""What the command line prints: tables that line up, numbers that read."""

from trading_ml.console import format_table


def test_a_table_lines_up_its_columns_and_separates_thousands():
    text = format_table(("model", "rows", "note"), [("regime_rf", 12507, "ok"), ("direction", 3, "a longer note")])
    lines = text.splitlines()
    assert lines[0] == "model      rows    note"
    assert lines[1] == "regime_rf  12,507  ok"
    assert lines[2] == "direction  3       a longer note"
