"""The volatility baselines computed over every symbol at once give each symbol's numbers as computed
on its rows alone, bit for bit (they replaced a loop over the symbols)."""

import numpy as np
import pandas as pd
import pytest

from trading_ml.models.baselines import (
    RETURN,
    ewma_forecast,
    ewma_variance,
    historical_forecast,
    naive_forecast,
    plan_forecast,
    plan_naive_forecast,
)

WINDOW, HORIZON, DECAY, WARMUP = 20, 5, 0.94, 20


def ragged_table(seed: int = 3) -> pd.DataFrame:
    """Symbols with 1, 4, 25 and 90 bars, starting on different dates, interleaved by timestamp as the
    training table is, with missing returns among them."""
    rng = np.random.default_rng(seed)
    frames = []
    for number, (bars, start) in enumerate([(1, 40), (4, 10), (25, 30), (90, 0), (90, 5)]):
        stamps = pd.date_range("2024-01-01", periods=200, freq="B", tz="UTC", name="timestamp")[start : start + bars]
        returns = rng.standard_t(4, size=bars) * 0.01
        returns[[i for i in (2, 60) if i < bars]] = np.nan  # the real table's first return, and a gap
        frames.append(
            pd.DataFrame({RETURN: returns, "symbol": f"S{number}"}, index=stamps).set_index("symbol", append=True)
        )
    return pd.concat(frames).sort_index(level=["timestamp", "symbol"])


def one_symbol_at_a_time(table: pd.DataFrame, forecast) -> np.ndarray:
    """``forecast(returns, symbol)`` on each symbol's returns alone, put back on the table's rows."""
    parts = []
    for symbol, returns in table[RETURN].groupby(level="symbol", sort=False):
        parts.append(forecast(returns.droplevel("symbol"), symbol).to_frame("v").assign(symbol=symbol))
    return pd.concat(parts).set_index("symbol", append=True)["v"].reindex(table.index).to_numpy()


def next_volatility(table: pd.DataFrame) -> pd.Series:
    rng = np.random.default_rng(9)
    return pd.Series(rng.uniform(0.005, 0.03, len(table)), index=table.index)


def alone_plan_forecast(table: pd.DataFrame) -> np.ndarray:
    """The plan's expected std from each symbol's returns and forecasts alone."""
    forecasts = next_volatility(table)

    def expected_std(returns: pd.Series, symbol: str) -> pd.Series:
        variance = forecasts.xs(symbol, level="symbol").reindex(returns.index) ** 2
        known_squares = (returns**2).rolling(WINDOW - 1).sum()
        known_sum = returns.rolling(WINDOW - 1).sum()
        return np.sqrt(((known_squares + variance - (known_sum**2 + variance) / WINDOW) / (WINDOW - 1)).clip(lower=0))

    return one_symbol_at_a_time(table, expected_std)


ALONE = {
    "naive": lambda r, _symbol: np.sqrt((r**2).rolling(HORIZON).mean()),
    "ewma_variance": lambda r, _symbol: (r**2).ewm(alpha=1 - DECAY, adjust=False).mean(),
    "ewma": lambda r, _symbol: np.sqrt((r**2).ewm(alpha=1 - DECAY, adjust=False).mean()).where(
        np.arange(len(r)) >= WARMUP - 1
    ),
    "historical": lambda r, _symbol: np.sqrt((r**2).expanding(min_periods=WARMUP).mean()),
    "plan_naive": lambda r, _symbol: r.rolling(WINDOW).std(),
}
TOGETHER = {
    "naive": lambda t: naive_forecast(t, HORIZON),
    "ewma_variance": lambda t: ewma_variance(t, DECAY),
    "ewma": lambda t: ewma_forecast(t, DECAY, WARMUP),
    "historical": lambda t: historical_forecast(t, WARMUP),
    "plan_naive": lambda t: plan_naive_forecast(t, WINDOW),
}


@pytest.mark.parametrize("name", list(ALONE))
def test_each_baseline_over_all_symbols_is_each_symbol_alone_bit_for_bit(name):
    table = ragged_table()
    together = TOGETHER[name](table)
    assert together.index.equals(table.index)
    alone = one_symbol_at_a_time(table, ALONE[name])
    assert np.isfinite(alone).sum() > 50  # the comparison covers real values, not only NaN
    np.testing.assert_array_equal(together.to_numpy(), alone)


def test_the_plan_forecast_over_all_symbols_is_each_symbol_alone_even_with_its_levels_swapped():
    table = ragged_table()
    forecasts = next_volatility(table)
    alone = alone_plan_forecast(table)
    assert np.isfinite(alone).sum() > 50
    np.testing.assert_array_equal(plan_forecast(table, forecasts, WINDOW).to_numpy(), alone)
    swapped = forecasts.reorder_levels(["symbol", "timestamp"]).sort_index()
    np.testing.assert_array_equal(plan_forecast(table, swapped, WINDOW).to_numpy(), alone)


def test_no_baseline_reads_another_symbols_bars():
    """A symbol's values do not move when another symbol's returns change."""
    table = ragged_table()
    changed = table.copy()
    others = changed.index.get_level_values("symbol") != "S3"
    changed.loc[others, RETURN] = changed.loc[others, RETURN] * 7 + 0.05
    mine = ~others
    for name, together in TOGETHER.items():
        np.testing.assert_array_equal(
            together(table).to_numpy()[mine], together(changed).to_numpy()[mine], err_msg=name
        )
