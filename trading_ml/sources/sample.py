"""Real daily series that the `arch` package ships, as a source (offline)."""

from __future__ import annotations

import importlib

import pandas as pd

from trading_ml.data.bars import normalize_bars
from trading_ml.errors import DataError, OutsideCoverage
from trading_ml.sources.base import NoOptions, within


class SampleSource:
    """Real daily series that the `arch` package ships (S&P 500, NASDAQ Composite, VIX)."""

    kind, argument, Options = "sample", None, NoOptions
    label = "Sample daily series that arch ships (offline)"
    name = "sample"
    timeframes = ("1d",)
    # symbol: (arch.data module, what it holds)
    SERIES = {
        "^GSPC": ("sp500", "S&P 500 daily OHLCV, 1999-01-04 to 2018-12-31"),
        "^IXIC": ("nasdaq", "NASDAQ Composite daily OHLCV, 1999-01-04 to 2018-12-31"),
        "^VIX": ("vix", "CBOE VIX daily close only, 2014-01-03 to 2019-01-03"),
    }
    symbols = tuple(SERIES)
    SLACK = pd.Timedelta(days=7)  # window edges may fall on holidays or weekends

    @classmethod
    def from_spec(cls, argument: str, options: NoOptions, retries: int | None) -> SampleSource:
        return cls()

    def fetch(self, instrument, timeframe, start, end):
        if instrument.symbol not in self.SERIES:
            raise DataError(
                f"the sample source has no {instrument.symbol}; it ships "
                f"{', '.join(self.SERIES)} (use --source synthetic or yahoo for other symbols)"
            )
        if timeframe != "1d":
            raise DataError(f"the sample source has daily bars only, not {timeframe}")
        bars = self.load(instrument.symbol)
        first, last = bars.index[0], bars.index[-1]
        if start < first - self.SLACK or end > last + self.SLACK:
            raise OutsideCoverage(
                f"sample {instrument.symbol} covers {first.date()} to {last.date()}, but the "
                f"window is {start.date()} to {end.date()}; pick an --as-of so the window fits"
            )
        return within(bars, start, end)

    def load(self, symbol: str) -> pd.DataFrame:
        module = importlib.import_module(f"arch.data.{self.SERIES[symbol][0]}")
        frame = module.load().dropna(how="all")  # the VIX file lists holidays as empty rows
        if "vix" in frame.columns:  # close only: a flat bar, no volume
            close = frame["vix"]
            frame = pd.DataFrame({c: close for c in ("open", "high", "low", "close")})
            frame["volume"] = 0.0
        return normalize_bars(frame, "1d", origin=f"sample {symbol} (arch.data)")
