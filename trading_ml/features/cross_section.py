"""Features and targets across the symbols of each date: what cross-sectional prediction uses.

A symbol's own indicators mix its idiosyncratic move with the market's and its sector's, which every
symbol shares that day. Across the symbols of one timestamp and one exchange (bars that close
together: ^NSEI's daily bar closes hours before a US bar stamped the same day, so mixing them would
show one the other's later move):

- ``cs_z_<feature>``: the feature standardized across the symbols of the date (z-score), 0 where the
  date has fewer than MIN_SYMBOLS symbols or the feature does not vary;
- ``sector_relative_return_<n>``: the n-bar return minus the mean of its sector's symbols that date
  (0 for a symbol alone in its sector, or without one);
- ``target_return_rank``: the next return's percentile rank across the date's symbols, centred on 0
  (-0.5 .. 0.5), and ``target_direction_cross_section``: its terciles as -1, 0, 1 (bottom, middle,
  top third): labels of *which symbols* do better, whatever the market does.

Every value at a timestamp uses that timestamp's rows of the same exchange only (the features of
each symbol are past data), so nothing looks ahead; serving builds the same panel over the stored
universe.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.config import Instrument

MIN_SYMBOLS = 3  # a date needs this many symbols for a cross-section
STANDARDIZED = ("return_1", "return_5", "return_20", "rsi_14", "volatility_20", "volume_ratio_20", "close_to_sma_20")
SECTOR_RETURNS = ("return_1", "return_5", "return_20")
CROSS_SECTION_INPUTS = (*STANDARDIZED, *SECTOR_RETURNS, "target_return")  # read in float64
TERCILE = 1 / 6  # a centred rank above +1/6 is the top third, below -1/6 the bottom third
CROSS_SECTION_TARGETS = ("target_return_rank", "target_direction_cross_section")


def cross_section_names(columns) -> list[str]:
    """The cross-sectional feature columns a panel with these columns gets, in order."""
    present = set(columns)
    return [f"cs_z_{n}" for n in STANDARDIZED if n in present] + [
        f"sector_relative_{n}" for n in SECTOR_RETURNS if n in present
    ]


def add_cross_section(panel: pd.DataFrame, instruments: dict[str, Instrument]) -> pd.DataFrame:
    """The (timestamp, symbol) panel with its cross-sectional features and targets added."""
    symbols = panel.index.get_level_values("symbol")
    exchanges = np.array([instruments[s].exchange for s in symbols], dtype=object)
    dates = [panel.index.get_level_values("timestamp"), exchanges]  # one cross-section: a timestamp and an exchange
    enough = (pd.Series(1, index=panel.index).groupby(dates).transform("size") >= MIN_SYMBOLS).to_numpy()
    columns = {}
    for name in STANDARDIZED:
        if name in panel:
            by_date = panel[name].groupby(dates)
            spread = by_date.transform("std").to_numpy()
            z = (panel[name].to_numpy() - by_date.transform("mean").to_numpy()) / np.where(spread > 0, spread, np.nan)
            columns[f"cs_z_{name}"] = np.where(enough & np.isfinite(z), z, 0.0)
    sectors = np.array([instruments[s].sector or "" for s in symbols], dtype=object)
    for name in SECTOR_RETURNS:
        if name in panel:
            groups = panel[name].groupby([*dates, sectors])
            peers = groups.transform("size").to_numpy()
            relative = panel[name].to_numpy() - groups.transform("mean").to_numpy()
            columns[f"sector_relative_{name}"] = np.where((peers > 1) & (sectors != ""), relative, 0.0)
    features = pd.DataFrame(columns, index=panel.index)
    targets = cross_section_targets(panel["target_return"], dates, enough)
    return pd.concat([panel, features, targets], axis=1)


def cross_section_targets(next_return: pd.Series, dates: list, enough: np.ndarray) -> pd.DataFrame:
    """The next return's centred rank across the cross-section (``dates``: the grouping keys), and
    its terciles; missing where the return is, or the date has fewer than MIN_SYMBOLS symbols."""
    rank = next_return.groupby(dates).rank(pct=True)
    counted = next_return.groupby(dates).transform("count")
    centred = (rank - (1 + 1 / counted) / 2).where(enough & next_return.notna().to_numpy())
    labels = np.where(centred > TERCILE, 1, np.where(centred < -TERCILE, -1, 0))
    direction = pd.Series(labels, index=next_return.index, dtype="Int8").where(centred.notna())
    return pd.DataFrame({"target_return_rank": centred, "target_direction_cross_section": direction})
