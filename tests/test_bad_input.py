"""Every bad input gets one clear line and no waste: CLI options, config keys, environment values, CSV
files and API bodies, each with its exit code or HTTP status and the line it prints. (The DAG's
Params are in tests/dags.)"""

from __future__ import annotations

import json

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.conftest import REPO, make_settings
from tests.test_model_files import copy_of  # noqa: F401 (a fixture)
from trading_ml.cli import main

BASE = ["ingest", "--symbols", "AAPL", "--timeframes", "1d", "--as-of", "2026-11-20"]
HUGE = "A" * 1_000_000


def run_cli(capsys, monkeypatch, args, env=None) -> tuple[int, str, str]:
    for name in ("TRADING_ML_MONGO_URI", "TRADING_ML_SOURCE", "TRADING_ML_DATA_DIR", "TRADING_ML_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own exits
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, expected: str) -> None:
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line, err
    assert expected in line, line
    assert len(line) < 700, f"{len(line)} characters"


OPTIONS = {  # extra argv -> the line's expected text
    "empty symbols": (["--symbols", ""], "--symbols '' lists nothing"),
    "commas only": (["--symbols", ",,,"], "--symbols ',,,' lists nothing"),
    "empty timeframes": (["--timeframes", ""], "--timeframes '' lists nothing"),
    "unknown timeframe": (["--timeframes", "4h"], "unknown timeframe '4h'"),
    "malformed as-of": (["--as-of", "notadate"], "as-of date 'notadate' is not YYYY-MM-DD"),
    "future as-of": (["--as-of", "2999-01-01"], "is in the future"),
    "ticker with a space": (["--symbols", "A B"], "'A B' is not a ticker"),
    "a one-megabyte ticker": (["--symbols", HUGE], "AAAAAAAAAA... is not a ticker"),
    "unknown source": (["--source", "nonsense"], "unknown source 'nonsense'"),
    "missing csv folder": (["--source", "csv:/nonexistent"], "csv source folder /nonexistent does not exist"),
    "data dir under /proc": (["--data-dir", "/proc/trading-ml"], "cannot use /proc/trading-ml"),
    "empty data dir": (["--data-dir", ""], "--data-dir is empty"),
    "bad run id": (["--run-id", "../../etc"], "run id '../../etc' is not valid"),
    "empty run id": (["--run-id", ""], "argument --run-id: is empty"),
    "as-of in year 1": (["--as-of", "0001-01-01"], "as-of date 0001-01-01 is before 1900-01-01"),
    "missing config file": (["--config", "/nonexistent.yaml"], "config file /nonexistent.yaml not found"),
    "unknown option": (["--bogus"], "unrecognized arguments: --bogus"),
}


@pytest.mark.parametrize("case", OPTIONS)
def test_a_bad_option_exits_2_with_one_line(case, capsys, monkeypatch, tmp_path):
    extra, expected = OPTIONS[case]
    args = [*BASE, "--data-dir", str(tmp_path), *extra] if "--data-dir" not in extra else [*BASE, *extra]
    code, out, err = run_cli(capsys, monkeypatch, args)
    assert code == 2 and out == ""
    assert_one_line(err, expected)
    assert not (tmp_path / "runs").exists()  # nothing started


@pytest.mark.parametrize(
    "args, expected",
    [
        (["serve", "--port", "0"], "'0' is not a port"),
        (["serve", "--port", "http"], "'http' is not a port"),
        (["promote"], "the following arguments are required: model, version"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        (["serve", "--host", "256.0.0.1"], "argument --host: '256.0.0.1' is not an IP address or host name"),
    ],
    ids=["port 0", "port text", "promote without arguments", "unknown command", "host 256.0.0.1"],
)
def test_a_bad_command_line_exits_2_with_one_line(args, expected, capsys, monkeypatch):
    code, _, err = run_cli(capsys, monkeypatch, args)
    assert code == 2
    assert_one_line(err, expected)


def test_sync_without_a_uri_is_bad_input_not_a_service_to_retry(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(capsys, monkeypatch, ["sync", "--data-dir", str(tmp_path)])
    assert code == 2
    assert_one_line(err, "sync needs a MongoDB URI: pass --mongo-uri")


def test_a_symbol_repeated_30000_times_is_fetched_once_with_one_warning(capsys, monkeypatch, tmp_path, caplog):
    args = [
        "ingest",
        "--symbols",
        ",".join(["AAPL"] * 30_000),
        "--timeframes",
        "1d",
        "--as-of",
        "2026-11-20",
        "--data-dir",
        str(tmp_path),
    ]
    with caplog.at_level("WARNING"):
        code, out, err = run_cli(capsys, monkeypatch, args)
    assert code == 0 and "ingest: 1/1 pairs" in out
    repeats = [r.getMessage() for r in caplog.records if "repeated" in r.getMessage()]
    assert repeats == ["29999 repeated symbol(s) left out: each symbol is fetched once"]
    assert len(caplog.records) < 10


CONFIG = {  # (section, values) merged into the repo's config.yaml -> expected text
    "negative epochs": (
        "models",
        {"direction_lstm": {"epochs": -3}},
        "models.direction_lstm.epochs = -3: must be >= 1",
    ),
    "no trees": ("models", {"regime_rf": {"trees": 0}}, "models.regime_rf.trees = 0: must be >= 1"),
    "empty sequences": (
        "models",
        {"volatility_lstm": {"sequence_length": 0}},
        "models.volatility_lstm.sequence_length = 0: must be >= 1",
    ),
    "empty batches": ("models", {"direction_lstm": {"batch": 0}}, "models.direction_lstm.batch = 0: must be >= 1"),
    "typo in a model key": (
        "models",
        {"direction_lstm": {"epoch": 3}},
        "models.direction_lstm.epoch = 3: unknown key; did you mean 'epochs'?",
    ),
    "a model's key in the shared section": (
        "models",
        {"epochs": 3},
        "models.epochs = 3: unknown key; known keys here:",
    ),
    "a key of the flat models section": (
        "models",
        {"lstm_epochs": 3},
        "models: `lstm_epochs` now belongs to its model: write models.direction_lstm.epochs",
    ),
    "a model that takes no parameters": ("models", {"direction": {"weights": [1, 2]}}, "models.direction: unknown key"),
    "garch given a parameter": (
        "models",
        {"volatility_garch": {"p": 2}},
        "models.volatility_garch.p = 2: unknown key; this section takes none: remove it",
    ),
    "folds leave no training": ("models", {"folds": 9}, "models: folds x test_share + validation_share is 1.00"),
    "text for a number": (
        "models",
        {"direction_xgboost": {"rounds": "many"}},
        "models.direction_xgboost.rounds = 'many': must be a whole number",
    ),
    "unknown model timeframe": ("models", {"timeframe": "1w"}, "models.timeframe = '1w': must be one of '1d' or '1h'"),
    "confidence of one": ("models", {"confidence": 1}, "models.confidence = 1: must be < 1"),
    "epoch not a date": (
        "sources",
        {"synthetic": {"epoch": "notadate"}},
        "sources.synthetic.epoch = 'notadate': must be a date YYYY-MM-DD",
    ),
    "negative share": ("validation", {"max_missing_share": -0.5}, "validation.max_missing_share = -0.5: must be >= 0"),
    "share of seven": ("validation", {"min_pass_share": 7}, "validation.min_pass_share = 7: must be <= 1"),
    "fear below calm": (
        "features",
        {"regime": {"fear_vix": 10}},
        "features.regime: fear_vix 10.0 is below calm_vix 20.0",
    ),
    "benchmark not a ticker": (
        "features",
        {"benchmark": "spx index"},
        "features.benchmark = 'spx index': is not a ticker",
    ),
    "zero ping timeout": ("storage", {"ping_timeout_ms": 0}, "storage.ping_timeout_ms = 0: must be >= 1"),
    "retries as words": ("airflow", {"stage_retries": "two"}, "airflow.stage_retries = 'two': must be a whole number"),
    "no body allowed": ("api", {"max_body_bytes": 0}, "api.max_body_bytes = 0: must be >= 1"),
    "unknown timeframe": (
        "timeframes",
        {"4h": {"lookback": "5y"}},
        "timeframes.4h = '4h': must be one of '1d' or '1h'",
    ),
    "lookback in words": (
        "timeframes",
        {"1d": {"lookback": "five years"}},
        "timeframes.1d.lookback = 'five years': is not a lookback",
    ),
    "unknown source": ("source", "nonsense", "source = 'nonsense': is not a source"),
    "unknown section": ("timefrmes", {}, "timefrmes: unknown key; did you mean 'timeframes'?"),
    "a 500-year lookback": (
        "timeframes",
        {"1d": {"lookback": "500y"}},
        "timeframes.1d.lookback = '500y': reaches back more than 50 years",
    ),
    "a boolean for a count": (
        "models",
        {"direction_lstm": {"epochs": True}},
        "models.direction_lstm.epochs = True: must be a whole number",
    ),
    "a boolean for folds": ("models", {"folds": True}, "models.folds = True: must be a whole number"),
    "a boolean for a timeout": (
        "storage",
        {"ping_timeout_ms": False},
        "storage.ping_timeout_ms = False: must be a whole number",
    ),
    "a hundred million epochs": (
        "models",
        {"volatility_lstm": {"epochs": 100_000_000}},
        "models.volatility_lstm.epochs = 100000000: must be <= 10000",
    ),
    "a billion rounds": (
        "models",
        {"direction_xgboost": {"rounds": 1_000_000_000}},
        "models.direction_xgboost.rounds = 1000000000: must be <= 100000",
    ),
    "a 100 GB body": (
        "api",
        {"max_body_bytes": 100_000_000_000},
        "api.max_body_bytes = 100000000000: must be <= 100000000",
    ),
    "a 70-bit seed": (
        "models",
        {"seed": 1180591620717411303424},
        "models.seed = 1180591620717411303424: must be <= 2147483647",
    ),
    "a billion warm-up bars": (
        "features",
        {"warmup_bars": 1_000_000_000},
        "features.warmup_bars = 1000000000: must be <= 10000",
    ),
    "an infinite price-sanity limit": (
        "validation",
        {"max_abs_return": float("inf")},
        "validation.max_abs_return = inf: must be a finite number",
    ),
    "infinite costs": ("models", {"costs_bps": float("inf")}, "models.costs_bps = inf: must be a finite number"),
}


@pytest.mark.parametrize("case", CONFIG)
def test_a_bad_config_key_exits_2_with_one_line_naming_it(case, capsys, monkeypatch, tmp_path):
    section, values, expected = CONFIG[case]
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw[section] = {**raw[section], **values} if isinstance(raw.get(section), dict) else values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, out, err = run_cli(capsys, monkeypatch, [*BASE, "--config", str(path), "--data-dir", str(tmp_path / "data")])
    assert code == 2 and out == ""
    assert_one_line(err, f"{path}: {expected}")


@pytest.mark.parametrize(
    "content, expected",
    [
        (bytes(range(256)), "not a text file (byte 128 is not UTF-8)"),
        (b"models: {a: 1\n  b: [\n", "not valid YAML at line 2, column 4"),
        (b"", "is empty"),
        (b"- a list\n- of things\n", "must be a mapping of settings"),
        (b"universe: {indices: []}\ntimeframes: {1d: {lookback: 5y}}\n", "universe: lists no symbol"),
        (b"a: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "nested more than 20 levels deep"),
        (
            b"data_dir: one\nsource: synthetic\ndata_dir: two\n",
            "at line 3, column 1: key 'data_dir' is given twice in one mapping; keep one",
        ),
        (b"a: " + b"x" * 1_100_000 + b"\n", "more than a config can be (1,000,000)"),
    ],
    ids=[
        "binary",
        "yaml syntax",
        "empty",
        "a list",
        "no symbols",
        "nested 10,000 deep",
        "a key twice",
        "over a megabyte",
    ],
)
def test_an_unreadable_config_file_exits_2_with_one_line(content, expected, capsys, monkeypatch, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    code, _, err = run_cli(capsys, monkeypatch, [*BASE, "--config", str(path)])
    assert code == 2
    assert_one_line(err, expected)


ENVIRONMENT = {
    "wrong scheme": (
        {"TRADING_ML_MONGO_URI": "mongo://db"},
        "TRADING_ML_MONGO_URI: is not a MongoDB URI (Invalid URI scheme)",
    ),
    "port not a number": (
        {"TRADING_ML_MONGO_URI": "mongodb://user:s3cret@db:notaport/"},
        "TRADING_ML_MONGO_URI: is not a MongoDB URI (Port",
    ),
    "unescaped password": (
        {"TRADING_ML_MONGO_URI": "mongodb://user:pa@s3cret@db/"},
        "TRADING_ML_MONGO_URI: is not a MongoDB URI (Username",
    ),
    "source without folder": ({"TRADING_ML_SOURCE": "csv:"}, "TRADING_ML_SOURCE = 'csv:': is not a source"),
    "data dir is a file": ({"TRADING_ML_DATA_DIR": str(REPO / "config.yaml")}, "is a file, not a folder"),
    "config not found": (
        {"TRADING_ML_CONFIG": "/nonexistent/config.yaml"},
        "config file /nonexistent/config.yaml not found",
    ),
    "empty data dir": ({"TRADING_ML_DATA_DIR": ""}, "TRADING_ML_DATA_DIR is set but empty"),
    "blank source": ({"TRADING_ML_SOURCE": "  "}, "TRADING_ML_SOURCE is set but empty"),
    "empty config path": ({"TRADING_ML_CONFIG": ""}, "TRADING_ML_CONFIG is set but empty"),
}


@pytest.mark.parametrize("case", ENVIRONMENT)
def test_a_bad_environment_value_exits_2_with_one_line_naming_the_variable(case, capsys, monkeypatch):
    env, expected = ENVIRONMENT[case]
    code, _, err = run_cli(capsys, monkeypatch, BASE, env)
    assert code == 2
    assert_one_line(err, expected)
    assert "s3cret" not in err  # a password in a URI is never printed


CSV = {
    "infinite close": ("2024-01-03,10,11,9,inf,100\n", "column 'close' at data row 2"),
    "enormous price": (
        "2024-01-03,10,1e308,9,10.5,100\n",
        "column 'high' at data row 2 (2024-01-03 00:00:00+00:00) is 1e+308, more than 10x",
    ),
    "text price": (
        "2024-01-03,ten,11,9,10.5,100\n",
        "column 'open' at data row 2 (2024-01-03 00:00:00+00:00) holds 'ten', which is not a number",
    ),
    "dated 3000": (
        "3000-01-01,10,11,9,10.5,100\n",
        "data row 2 has timestamp '3000-01-01', outside 1900-01-01 to today",
    ),
    "dated year 1": (
        "0001-01-01,10,11,9,10.5,100\n",
        "data row 2 has timestamp '0001-01-01', outside 1900-01-01 to today",
    ),
    "one +09:00 row in a UTC file": (
        "2024-01-03T00:00:00+09:00,10,11,9,10.5,100\n",
        "the timestamps are written in UTC, but data row 2 has +09:00; write that row in UTC too",
    ),
}


@pytest.mark.parametrize("case", CSV)
def test_a_bad_csv_file_fails_ingest_with_one_line_naming_the_file_and_column(case, capsys, monkeypatch, tmp_path):
    row, expected = CSV[case]
    folder = tmp_path / "csv"
    folder.mkdir()
    first = "2024-01-02T00:00:00Z" if "+09:00" in row else "2024-01-02"
    (folder / "AAPL_1d.csv").write_text(f"timestamp,open,high,low,close,volume\n{first},10,11,9,10.5,100\n" + row)
    args = [
        "ingest",
        "--source",
        f"csv:{folder}",
        "--symbols",
        "AAPL",
        "--timeframes",
        "1d",
        "--as-of",
        "2024-01-10",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    code, _, err = run_cli(capsys, monkeypatch, args)
    assert code == 1
    assert_one_line(err, expected)
    assert str(folder / "AAPL_1d.csv") in err


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """The API over a store with stored bars and no trained model (every task on its baseline)."""
    from trading_ml.pipeline.ingest import ingest
    from trading_ml.pipeline.resources import StageResources
    from trading_ml.run import RunContext
    from trading_ml.serving import create_app

    settings = make_settings(tmp_path_factory.mktemp("api") / "data")
    ctx = RunContext.create(settings, "2026-11-20", ["^GSPC", "^VIX", "AAPL", "XOM"], ["1d"], "synthetic")
    with StageResources.open(ctx) as resources:
        ingest(ctx, resources=resources)
    with TestClient(create_app(settings)) as client:
        yield client


API = {
    "no symbols": ({"symbols": []}, 422, "symbols: List should have at least 1 item"),
    "wrong key": ({"tickers": ["AAPL"]}, 422, "symbols: Field required"),
    "unknown symbol": ({"symbols": ["AAPL", "ZZZZ"]}, 404, "unknown symbol(s) ZZZZ"),
    "a 100 kB symbol": ({"symbols": [HUGE[:100_000]]}, 422, "symbols.0: String should have at most 20 characters"),
    "far future": (
        {"symbols": ["AAPL"], "as_of": "9999-12-31"},
        422,
        "as_of 9999-12-31 is outside the stored 1d bars, which run from",
    ),
    "year one": ({"symbols": ["AAPL"], "as_of": "0001-01-01"}, 422, "as_of 0001-01-01 is outside the stored 1d bars"),
    "as_of not a date": ({"symbols": ["AAPL"], "as_of": "notadate"}, 422, "as_of: Input should be a valid date"),
}


@pytest.mark.parametrize("case", API)
def test_a_bad_request_gets_a_4xx_with_one_short_line(case, api):
    body, status, expected = API[case]
    answer = api.post("/signals/generate", json=body)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and expected in detail, detail
    assert len(answer.content) < 1000  # nothing of a long input is echoed back


def test_a_malformed_body_gets_422_and_one_over_the_limit_413_before_it_is_read(api):
    malformed = api.post("/signals/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert (
        malformed.status_code == 422
        and "the body is not JSON (at character 1): JSON decode error" in malformed.json()["detail"]
    )
    body = json.dumps({"symbols": ["AAPL"] * 8_000_000}).encode()  # about 64 MB
    answer = api.post("/signals/generate", content=body, headers={"content-type": "application/json"})
    assert (
        answer.status_code == 413
        and "request body over 1,000,000 bytes (api.max_body_bytes)" in answer.json()["detail"]
    )


def test_a_market_input_is_answered_as_not_served_with_the_reason(api):
    """^VIX is left out of the feature panel in training and in serving alike: named, not predicted."""
    answer = api.post("/signals/generate", json={"symbols": ["AAPL", "^VIX"]})
    assert answer.status_code == 200, answer.text
    aapl, vix = answer.json()["signals"]
    assert "direction" in aapl and vix == {
        "symbol": "^VIX",
        "served": False,
        "reason": "market input only (no volume): no model learns from it, so none predicts it",
    }


def test_serve_on_a_busy_port_exits_2_with_one_line(capsys, monkeypatch, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_cli(capsys, monkeypatch, ["serve", "--port", str(port), "--data-dir", str(tmp_path)])
    assert code == 2
    assert_one_line(
        err,
        f"cannot listen on 127.0.0.1:{port} (Address already in use); stop what uses that port or pass another --port",
    )


def test_yahoo_unreachable_is_exit_3_retry_later(capsys, monkeypatch, tmp_path):
    """What yfinance raises here, with no route to Yahoo (curl's error 6, as curl_cffi's DNSError)."""
    import yfinance
    from curl_cffi.requests.exceptions import DNSError

    class Unreachable:
        def __init__(self, symbol):
            pass

        def history(self, **_):
            raise DNSError(
                "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com (Domain name not found)",
                6,
            )

    monkeypatch.setattr(yfinance, "Ticker", Unreachable)
    code, _, err = run_cli(capsys, monkeypatch, [*BASE, "--source", "yahoo", "--data-dir", str(tmp_path)])
    assert code == 3
    lines = [line for line in err.splitlines() if line.startswith("unavailable")]
    assert len(lines) == 1 and "yahoo AAPL 1d: Yahoo did not answer (Failed to perform, curl: (6)" in lines[0], err


def test_a_csv_whose_every_bar_has_high_below_low_fails_validate_with_one_line(capsys, monkeypatch, tmp_path):
    """Before: ingest exit 0, then validate IndexError (the split detector on a window left empty)."""
    import exchange_calendars

    sessions = exchange_calendars.get_calendar("XNYS").sessions_in_range("2019-01-02", "2024-12-31")
    close = [100 + 0.01 * i for i in range(len(sessions))]
    rows = "".join(f"{day:%Y-%m-%d},{c},{c - 1},{c + 1},{c},1000\n" for day, c in zip(sessions, close, strict=True))
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "AAPL_1d.csv").write_text("timestamp,open,high,low,close,volume\n" + rows)
    args = [
        "--source",
        f"csv:{folder}",
        "--symbols",
        "AAPL",
        "--timeframes",
        "1d",
        "--as-of",
        "2024-12-31",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    assert run_cli(capsys, monkeypatch, ["ingest", *args])[0] == 0
    code, _, err = run_cli(capsys, monkeypatch, ["validate", *args])
    assert code == 1
    assert_one_line(err, "stage failed: only 0 of 1 symbol/timeframe pairs passed validation")


@pytest.mark.parametrize("target", ["predictions", "evaluation"])
def test_a_truncated_run_file_is_one_line_naming_it(target, copy_of, capsys, monkeypatch):
    """A truncated models/*.predictions.parquet (evaluate: was ArrowInvalid) or models/evaluation.json
    (report --regenerate: was JSONDecodeError)."""
    from trading_ml.run import find_run

    settings, _, run_id = copy_of
    run = find_run(settings.data_dir, run_id)
    path = run.layout.predictions("regime_rf") if target == "predictions" else run.layout.evaluation_report
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    data = ["--data-dir", str(settings.data_dir)]
    argv = (
        ["evaluate", "--run-id", run_id, *data]
        if target == "predictions"
        else ["report", run_id, "--regenerate", *data]
    )
    code, _, err = run_cli(capsys, monkeypatch, argv)
    assert code == 2
    assert_one_line(err, f"{path} ")
    assert "re-run the stage that writes it" in err


def test_mongodb_down_is_exit_3_for_promote_and_serve_never_an_empty_tinydb(capsys, monkeypatch, tmp_path):
    from tests.conftest import closed_port_uri

    env = {"TRADING_ML_MONGO_URI": closed_port_uri()}
    for argv in (["promote", "regime_rf", "1.0"], ["serve", "--port", "0"]):
        argv = [*argv, "--data-dir", str(tmp_path)] if argv[0] == "promote" else ["serve", "--data-dir", str(tmp_path)]
        code, _, err = run_cli(capsys, monkeypatch, argv, env)
        assert code == 3, (argv, err)
        line = [line for line in err.splitlines() if line.startswith("unavailable")]
        assert len(line) == 1 and "did not answer" in line[0] and "start it (or fix the URI) and retry" in line[0], err
        assert "secret" not in err
