"""Cross-sectional features and targets: standardized across the symbols of one timestamp and one
exchange, sector-relative returns, and the next return's rank; none of it looks ahead or across a
later-closing exchange."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.features.test_lookahead import cut_points, truncated
from trading_ml.config import Instrument
from trading_ml.features.build import build_timeframe, feature_panel
from trading_ml.features.cross_section import CROSS_SECTION_TARGETS, add_cross_section, cross_section_names


def panel_of(bars, instruments, settings, timeframe="1d") -> pd.DataFrame:
    panel, _ = feature_panel(build_timeframe(bars, instruments, timeframe, settings.features), instruments)
    return panel


@pytest.mark.parametrize("data", ["synthetic_daily", "synthetic_hourly"])
def test_cross_sectional_features_up_to_t_are_the_same_with_or_without_the_bars_after_t(
    data, request, feature_settings
):
    bars, instruments = request.getfixturevalue(data)
    timeframe = "1h" if "hourly" in data else "1d"
    full = panel_of(bars, instruments, feature_settings, timeframe)
    names = cross_section_names(full.columns)
    assert len(names) == 10
    compared = 0
    for cut in cut_points(bars, instruments, timeframe):
        partial = panel_of(truncated(bars, instruments, timeframe, cut), instruments, feature_settings, timeframe)
        if partial is None:  # the first cut lies in the warm-up: no rows yet
            continue
        expected = full.loc[partial.index, names]
        pd.testing.assert_frame_equal(partial[names], expected, check_exact=False, rtol=1e-12, atol=1e-12)
        compared += len(partial)
    assert compared > 1000


def test_z_scores_are_standardized_within_an_exchange_and_never_mix_exchanges(synthetic_daily, feature_settings):
    bars, instruments = synthetic_daily
    panel = panel_of(bars, instruments, feature_settings)
    symbols = panel.index.get_level_values("symbol")
    us = panel[symbols.isin(["^GSPC", "AAPL", "XOM", "JPM"])]
    by_date = us["cs_z_return_1"].groupby(level="timestamp")
    assert np.allclose(by_date.mean(), 0, atol=1e-9) and np.allclose(by_date.std(), 1, atol=1e-9)
    assert (panel.loc[symbols == "^NSEI", cross_section_names(panel.columns)] == 0).all().all()  # alone on XNSE
    # must say no: a US symbol's move that day does not reach ^NSEI, whose bar closed hours before
    shifted = panel.copy()
    shifted.loc[symbols == "AAPL", "return_1"] += 0.5
    again = add_cross_section(
        shifted.drop(columns=cross_section_names(panel.columns) + list(CROSS_SECTION_TARGETS)), instruments
    )
    nsei = symbols == "^NSEI"
    assert again.loc[nsei, "cs_z_return_1"].equals(panel.loc[nsei, "cs_z_return_1"])
    assert not again.loc[symbols == "XOM", "cs_z_return_1"].equals(panel.loc[symbols == "XOM", "cs_z_return_1"])


def test_sector_relative_returns_and_the_rank_target():
    stamps = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    index = pd.MultiIndex.from_product([stamps, ["A", "B", "C", "D"]], names=["timestamp", "symbol"])
    sectors = {"A": "Tech", "B": "Tech", "C": "Energy", "D": None}
    instruments = {
        s: Instrument(symbol=s, kind="equity", exchange="XNYS", sector=sector) for s, sector in sectors.items()
    }
    returns = np.tile([0.03, 0.01, -0.02, 0.0], 3)
    panel = pd.DataFrame({"return_1": returns, "target_return": np.tile([0.02, -0.01, 0.05, np.nan], 3)}, index)
    out = add_cross_section(panel, instruments)
    first = out.xs(stamps[0], level="timestamp")
    assert first.loc["A", "sector_relative_return_1"] == pytest.approx(0.01)  # 0.03 - mean(0.03, 0.01)
    assert first.loc["B", "sector_relative_return_1"] == pytest.approx(-0.01)
    assert first.loc["C", "sector_relative_return_1"] == 0 and first.loc["D", "sector_relative_return_1"] == 0
    ranks = first["target_return_rank"]
    assert ranks["C"] > ranks["A"] > ranks["B"] and ranks.drop("D").sum() == pytest.approx(0)
    assert pd.isna(ranks["D"])  # no next return, no rank
    assert first["target_direction_cross_section"].tolist()[:3] == [0, -1, 1]
