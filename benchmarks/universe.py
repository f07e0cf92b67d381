"""A universe larger than the plan's 26 symbols, for the scale benchmarks."""

from __future__ import annotations

from pathlib import Path

import yaml


def grow_universe(config: Path, size: int) -> None:
    """Add synthetic equities (SYN0001, ...) to ``config``'s sectors in turn until it holds ``size`` symbols."""
    raw = yaml.safe_load(config.read_text())
    indices, sectors = raw["universe"]["indices"], raw["universe"]["equities"]["sectors"]
    count = len(indices) + sum(len(symbols) for symbols in sectors.values())
    names = sorted(sectors)
    for number in range(1, max(size - count, 0) + 1):
        sectors[names[number % len(names)]].append(f"SYN{number:04d}")
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
