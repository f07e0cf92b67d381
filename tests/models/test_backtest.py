"""The long-short backtest's weights: every bar at once, as one bar at a time gave them."""

import numpy as np
import pandas as pd
import pytest

from trading_ml.models.backtest import long_short_backtest, long_short_weights


def one_bar_at_a_time(day: pd.Series, share: float) -> pd.Series:
    """The weights as they were computed before, a call per bar."""
    count = max(1, int(round(len(day) * share)))
    weights = pd.Series(0.0, index=day.index)
    if len(day) < 2 * count:
        return weights
    order = day.rank(method="first")
    weights[order > len(day) - count] = 0.5 / count
    weights[order <= count] = -0.5 / count
    return weights


def scores(seed: int = 5) -> pd.Series:
    """Bars of 1 to 40 symbols, with tied scores (rounded) and half-way counts (share x size = k.5)."""
    rng = np.random.default_rng(seed)
    parts = []
    for bar, size in enumerate([1, 2, 3, 4, 5, 7, 10, 15, 25, 40, *rng.integers(1, 41, size=40)]):
        stamp = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=bar)
        symbols = rng.choice(60, size=size, replace=False)
        index = pd.MultiIndex.from_arrays(
            [[stamp] * size, [f"S{s:02d}" for s in symbols]], names=["timestamp", "symbol"]
        )
        parts.append(pd.Series(np.round(rng.normal(size=size), 1), index=index))
    return pd.concat(parts)


@pytest.mark.parametrize("share", [0.1, 0.2, 0.3, 0.5])
def test_weights_of_every_bar_at_once_are_those_of_one_bar_at_a_time(share):
    score = scores()
    expected = score.groupby(level="timestamp", group_keys=False).apply(lambda day: one_bar_at_a_time(day, share))
    got = long_short_weights(score, share)
    assert got.index.equals(score.index)
    np.testing.assert_array_equal(got.to_numpy(), expected.reindex(score.index).to_numpy())
    per_bar = got.groupby(level="timestamp")
    gross = per_bar.apply(lambda w: w.abs().sum()).to_numpy()
    assert (np.abs(per_bar.sum().to_numpy()) < 1e-12).all()  # as much short as long
    assert (np.isclose(gross, 1.0) | (gross == 0)).all()  # all in, or out on a bar too small
    assert (got != 0).any() and (got == 0).any()


def test_a_score_that_knows_the_next_return_earns_and_its_reverse_loses():
    score = scores()
    rng = np.random.default_rng(1)
    next_return = pd.Series(rng.normal(0, 0.01, len(score)), index=score.index)
    good = long_short_backtest(next_return, next_return, 0.2, 0.0, 252)
    bad = long_short_backtest(-next_return, next_return, 0.2, 0.0, 252)
    assert good["long_short"]["total_return"] > 0 > bad["long_short"]["total_return"]
