#!/usr/bin/env python
"""The plan's script: `python train_production_models.py --stage ingest` or `--full-pipeline`.

A thin driver over trading_ml.cli; `trading-ml --help` lists the same stages.
"""

from trading_ml.cli import plan_main

if __name__ == "__main__":
    raise SystemExit(plan_main())
