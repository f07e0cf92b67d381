"""What the operator's pages show (the Airflow plugin renders them; no Airflow import here): every run
with what it covered, one model's versions over time with the decisions and the production history,
and two runs side by side.

Everything is read from the runs' own files and the registry, both untrusted: a file that cannot be
read is shown as a one-line problem on its row, never as a failed page."""

from __future__ import annotations

from pathlib import Path

from trading_ml.config.settings import settings_differences
from trading_ml.errors import TradingMLError, one_line
from trading_ml.io import number, read_json
from trading_ml.pipeline import STAGES
from trading_ml.registry import ModelRegistry, major_version
from trading_ml.run import RunInfo, find_runs

STAGE_ORDER = (*STAGES[:-1], "approve", STAGES[-1])  # approve (a person's answer) between deploy and report
RUN_KINDS = {
    "manual": "triggered",
    "scheduled": "scheduled",
    "backfill": "backfill",
    "cli": "command line",
    "asset_triggered": "asset",
}


def run_kind(run_id: str) -> str:
    """How the run was started, read from its id's prefix as Airflow and the CLI name them."""
    prefix = run_id.split("__", 1)[0]
    return RUN_KINDS.get(prefix, "other")


def run_rows(data_dir: Path) -> list[dict]:
    """Every run, newest first: as-of, id, how it started, universe, timeframes, models, source,
    finished stages, store, each model's decision and whether it has a report."""
    return [run_row(run) for run in reversed(find_runs(data_dir))]


def run_row(run: RunInfo) -> dict:
    selection = run.selection
    row = {
        "run_id": run.run_id,
        "as_of": run.as_of.isoformat(),
        "started": run.created_at[:19].replace("T", " "),
        "kind": run_kind(run.run_id),
        "symbols": list(selection.get("symbols") or []),
        "timeframes": list(selection.get("timeframes") or []),
        "models": list(selection.get("models") or []),
        "source": str(selection.get("source", "")),
        "report": run.layout.report_html.is_file(),
        "stages": [],
        "store": "",
        "decisions": {},
        "problem": None,
    }
    try:
        manifest = read_json(run.layout.run_manifest) if run.layout.run_manifest.is_file() else {}
        stages = manifest.get("stages", {})
        row["stages"] = [stage for stage in STAGE_ORDER if stage in stages]
        row["store"] = str((manifest.get("store") or {}).get("kind", ""))
        decided = {**stages.get("deploy", {}), **stages.get("approve", {})}  # a person's answer over the proposals
        row["decisions"] = {k: v for k, v in decided.items() if k != "finished_at" and isinstance(v, str)}
    except (TradingMLError, AttributeError, TypeError) as error:
        row["problem"] = one_line(error)
    return row


def find_run_by_id(data_dir: Path, run_id: str) -> RunInfo | None:
    """The run with exactly this id (never a prefix or a folder), or None."""
    matches = [run for run in find_runs(data_dir) if run.run_id == run_id]
    return matches[-1] if matches else None


def model_versions(registry: ModelRegistry, name: str) -> dict:
    """One model's versions, oldest first (metric with interval, skill, status, decision and evidence),
    and the production history: which version was production from when, promoted why."""
    records = sorted(registry.records(name), key=lambda r: major_version(r["version"]))
    pointer = registry.production(name) or {}
    version_of = {r["run_id"]: r["version"] for r in records}
    versions = []
    for record in records:
        metrics = record.get("test_metrics") or {}
        primary, skill = metrics.get("primary") or {}, metrics.get("skill") or {}
        versions.append(
            {
                "version": record["version"],
                "run_id": record["run_id"],
                "as_of": str(record.get("as_of", "")),
                "trained_date": str(record.get("trained_date", "")),
                "status": record["status"],
                "metric": primary.get("metric"),
                "value": primary.get("value"),
                "low": primary.get("low"),
                "high": primary.get("high"),
                "higher_is_better": primary.get("higher_is_better", True),
                "skill": skill,
                "decision": record.get("deploy_decision") or "not deployed",
                "evidence": evidence_text(record.get("deploy_evidence"), record.get("approval")),
            }
        )
    history = [{**entry, "version": version_of.get(entry["run_id"], "?")} for entry in pointer.get("history", [])]
    return {
        "model": name,
        "versions": versions,
        "production_history": history,
        "production": version_of.get(pointer.get("run_id")) if pointer else None,
    }


def evidence_text(evidence, approval) -> str:
    """The decision's evidence in words: the comparison with production it was decided against, and
    the person's answer when one was asked; a record that holds something else says so."""
    said = []
    try:
        versus = (evidence or {}).get("versus_production")
        if versus:
            worse = " (significantly worse)" if versus.get("worse") else ""
            said.append(
                f"vs production {versus['version']} on {versus['days']} dates it never saw: {versus['metric']} "
                f"{number(versus['value'], '+.3g')} [{number(versus['low'], '+.3g')}, "
                f"{number(versus['high'], '+.3g')}]{worse}; "
                f"{len((versus.get('symbols') or {}).get('shared', []))} symbols shared"
            )
        elif evidence and evidence.get("decided_against") is None:
            said.append("no production version to compare with")
        if approval:
            answer = "approved" if approval.get("approved") else "rejected"
            said.append(
                f"{answer} by {approval.get('by')} at {approval.get('at')}"
                + (f": {approval['why']}" if approval.get("why") else "")
            )
    except (AttributeError, KeyError, TypeError, ValueError):
        said.append("the recorded evidence is not in the expected form")
    return "; ".join(said)


def versions_chart(page: dict) -> str | None:
    """The versions' out-of-sample metric with its interval, by as-of date, production versions marked;
    a base64 PNG, or None with fewer than one scored version."""
    scored = [v for v in page["versions"] if isinstance(v["value"], int | float) and v["as_of"]]
    if not scored:
        return None
    import matplotlib.pyplot as plt  # the report sets the Agg backend
    import pandas as pd

    from trading_ml.report import png_base64

    stamps = pd.to_datetime([v["as_of"] for v in scored])
    values = [v["value"] for v in scored]
    below = [max(0.0, v["value"] - v["low"]) if isinstance(v["low"], int | float) else 0.0 for v in scored]
    above = [max(0.0, v["high"] - v["value"]) if isinstance(v["high"], int | float) else 0.0 for v in scored]
    served = {entry["run_id"] for entry in page["production_history"]}
    figure, axes = plt.subplots(figsize=(7.2, 3.2))
    axes.errorbar(
        stamps,
        values,
        yerr=[below, above],
        fmt="o-",
        color="#546e7a",
        capsize=3,
        label="out-of-sample value [interval]",
    )
    picked = [i for i, v in enumerate(scored) if v["run_id"] in served]
    axes.plot(stamps[picked], [values[i] for i in picked], "s", color="#2e7d32", markersize=9, label="was production")
    for stamp, version in zip(stamps, scored, strict=True):
        axes.annotate(
            version["version"], (stamp, version["value"]), textcoords="offset points", xytext=(4, 6), fontsize=7
        )
    axes.set_ylabel(f"{scored[0]['metric']} ({'higher' if scored[0]['higher_is_better'] else 'lower'} is better)")
    axes.set_xlabel("as-of date of the run that trained it")
    axes.legend(fontsize=7, loc="best")
    figure.autofmt_xdate()
    return png_base64(figure)


def compare_runs(data_dir: Path, first: str, second: str, registry: ModelRegistry | None = None) -> dict:
    """Two runs side by side: each model's metric with its interval and decision in both, and what
    differed in what they covered (as-of, symbols, timeframes, models, source, deploy, folds) and,
    from the registry, in each model's configuration (the hash of config.yaml's features, models and
    universe sections, and the feature count)."""
    found = {run_id: find_run_by_id(data_dir, run_id) for run_id in (first, second)}
    runs = [run for run in found.values() if run is not None]
    if len(runs) < len(found):
        raise KeyError(f"no run {', '.join(run_id for run_id, run in found.items() if run is None)} under {data_dir}")
    rows = [run_row(run) for run in runs]
    evaluations = [_evaluation(run) for run in runs]
    models = list(dict.fromkeys([*evaluations[0], *evaluations[1]]))
    return {
        "runs": rows,
        "models": {
            name: [_model_side(evaluations[k].get(name), rows[k]["decisions"].get(name)) for k in (0, 1)]
            for name in models
        },
        "differences": _differences(runs, rows, evaluations)
        + _settings_differences(runs)
        + _configuration_differences(registry, runs, models),
    }


def _evaluation(run: RunInfo) -> dict:
    try:
        return (
            read_json(run.layout.evaluation_report).get("models", {}) if run.layout.evaluation_report.is_file() else {}
        )
    except TradingMLError:
        return {}


def _model_side(result: dict | None, decision: str | None) -> dict | None:
    if not result:
        return None
    primary, skill = result.get("primary", {}), result.get("skill", {})
    backtest = result.get("backtest") or {}
    return {
        "metric": primary.get("metric"),
        "value": primary.get("value"),
        "low": primary.get("low"),
        "high": primary.get("high"),
        "skill": skill,
        "decision": decision or "not deployed",
        "version": result.get("version"),
        "sharpe": (backtest.get("intervals") or {}).get("long_short", {}).get("annualized_sharpe"),
    }


def _differences(runs: list[RunInfo], rows: list[dict], evaluations: list[dict]) -> list[dict]:
    """Each covered thing that differs: its value in both runs (sets as 'only in first / only in second')."""
    found = []
    for field in ("as_of", "source", "timeframes", "models"):
        if rows[0][field] != rows[1][field]:
            found.append({"field": field, "first": rows[0][field], "second": rows[1][field]})
    symbols = [set(row["symbols"]) for row in rows]
    if symbols[0] != symbols[1]:
        found.append(
            {
                "field": "symbols",
                "first": sorted(symbols[0] - symbols[1]) or "(none of its own)",
                "second": sorted(symbols[1] - symbols[0]) or "(none of its own)",
                "note": f"{len(symbols[0] & symbols[1])} shared",
            }
        )
    deploy = [run.selection.get("deploy") for run in runs]
    if deploy[0] != deploy[1]:
        found.append({"field": "deploy", "first": deploy[0], "second": deploy[1]})
    folds = [len(next(iter(e.values())).get("folds", [])) if e else None for e in evaluations]
    if folds[0] != folds[1]:
        found.append({"field": "walk-forward folds", "first": folds[0], "second": folds[1]})
    return found


def _settings_differences(runs: list[RunInfo]) -> list[dict]:
    """Each setting the two runs froze differently (settings.json); nothing for a run that froze none."""
    try:
        frozen = [run.layout.frozen_settings() for run in runs]
    except TradingMLError as error:
        return [{"field": "settings", "first": "", "second": "", "note": one_line(error, 200)}]
    first, second = frozen
    if first is None or second is None:
        return []
    return [
        {"field": f"setting {key}", "first": a, "second": b, "note": "settings.json"}
        for key, a, b in settings_differences(first, second)
    ]


def _configuration_differences(registry: ModelRegistry | None, runs: list[RunInfo], models: list[str]) -> list[dict]:
    """Each model whose registered configuration hash or feature count differs between the runs."""
    if registry is None:
        return []
    found = []
    for name in models:
        sides = []
        for run in runs:
            try:
                record = registry.record_for_run(name, run.run_id)
                sides.append(f"config {record.get('config_hash', '?')}, {record.get('feature_count', '?')} features")
            except TradingMLError:
                sides.append("not registered")
        if sides[0] != sides[1]:
            found.append(
                {
                    "field": f"{name} configuration",
                    "first": sides[0],
                    "second": sides[1],
                    "note": "config.yaml's features, models and universe, hashed",
                }
            )
    return found
