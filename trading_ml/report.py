"""A run's performance report: one self-contained HTML file with its plots embedded as PNG, and a JSON
twin with the same numbers (read from the run's evaluation and the registry, never recomputed)."""

from __future__ import annotations

import base64
import datetime as dt
import io

import jinja2
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trading_ml.data.bar_files import read_bars_csv  # noqa: E402
from trading_ml.errors import DataError  # noqa: E402
from trading_ml.features.targets import DIRECTIONS  # noqa: E402
from trading_ml.io import atomic_write_bytes, number, read_json, read_parquet, write_json  # noqa: E402
from trading_ml.models.base import CONFIG  # noqa: E402
from trading_ml.models.dataset import TrainingData  # noqa: E402
from trading_ml.models.splits import out_of_sample_fold  # noqa: E402
from trading_ml.models.tasks import REGIME, TASKS, VOLATILITY  # noqa: E402
from trading_ml.registry import ModelRegistry  # noqa: E402
from trading_ml.run import RunContext  # noqa: E402

REPORT_HTML, REPORT_JSON = "report.html", "report.json"
VOLATILITY_SYMBOLS = 3  # predicted vs realized volatility for the benchmark and the next two symbols
TOP_FEATURES = 20
REGIME_COLORS = {"bull": "#2e7d32", "bear": "#c62828", "sideways": "#9e9e9e", "high_vol": "#ef6c00"}
DIRECTION_LABELS = {str(k): label for k, label in DIRECTIONS.items()}  # the confusion matrix's "-1" is "down"


def write_report(ctx: RunContext, registry: ModelRegistry) -> dict:
    """Write the run's report.html and report.json from its validate and features manifests, its
    evaluation report and the registry; their paths relative to the run folder."""
    summary = report_data(ctx, registry)
    figures = report_figures(ctx, summary)
    summary["figures"] = [{"id": key, "title": title} for key, (title, _) in figures.items()]
    json_path = write_json(ctx.layout.report_json, summary)
    html_path = atomic_write_bytes(ctx.layout.report_html, render_html(summary, figures).encode())
    return {"html": ctx.layout.relative(html_path), "json": ctx.layout.relative(json_path), "figures": list(figures)}


def report_data(ctx: RunContext, registry: ModelRegistry) -> dict:
    """The numbers: what went in, what validation quarantined, each model beside its baselines."""
    validated = read_json(ctx.layout.validate_manifest)
    features = read_json(ctx.layout.features_manifest)
    evaluation = read_json(ctx.layout.evaluation_report)
    models = {}
    for name, result in evaluation["models"].items():
        record = registry.record_for_run(name, ctx.run_id)
        if "test_metrics" not in record:
            raise DataError(
                f"{name} v{record['version']} of run {ctx.run_id} has no test metrics (trained again after evaluate?); "
                f"run `trading-ml evaluate --run-id {ctx.run_id}`, then deploy and report"
            )
        models[name] = {
            "version": record["version"],
            "status": record["status"],
            "deploy_decision": record.get("deploy_decision", "not deployed yet"),
            "test_metrics": record["test_metrics"],
            "baselines": _baseline_values(result),
            "metrics": result["metrics"],
            "training_samples": record["training_samples"],
            "trained_date": record["trained_date"],
            **({"trading": trading_figures(result["backtest"])} if "backtest" in result else {}),
        }
        models[name]["meaning"] = meaning(name, models[name], result, ctx.settings.models.confidence)
    return {
        "run_id": ctx.run_id,
        "as_of": ctx.as_of.isoformat(),
        "source": ctx.source,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": {
            "pairs": [
                {"symbol": p["symbol"], "timeframe": p["timeframe"], "rows": p["rows"]} for p in validated["passed"]
            ],
            "quarantined": [
                {"symbol": q["symbol"], "timeframe": q["timeframe"], "reasons": q["reasons"]}
                for q in validated["quarantined"]
            ],
            "pass_share": validated["pass_share"],
            "training_rows": {
                tf: entry.get("training_table", {}).get("rows") for tf, entry in features["timeframes"].items()
            },
        },
        "folds": evaluation["folds"],
        "confidence": ctx.settings.models.confidence,
        "planted_signal": _planted_vs_recovered(evaluation),
        "models": models,
        "not_trained": evaluation.get("not_trained", {}),
        "history": deployment_histories(ctx, models),
    }


def deployment_histories(ctx: RunContext, models: dict) -> dict:
    """The deployment history `trading-ml history` last wrote for each of the run's models, if any (one
    written by an older version, without the served version's advantage, is left out)."""
    folder = ctx.settings.data_dir / "history"
    found = {name: read_json(folder / f"{name}.json") for name in models if (folder / f"{name}.json").is_file()}
    return {
        name: history for name, history in found.items() if isinstance(history, dict) and "served_advantage" in history
    }


def trading_figures(backtest: dict) -> dict:
    """The long-short backtest's Sharpe, maximum drawdown, total return and turnover, with their intervals
    where the evaluation drew them (an evaluation before they were drawn has the values only)."""
    drawn = backtest.get("intervals", {})

    def figure(side: str, name: str) -> dict:
        value = backtest[side][name]
        return drawn.get(side, {}).get(name) or {"value": value, "low": float("nan"), "high": float("nan")}

    return {
        "costs_bps": backtest["costs_bps"],
        **{
            f"{side}_{name}": figure(side, name)
            for side in ("long_short", "buy_and_hold")
            for name in ("annualized_sharpe", "max_drawdown", "total_return")
        },
        "turnover": drawn.get("turnover")
        or {"value": backtest["mean_turnover"], "low": float("nan"), "high": float("nan")},
    }


def meaning(name: str, model: dict, result: dict, confidence: float) -> list[str]:
    """A few sentences on the model in plain words: what the gate saw, why it is (or is not) production,
    what would change that, and what its backtest says."""
    skill, level = result["skill"], f"{confidence:.0%}"
    metric, baseline, days = skill["metric"], skill["baseline"], result.get("days")
    verb = "beat" if skill["value"] > 0 else "fell short of"  # NaN too: nothing was beaten
    measured = (
        f"Its {metric} {verb} {baseline}, the best baseline, by {number(abs(skill['value']), '.3g')} over {days} "
        "out-of-sample dates; "
        f"the one-sided {level} lower bound of that skill is {number(skill['lower_bound'], '+.3g')}."
    )
    if model["status"] == "production":
        said = [
            measured,
            f"It is production: the bound is above zero and the gate found it not significantly worse than the "
            f"version before it ({model['deploy_decision']}).",
            "A later run replaces it only with a model that is significantly better than its baselines and not "
            "significantly worse than this version on dates neither trained on.",
        ]
    elif skill["better"]:
        said = [
            measured,
            f"The skill is significant, yet it stayed {model['status']}: {model['deploy_decision']}.",
            "It would be promoted by a run whose model is also not significantly worse than production on the dates "
            "both can score.",
        ]
    else:
        width = (
            skill["high"] - skill["low"]
            if skill["high"] == skill["high"] and skill["low"] == skill["low"]
            else float("nan")
        )
        said = [
            measured,
            f"It stayed {model['status']}: the bound is not above zero, so on these dates it cannot be told apart "
            f"from {baseline}.",
            "It would be promoted by a run whose bound is above zero: a stronger signal (a higher value) or more "
            "out-of-sample "
            f"dates (a narrower interval; it is {number(width, '.3g')} wide now).",
        ]
    trading = model.get("trading")
    if trading:
        sharpe = trading["long_short_annualized_sharpe"]
        said.append(
            f"Traded long-short after {trading['costs_bps']:g} bps costs: Sharpe {with_interval(sharpe)} against "
            f"{number(trading['buy_and_hold_annualized_sharpe']['value'], '.3g')} for buy-and-hold, worst drawdown "
            f"{number(trading['long_short_max_drawdown']['value'], '.1%')}, "
            f"{number(trading['turnover']['value'], '.0%')} "
            "of the book traded per bar"
            + (
                "; the Sharpe interval reaches zero: the backtest alone does not show a profitable strategy."
                if not sharpe["low"] > 0
                else "."
            )
        )
    return said


def _baseline_values(result: dict) -> dict[str, dict]:
    """Each baseline's value of the model's primary metric, with its interval."""
    metric = result["primary"]["metric"]
    return {name: values[metric] for name, values in result["baselines"].items()}


def _planted_vs_recovered(evaluation: dict) -> dict | None:
    """The synthetic market's planted information coefficient beside each direction model's rank IC."""
    if evaluation.get("planted_signal") is None:
        return None
    recovered = {
        name: result["metrics"]["rank_ic"]
        for name, result in evaluation["models"].items()
        if result["task"] == "direction"
    }
    return (
        {"information_coefficient": evaluation["planted_signal"], "recovered_rank_ic": recovered} if recovered else None
    )


def report_figures(ctx: RunContext, summary: dict) -> dict[str, tuple[str, str]]:
    """{id: (title, base64 PNG)} for every plot the run's models allow, from the run's own files."""
    evaluation = read_json(ctx.layout.evaluation_report)["models"]
    data = TrainingData.load(ctx, read_json(ctx.layout.features_manifest))
    figures = {}
    for name, result in evaluation.items():
        if "confusion_matrix" in result:
            figures[f"confusion_{name}"] = (
                f"{name} {summary['models'][name]['version']}: confusion matrix (out of sample)",
                _confusion_png(result["confusion_matrix"]),
            )
        if "backtest" in result:
            figures[f"equity_{name}"] = (
                f"{name} {summary['models'][name]['version']}: long-short vs buy-and-hold (out of sample, after costs)",
                _equity_png(result["backtest"]),
            )
        if "ic_by_date" in result:
            figures[f"ic_{name}"] = (
                f"{name} {summary['models'][name]['version']}: rank IC by date and cumulative IC (out of sample)",
                _ic_png(result["ic_by_date"]),
            )
        importance = _feature_importance(ctx, name)
        if importance:
            figures[f"importance_{name}"] = (
                f"{name}: top {TOP_FEATURES} features by gain",
                _importance_png(importance),
            )
        plot = TASKS[result["task"]].report_plot
        if plot:
            title, draw = PLOTS[plot]
            predictions = read_parquet(ctx.layout.predictions(name))
            figures[f"{plot}_{name}"] = (
                f"{name}: {title.format(benchmark=ctx.settings.features.benchmark)}",
                draw(ctx, data, predictions),
            )
    return figures


def _feature_importance(ctx: RunContext, name: str) -> dict[str, float] | None:
    """The feature importance a model saved in its config (XGBoost's gain shares), if it saved one."""
    path = ctx.layout.model_file(name, CONFIG)
    return read_json(path).get("feature_importance") if path.is_file() else None


def png_base64(figure) -> str:
    """The figure as a base64 PNG (closed after), for an inline <img>."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _confusion_png(matrix: dict) -> str:
    counts, labels = np.array(matrix["counts"]), [DIRECTION_LABELS.get(label, label) for label in matrix["labels"]]
    figure, axes = plt.subplots(figsize=(3.6, 3.2))
    axes.imshow(counts, cmap="Blues")
    for (row, column), value in np.ndenumerate(counts):
        axes.text(column, row, str(value), ha="center", va="center", color="black", fontsize=9)
    axes.set_xticks(range(len(labels)), labels, rotation=30)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    return png_base64(figure)


def _equity_png(backtest: dict) -> str:
    curve = backtest["equity_curve"]
    stamps = pd.to_datetime(curve["timestamps"])
    figure, axes = plt.subplots(figsize=(6.4, 3.0))
    axes.plot(stamps, curve["long_short"], label=f"long-short ({backtest['costs_bps']:g} bps costs)")
    axes.plot(stamps, curve["buy_and_hold"], label="buy-and-hold (equal weight)")
    axes.set_ylabel("growth of 1")
    axes.legend(loc="best", fontsize=8)
    figure.autofmt_xdate()
    return png_base64(figure)


def _ic_png(daily: dict) -> str:
    """Qlib's view of a ranking signal: each date's cross-sectional rank IC, and their running sum (a
    signal with skill climbs steadily; one without wanders around zero)."""
    stamps = pd.to_datetime(daily["timestamps"])
    figure, axes = plt.subplots(figsize=(6.4, 3.0))
    axes.bar(stamps, daily["ic"], width=1.5, color="#90a4ae", label="rank IC of the date")
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_ylabel("rank IC")
    running = axes.twinx()
    running.plot(stamps, daily["cumulative"], color="#1565c0", linewidth=1.4, label="cumulative IC")
    running.set_ylabel("cumulative IC")
    figure.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    return png_base64(figure)


def _importance_png(importance: dict[str, float]) -> str:
    top = pd.Series(importance).sort_values().tail(TOP_FEATURES)
    figure, axes = plt.subplots(figsize=(6.4, 5.0))
    axes.barh(top.index, top.to_numpy())
    axes.set_xlabel("gain share")
    axes.tick_params(axis="y", labelsize=8)
    return png_base64(figure)


def _volatility_symbols(ctx: RunContext, data: TrainingData) -> list[str]:
    symbols = data.symbols
    first = [ctx.settings.features.benchmark] if ctx.settings.features.benchmark in symbols else []
    return (first + [s for s in symbols if s not in first])[:VOLATILITY_SYMBOLS]


def _volatility_png(ctx: RunContext, data: TrainingData, predictions: pd.DataFrame) -> str:
    test = out_of_sample_fold(data.folds) >= 0
    symbols = _volatility_symbols(ctx, data)
    figure, axes_list = plt.subplots(len(symbols), 1, figsize=(6.4, 2.2 * len(symbols)), sharex=True, squeeze=False)
    for axes, symbol in zip(axes_list[:, 0], symbols):
        rows = test & (data.table.index.get_level_values("symbol") == symbol)
        stamps = data.table.index[rows].get_level_values("timestamp")
        axes.plot(stamps, data.table[VOLATILITY.target][rows].to_numpy(), label="realized", color="black", linewidth=1)
        axes.plot(stamps, predictions["volatility"][rows].to_numpy(), label="predicted", linewidth=1)
        axes.set_title(symbol, fontsize=9)
        axes.legend(loc="upper left", fontsize=7)
    figure.autofmt_xdate()
    return png_base64(figure)


def _regime_png(ctx: RunContext, data: TrainingData, predictions: pd.DataFrame) -> str:
    benchmark = ctx.settings.features.benchmark
    figure, axes = plt.subplots(figsize=(7.2, 3.2))
    path = ctx.layout.validated_bars(benchmark, data.timeframe)
    if benchmark in data.symbols and path.exists():
        regimes = data.table[REGIME.now].xs(benchmark, level="symbol").dropna()
        close = read_bars_csv(path, data.timeframe)["close"].reindex(regimes.index)
        axes.plot(regimes.index, close.to_numpy(), color="black", linewidth=1)
        spans = (regimes != regimes.shift()).cumsum()
        for _, block in regimes.groupby(spans):
            axes.axvspan(
                block.index[0],
                block.index[-1],
                color=REGIME_COLORS.get(block.iloc[0], "#ffffff"),
                alpha=0.25,
                linewidth=0,
            )
        forecast = predictions["regime_ahead"].xs(benchmark, level="symbol").dropna()
        ahead = data.table["target_regime_ahead"].xs(benchmark, level="symbol").reindex(forecast.index)
        hits = forecast[(forecast == ahead) & ahead.notna()].index
        axes.plot(hits, close.reindex(hits).to_numpy(), "|", color="#1565c0", markersize=6, label="forecast right")
        agreement = float((forecast[ahead.notna()] == ahead.dropna()).mean()) if ahead.notna().any() else float("nan")
        axes.set_title(
            f"{benchmark} close, shaded by the rules' regime; out-of-sample forecast right on {agreement:.0%} of bars",
            fontsize=9,
        )
        handles = [plt.Rectangle((0, 0), 1, 1, color=color, alpha=0.4) for color in REGIME_COLORS.values()]
        axes.legend(handles, REGIME_COLORS.keys(), loc="upper left", fontsize=7, ncol=4)
    else:
        axes.text(0.5, 0.5, f"{benchmark} is not in this run", ha="center", va="center")
    figure.autofmt_xdate()
    return png_base64(figure)


PLOTS = {  # a task's report_plot: (title, drawing of one model's out-of-sample predictions)
    "volatility": ("predicted vs realized volatility (out of sample)", _volatility_png),
    "regime_timeline": ("the rules' regime over {benchmark}, and the forecast's hits", _regime_png),
}


def with_interval(values: dict, spec: str = ".4g") -> str:
    return f"{number(values['value'], spec)} [{number(values['low'], spec)}, {number(values['high'], spec)}]"


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("trading_ml", "templates"),
    autoescape=jinja2.select_autoescape(["html"], default=True),
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["interval"] = with_interval
TEMPLATES.filters["number"] = number  # null (a metric that could not be computed) shows as n/a


def render_html(summary: dict, figures: dict[str, tuple[str, str]]) -> str:
    """The report page (templates/report.html, autoescaped): plain HTML and CSS, every image inline,
    nothing fetched over the network."""
    return TEMPLATES.get_template("report.html").render(
        summary=summary,
        figures=figures,
        symbols=sorted({p["symbol"] for p in summary["data"]["pairs"]}),
        test_rows=sum(f["rows"]["test"] for f in summary["folds"]),
        nan=float("nan"),
    )
