"""The seeded simulated market as a source (offline, any ticker)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, Strict

from trading_ml.config import STRICT, Ticker, checked
from trading_ml.data.synthetic import DEFAULT_SIGNAL_STRENGTH, SyntheticMarket


class SyntheticSource:
    """The seeded simulated market of :mod:`trading_ml.data.synthetic`; any ticker, both timeframes."""

    kind, argument = "synthetic", None
    label = "Synthetic market (seeded, offline)"
    timeframes = ("1d", "1h")
    symbols = None

    @checked(frozen=True, config=STRICT)
    class Options:
        seed: Annotated[int, Strict(), Field(ge=0)] = 42
        epoch: dt.date = dt.date(2000, 1, 3)
        signal_strength: Annotated[float, Field(ge=0, lt=0.5)] = DEFAULT_SIGNAL_STRENGTH  # 0 plants no signal
        market: Literal["regimes", "random_walk", "garch"] = (
            "regimes"  # random_walk: no regimes, constant volatility; garch: no regimes, GARCH(1,1) clustering
        )
        faults: dict[Ticker, list[str]] | None = None  # tests' injected faults; kinds checked by the synthetic market

    @classmethod
    def from_spec(cls, argument: str, options: Options, retries: int | None) -> SyntheticSource:
        return cls(
            seed=options.seed,
            epoch=options.epoch.isoformat(),
            faults=options.faults,
            signal_strength=options.signal_strength,
            market=options.market,
        )

    def __init__(
        self,
        seed: int = 42,
        epoch: str = "2000-01-03",
        faults=None,
        signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
        market: str = "regimes",
    ):
        self.market = SyntheticMarket(
            seed=seed, epoch=epoch, faults=faults, signal_strength=signal_strength, market=market
        )
        self.name = f"synthetic(seed={self.market.seed})"

    def fetch(self, instrument, timeframe, start, end):
        return self.market.bars(instrument, timeframe, start, end)
