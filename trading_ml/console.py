"""What the command line prints: each stage's summary and the tables of models, runs and history,
as plain text (the report, the pages and the API show the same figures)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from trading_ml.io import number
from trading_ml.pipeline.run_manifest import summarize_ingest
from trading_ml.run import RunContext, runs_root


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Left-aligned columns two spaces apart; integers with thousands separators."""
    cells = [list(map(str, headers))] + [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def print_ingest_summary(ctx: RunContext, manifests: list[dict]) -> None:
    summary = summarize_ingest(manifests)
    print(
        f"ingest: {summary['ok']}/{summary['pairs']} pairs from {ctx.source}, {summary['rows']:,} bars -> "
        f"{ctx.run_root}"
    )
    for pair, error in summary["failed"].items():
        print(f"  failed {pair}: {error}")


def print_validate_summary(ctx: RunContext, report: dict) -> None:
    rows = [
        (
            r["symbol"],
            r["timeframe"],
            r.get("rows_in", 0),
            r.get("rows_out", 0),
            "QUARANTINED" if r["quarantined"] else "ok",
            "; ".join(r["reasons"]) or _repairs(r),
        )
        for r in report["reports"]
    ]
    print(format_table(("symbol", "tf", "bars in", "bars out", "status", "notes"), rows))
    passed = sum(1 for r in report["reports"] if not r["quarantined"])
    print(f"validate: {passed}/{len(rows)} pairs passed -> {ctx.run_root}")


def _repairs(report: dict) -> str:
    return "; ".join(f"{c['check']}: {c['detail']}" for c in report.get("checks", []) if not c["passed"])


def print_model_table(ctx: RunContext, report: dict, deployed: dict | None) -> None:
    """One row per model: its out-of-sample metric with its interval, the baselines beside it, the
    skill's lower bound, the plan's target, the decision."""
    rows = []
    for name, evaluation in report["models"].items():
        primary, skill = evaluation["primary"], evaluation["skill"]
        status = deployed["decisions"][name]["status"] if deployed else "candidate"
        rows.append(
            (
                name,
                evaluation["version"],
                primary["metric"],
                _with_interval(primary),
                _baselines(evaluation),
                number(skill["lower_bound"], "+.3g"),
                "met" if evaluation["plan_target"]["met"] else "NOT met",
                status,
            )
        )
    print(
        format_table(
            (
                "model",
                "version",
                "metric",
                "value [95% interval]",
                "baselines",
                "skill lower bound",
                "plan target",
                "status",
            ),
            rows,
        )
    )
    folds = report["folds"]
    print(
        f"walk-forward: {len(folds)} test segments from {folds[0]['test_start'][:10]} "
        f"({sum(f['rows']['test'] for f in folds):,} rows); "
        f"full report {ctx.layout.evaluation_report}"
    )
    if report.get("planted_signal") is not None:
        recovered = ", ".join(
            f"{name} {number(m['metrics']['rank_ic']['value'], '.3g')}"
            for name, m in report["models"].items()
            if m["task"] == "direction"
        )
        print(f"planted signal: information coefficient {report['planted_signal']:.3g}; recovered rank IC: {recovered}")
    for name, decision in (deployed or {}).get("decisions", {}).items():
        print(f"  {name} {decision['version']}: {decision['reason']}")


def _with_interval(values: dict) -> str:
    return f"{number(values['value'])} [{number(values['low'])}, {number(values['high'])}]"


def _baselines(evaluation: dict) -> str:
    metric = evaluation["primary"]["metric"]
    return ", ".join(f"{name} {number(b[metric]['value'])}" for name, b in evaluation["baselines"].items())


def print_features_summary(ctx: RunContext, manifest: dict) -> None:
    for timeframe, entry in manifest["timeframes"].items():
        rows = [
            (
                symbol,
                timeframe,
                s["bars"],
                s["warmup_rows"],
                s["rows"],
                s["features"],
                entry["excluded_from_training"].get(symbol, "training"),
            )
            for symbol, s in entry["symbols"].items()
        ]
        print(format_table(("symbol", "tf", "bars", "warm-up dropped", "rows", "features", "use"), rows))
        categories = ", ".join(f"{name} {count}" for name, count in entry["categories"].items())
        table = entry.get("training_table", {})
        print(
            f"features {timeframe}: {len(entry['feature_names'])} ({categories}); "
            f"training table {table.get('rows', 0):,} rows -> {ctx.layout.training_table(timeframe)}"
        )
        for name, reason in entry["missing_market_features"].items():
            print(f"  without {name}: {reason}")


def print_trained(ctx: RunContext, manifests: list[dict]) -> None:
    for manifest in manifests:
        print(
            f"trained {manifest['model_name']} v{manifest['version']}: {manifest['training_samples']:,} training rows "
            f"-> {runs_root(ctx.settings.data_dir) / manifest['artifacts'][0]['path']}"
        )


def print_report_summary(summary: dict) -> None:
    """What the report says, in the terminal: each model beside its best baseline, its backtest, its
    status, and what that means."""
    data = summary["data"]
    print(
        f"run {summary['run_id']}: as of {summary['as_of']}, source {summary['source']}, {len(data['pairs'])} pairs "
        "passed "
        f"validation, {len(data['quarantined'])} quarantined"
    )
    rows = []
    for name, model in summary["models"].items():
        metrics, trading = model["test_metrics"], model.get("trading")
        skill = metrics["skill"]
        rows.append(
            (
                name,
                model["version"],
                f"{metrics['primary']['metric']} {_with_interval(metrics['primary'])}",
                f"{number(skill['lower_bound'], '+.3g')} over {skill['baseline']}",
                _with_interval(trading["long_short_annualized_sharpe"]) if trading else "-",
                number(trading["long_short_max_drawdown"]["value"], ".1%") if trading else "-",
                number(trading["turnover"]["value"], ".0%") if trading else "-",
                model["status"],
            )
        )
    print(
        format_table(
            (
                "model",
                "version",
                "metric [95% interval]",
                "skill lower bound",
                "Sharpe [95% interval]",
                "max drawdown",
                "turnover",
                "status",
            ),
            rows,
        )
    )
    for name, reason in summary.get("not_trained", {}).items():
        print(f"  not trained {name}: {reason}")
    print("what this means:")
    for name, model in summary["models"].items():
        print(f"  {name} {model['version']}: {' '.join(model.get('meaning', []))}")


def print_history(model: str, history: dict, path) -> None:
    """What production served between runs, beside always the latest and the baselines."""
    metric = history["metric"]
    scored_periods = [p for p in history["periods"] if "skipped" not in p]
    print(
        f"{model}: {len(scored_periods)} of {len(history['periods'])} periods between "
        f"{len(history['periods']) + 1} runs scored, {history['rows']:,} rows "
        "(each labelled and predicted by every candidate)"
    )
    for period in history["periods"]:
        scored = f"skipped: {period['skipped']}" if "skipped" in period else f"{period['rows']:>7,} rows"
        print(
            f"  {period['from']} .. {period['to']}  served {period['served']:<22} latest {period['latest']:<6} {scored}"
        )
    rows = [
        ("served by production", history["served"]),
        ("always the latest", history["latest"]),
        *history["baselines"].items(),
    ]
    for name, metrics in rows:
        value = metrics[metric]
        print(f"  {name:<22} {metric} {_with_interval(value)}")
    gain, better = history["served_advantage"], "lower" if history["lower_is_better"] else "higher"
    print(
        f"  served's advantage over latest: {metric} {number(gain['value'], '+.4g')} ({gain['confidence']:.0%} "
        "interval "
        f"{number(gain['low'], '+.4g')} to {number(gain['high'], '+.4g')}; positive: what was served did better, "
        f"{metric} {better} "
        f"is better) -> {path}"
    )


def print_sync_summary(summary: dict) -> None:
    for collection, counts in summary.items():
        if isinstance(counts, dict) and "copied" in counts:
            print(
                f"sync {collection}: {counts['copied']:,} copied from TinyDB, {counts['kept']:,} kept (MongoDB's "
                "copy is as new); "
                f"{counts['in_mongodb']:,} in MongoDB"
            )
    for change in summary["renumbered"]:
        print(
            f"  renumbered {change['model_name']} {change['from']} of run {change['run_id']} -> {change['to']} "
            f"({change['from']} belongs to another run in MongoDB)"
        )
    for name, pointer in summary["production"].items():
        print(f"  production {name}: run {pointer['run_id']}{'' if pointer['changed'] else ' (unchanged)'}")


def print_runs(runs: list) -> None:
    """One line per run: as-of, run id, the stages it finished, its folder."""
    from trading_ml.overview import run_row

    rows = [
        (run.as_of.isoformat(), run.run_id, ",".join(run_row(run)["stages"]) or "-", str(run.layout.root))
        for run in runs
    ]
    print(
        format_table(("as-of", "run id", "stages", "folder"), rows)
        if rows
        else "no runs yet; start one with `trading-ml run`"
    )


def print_settings_differences(runs: list, frozen: list[dict | None]) -> None:
    """The settings two runs froze, key by key where they differ."""
    from trading_ml.config.settings import settings_differences

    names = [f"{run.run_id} ({run.as_of})" for run in runs]
    first, second = frozen
    if first is None or second is None:
        unfrozen = runs[0] if first is None else runs[1]
        print(f"run {unfrozen.run_id} froze no settings (it started before runs did); nothing to compare")
        return
    rows = [(key, json.dumps(a), json.dumps(b)) for key, a, b in settings_differences(first, second)]
    if not rows:
        print(f"runs {names[0]} and {names[1]} used the same settings")
        return
    print(format_table(("setting", names[0], names[1]), rows))
