"""The signals API's contract: every request and response as a typed schema (served in the OpenAPI
document at /openapi.json and /docs), so a trading system can code against it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class SignalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbols: list[Annotated[str, Field(max_length=20)]] = Field(
        min_length=1, max_length=500, description="tickers of the configured universe"
    )
    as_of: dt.date | None = Field(
        None, description="signals from bars up to this date (default: the newest stored bar)"
    )


class ServedBy(BaseModel):
    source: Literal["model", "baseline"] = Field(
        description="a production model, or the task's baseline where none serves"
    )
    model: str = Field(description="the model's name, or the baseline's")
    version: str | None = Field(description="the production version (null for a baseline)")
    trained_until: str | None = Field(
        None, description="the first timestamp the model never saw in training (null for a baseline)"
    )
    note: str | None = Field(None, description="why a baseline answers, in one line")


class Direction(BaseModel):
    probabilities: dict[Literal["down", "neutral", "up"], float] = Field(
        description="P(down), P(neutral), P(up) of the next bar; they sum to 1"
    )
    class_: Literal["down", "neutral", "up"] = Field(alias="class", description="the most probable direction")
    score: float = Field(
        description="P(up) - P(down): rank symbols by it (the direction models are judged on its rank IC)"
    )
    model_config = ConfigDict(populate_by_name=True)


class Volatility(BaseModel):
    forecast: float = Field(
        gt=0, description="the forecast realized volatility: root mean square of one bar's return (0.01 = 1%)"
    )
    unit: str
    horizon_bars: int = Field(description="over the next this many bars (features.forward_volatility_bars)")


class Regime(BaseModel):
    now: Literal["bull", "bear", "sideways", "high_vol"] = Field(
        description="the plan's rules applied to the newest bar"
    )
    ahead: Literal["bull", "bear", "sideways", "high_vol"] = Field(description="the regime forecast horizon_bars ahead")
    horizon_bars: int


class Signal(BaseModel):
    symbol: str
    bar: dt.datetime = Field(description="the newest bar the signal is computed from (UTC)")
    direction: Direction
    volatility: Volatility
    regime: Regime


class NotServed(BaseModel):
    symbol: str
    served: Literal[False] = False
    reason: str


class SignalsResponse(BaseModel):
    as_of: dt.date | None = Field(description="the as-of asked for (null: the newest stored bar)")
    generated_at: dt.datetime = Field(description="when this answer was computed (UTC)")
    timeframe: str
    models: dict[str, ServedBy] = Field(description="what served each task: direction, volatility, regime")
    signals: list[Signal | NotServed]


class Health(BaseModel):
    status: str = Field(description="'ok', 'degraded: <why>' or 'unavailable: <why>'")
    serving_by_task: dict[str, str]
    store: str
    production: dict[str, str]
    serving: dict[str, str]
    refused: dict[str, str] = Field(description="model: 'version: why' for versions that failed verification")
    cached_signal_tables: int


class ModelVersion(BaseModel):
    model_name: str
    version: str
    status: Literal["candidate", "production", "archived"]
    trained_date: str | None = None
    run_id: str
    test_metrics: dict | None = None
    deploy_decision: str | None = None


class Problem(BaseModel):
    detail: str = Field(description="what is wrong and what to do, in one line")
