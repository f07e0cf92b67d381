"""The deploy gate's false-positive rate and power for every task; prints figures.

    .venv/bin/python benchmarks/bench_gate.py [--trials 1000] [--markets 20] [--horizons 5]

Part 1, direction on simulated prediction streams:
Each trial is a direction model's pooled out-of-sample period (420 dates x 25 symbols, a little less than the
README's run) judged exactly as deploy judges it: the one-sided lower bound of its rank-IC
improvement over the best baseline must be above zero. Strength 0 is a model with no skill (the
rate is the gate's false-positive rate; the level is 95%, so about 5% is expected); the others are
its power at that information coefficient.

Part 2, every model on whole runs (quick model settings, 12 symbols, 1d, 5 years): ``--markets``
random-walk markets (constant volatility, no regimes, no signal: every promotion is a false
positive), ``--markets`` / 2 GARCH markets (volatility clusters and nothing else is predictable: a
volatility model's promotion is power, any other model's a false positive), then ``--markets`` / 2
markets of the regime simulator with the planted reversal (power: direction has a planted signal,
volatility clusters, regimes switch). The volatility task's horizon h (realized volatility over the
next h bars) is each of ``--horizons`` in turn.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings, quick  # noqa: E402
from tests.stages import market_trial  # noqa: E402
from trading_ml.data.synthetic import DEFAULT_SIGNAL_STRENGTH  # noqa: E402
from trading_ml.drivers import load_settings  # noqa: E402
from trading_ml.models.catalogue import MODEL_NAMES, TRAINED_MODELS  # noqa: E402
from trading_ml.models.simulation import promotion_rate  # noqa: E402

TRIAL_SYMBOLS = ["^GSPC", "^VIX", "AAPL", "MSFT", "GOOGL", "NVDA", "JPM", "BAC", "XOM", "CVX", "WMT", "JNJ"]
TRAINED = list(TRAINED_MODELS)
MODELS = list(MODEL_NAMES)  # with the combinations (the direction ensemble)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--markets", type=int, default=20)
    parser.add_argument("--horizons", default="5", help="volatility horizons h to judge on, e.g. 1,5,20")
    args = parser.parse_args()
    settings = load_settings()
    print(
        f"== gate at {settings.models.confidence:.0%} one-sided, blocks of {settings.models.bootstrap_block_days} "
        "dates, "
        f"{settings.models.bootstrap_samples} bootstrap samples =="
    )
    for strength in (0.0, 0.02, 0.03, 0.05, DEFAULT_SIGNAL_STRENGTH):
        start = time.perf_counter()
        trials = args.trials if strength == 0 else max(100, args.trials // 5)
        result = promotion_rate(settings, strength, trials, seed=int(strength * 1e6))
        label = "false-positive rate" if strength == 0 else "power"
        print(
            f"  strength {strength:<5g} {label:<20} {result['rate']:6.1%} of {trials} trials "
            f"(median lower bound {result['median_lower_bound']:+.4f}; {time.perf_counter() - start:.0f}s)"
        )
    for horizon in (int(h) for h in args.horizons.split(",")):
        for market, strength, markets, label in (
            ("random_walk", 0.0, args.markets, "false-positive rate"),
            ("garch", 0.0, max(1, args.markets // 2), "power for volatility, false-positive rate for the rest"),
            ("regimes", DEFAULT_SIGNAL_STRENGTH, max(1, args.markets // 2), "power"),
        ):
            whole_runs(market, strength, markets, label, horizon)


def whole_runs(market: str, strength: float, markets: int, label: str, horizon: int) -> None:
    """Each model's promotions over ``markets`` seeded markets of one kind, and its best baselines."""
    print(f"== whole runs on {markets} {market} markets (signal {strength:g}, volatility h={horizon}): {label} ==")
    promoted, baselines, start = {m: 0 for m in MODELS}, {m: {} for m in MODELS}, time.perf_counter()
    for seed in range(1, markets + 1):
        with tempfile.TemporaryDirectory() as folder:
            data = Path(folder) / "data"
            settings = with_horizon(quick(make_settings(data)), horizon)
            for name, result in market_trial(settings, data, market, strength, seed, TRAINED, TRIAL_SYMBOLS).items():
                promoted[name] = promoted.get(name, 0) + (result["status"] == "production")
                best = result["skill"]["baseline"]
                baselines.setdefault(name, {})[best] = baselines.get(name, {}).get(best, 0) + 1
    for name in promoted:
        print(
            f"  {name:<18} promoted {promoted[name]:>3} of {markets} ({promoted[name] / markets:6.1%}); best "
            "baseline " + ", ".join(f"{b} {n}x" for b, n in sorted(baselines[name].items()))
        )
    print(f"  ({time.perf_counter() - start:.0f}s)")


def with_horizon(settings, horizon: int):
    return dataclasses.replace(
        settings, features=dataclasses.replace(settings.features, forward_volatility_bars=horizon)
    )


if __name__ == "__main__":
    main()
