"""The deploy gate's false-positive rate and power on simulated prediction streams; prints figures.

    .venv/bin/python benchmarks/bench_gate.py [--trials 1000]

Each trial is a direction model's pooled out-of-sample period (420 dates x 25 symbols, a little less than the
README's run) judged exactly as deploy judges it: the one-sided lower bound of its rank-IC
improvement over the best baseline must be above zero. Strength 0 is a model with no skill (the
rate is the gate's false-positive rate; the level is 95%, so about 5% is expected); the others are
its power at that information coefficient.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trading_ml.config import load_settings  # noqa: E402
from trading_ml.data.synthetic import DEFAULT_SIGNAL_STRENGTH  # noqa: E402
from trading_ml.models.simulation import promotion_rate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    settings = load_settings()
    print(f"== gate at {settings.models.confidence:.0%} one-sided, blocks of {settings.models.bootstrap_block_days} dates, "
          f"{settings.models.bootstrap_samples} bootstrap samples ==")
    for strength in (0.0, 0.02, 0.03, 0.05, DEFAULT_SIGNAL_STRENGTH):
        start = time.perf_counter()
        trials = args.trials if strength == 0 else max(100, args.trials // 5)
        result = promotion_rate(settings, strength, trials, seed=int(strength * 1e6))
        label = "false-positive rate" if strength == 0 else "power"
        print(f"  strength {strength:<5g} {label:<20} {result['rate']:6.1%} of {trials} trials "
              f"(median lower bound {result['median_lower_bound']:+.4f}; {time.perf_counter() - start:.0f}s)")


if __name__ == "__main__":
    main()
