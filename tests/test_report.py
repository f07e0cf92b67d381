"""The run's HTML report: every plot present and real, numbers equal to the registry's, and it renders
in headless Chromium with every image loaded."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import matplotlib.image
import pytest

from trading_ml.io import read_json
from trading_ml.models.catalogue import MODEL_NAMES, task_of
from trading_ml.registry import ModelRegistry

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_the_report_has_every_plot_and_the_registrys_numbers(trained_run):
    ctx, resources, written = trained_run
    summary = json.loads((ctx.run_root / written["json"]).read_text())
    page = (ctx.run_root / written["html"]).read_text()
    plots = {
        "direction": ("confusion", "equity", "ic"),
        "volatility": ("volatility",),
        "regime": ("confusion", "regime_timeline"),
    }
    configs = {name: ctx.layout.model_file(name, ".config.json") for name in MODEL_NAMES}
    explained = {name for name, path in configs.items() if path.is_file() and "feature_importance" in read_json(path)}
    expected = {f"{plot}_{name}" for name in MODEL_NAMES for plot in plots[task_of(name)]} | {
        f"importance_{name}" for name in explained
    }
    assert explained  # the gradient-boosted model saves its gain shares
    assert {f["id"] for f in summary["figures"]} == expected == set(written["figures"])
    images = dict(
        re.findall(r"<figure id=[\"']([a-z_]+)[\"']>.*?src=[\"']data:image/png;base64,([A-Za-z0-9+/=]+)[\"']", page)
    )
    assert set(images) == expected
    assert all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for png in images.values())
    assert "http://" not in page and "https://" not in page  # nothing to fetch: it opens offline
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    for name, model in summary["models"].items():
        record = registry.record_for_run(name, ctx.run_id)
        assert record["version"] == model["version"]
        assert model["test_metrics"] == record["test_metrics"] and model["status"] == record["status"]
        assert f"{record['test_metrics']['primary']['value']:.4g} [" in page  # the value, then its interval
        assert f"{record['test_metrics']['skill']['lower_bound']:+.4g}" in page
    assert {p["symbol"] for p in summary["data"]["pairs"]} == set(ctx.symbols) and summary["data"]["quarantined"] == []
    planted = summary["planted_signal"]
    assert planted["information_coefficient"] == ctx.settings.sources["synthetic"].get("signal_strength")
    assert (
        set(planted["recovered_rank_ic"]) == {"direction", "direction_xgboost", "direction_lstm"}
        and 'id="planted-signal"' in page
    )


def test_the_report_shows_what_traders_look_at_with_intervals_and_what_it_means(trained_run):
    """Before: Sharpe, drawdown and turnover sat in evaluation.json only, without intervals, and nothing
    said why a model stayed candidate."""
    ctx, _, written = trained_run
    summary = json.loads((ctx.run_root / written["json"]).read_text())
    page = (ctx.run_root / written["html"]).read_text()
    evaluation = json.loads(ctx.layout.evaluation_report.read_text())["models"]
    assert 'id="trading"' in page and 'id="meaning"' in page
    for name in ("direction", "direction_xgboost", "direction_lstm"):
        trading, backtest = summary["models"][name]["trading"], evaluation[name]["backtest"]
        sharpe = trading["long_short_annualized_sharpe"]
        assert (
            sharpe["value"] == pytest.approx(backtest["long_short"]["annualized_sharpe"])
            and sharpe["low"] < sharpe["high"]
        )
        assert (
            trading["long_short_max_drawdown"]["low"] <= 0 and trading["turnover"]["low"] <= trading["turnover"]["high"]
        )
        assert f"{sharpe['value']:.3g} [{sharpe['low']:.3g}, {sharpe['high']:.3g}]" in page
        daily = evaluation[name]["ic_by_date"]
        assert len(daily["ic"]) == len(daily["timestamps"]) and daily["cumulative"][-1] == pytest.approx(
            sum(daily["ic"]), abs=1e-3
        )
        assert sum(daily["ic"]) / len(daily["ic"]) == pytest.approx(
            evaluation[name]["metrics"]["rank_ic"]["value"], abs=1e-4
        )
    for name, model in summary["models"].items():
        said = " ".join(model["meaning"])
        skill = evaluation[name]["skill"]
        assert (
            f"{'beat' if skill['value'] > 0 else 'fell short of'} {skill['baseline']}, the best baseline" in said
            and model["status"] in said
        )
        if model["status"] != "production" and not evaluation[name]["skill"]["better"]:
            assert "would be promoted by a run whose bound is above zero" in said


def test_report_command_finds_the_newest_run_and_regenerates(trained_run, capsys):
    from trading_ml.cli import main

    ctx, _, written = trained_run
    path = ctx.run_root / written["html"]
    before = path.stat().st_mtime_ns
    assert main(["report", "--data-dir", str(ctx.settings.data_dir)]) == 0
    assert str(path) in capsys.readouterr().out and path.stat().st_mtime_ns == before  # shown, not rewritten
    assert main(["report", ctx.as_of.isoformat(), "--regenerate", "--data-dir", str(ctx.settings.data_dir)]) == 0
    assert path.stat().st_mtime_ns > before
    assert main(["report", ctx.run_id, "--data-dir", str(ctx.settings.data_dir)]) == 0
    out = capsys.readouterr().out
    assert (
        str(path) in out and f"run {ctx.run_id}: as of {ctx.as_of.isoformat()}" in out
    )  # the summary, not only a path
    assert "Sharpe [95% interval]" in out and "what this means:" in out and "direction_xgboost" in out
    assert main(["report", "1999-01-01", "--data-dir", str(ctx.settings.data_dir)]) == 2
    assert "no run matches 1999-01-01" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it when run as root)")
def test_the_report_renders_in_headless_chromium_with_every_image_loaded(trained_run, tmp_path):
    ctx, _, written = trained_run
    url = (ctx.run_root / written["html"]).as_uri()
    common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert f"{len(written['figures'])} of {len(written['figures'])} plots rendered" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, "--window-size=1400,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True
    )
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1400) and pixels[..., :3].std() > 0.05  # a page with content, not a blank one


def test_the_template_escapes_what_the_data_says(trained_run):
    """A quarantine reason or a run id holding markup is shown as text, never run (the template autoescapes)."""
    from trading_ml.report import render_html

    ctx, _, written = trained_run
    summary = json.loads((ctx.run_root / written["json"]).read_text())
    summary["run_id"] = "<script>alert(1)</script>"
    summary["data"]["quarantined"] = [
        {"symbol": "EVIL", "timeframe": "1d", "reasons": ["<img src=x onerror=alert(2)>"]}
    ]
    page = render_html(summary, {})
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page


class RecordsWithoutMetrics:
    """The run's registry as a train task re-run after evaluate leaves it: the records lack test metrics."""

    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def record_for_run(self, name: str, run_id: str) -> dict:
        record = dict(self.registry.record_for_run(name, run_id))
        record.pop("test_metrics", None)
        return record


def test_a_model_without_test_metrics_is_named_with_what_to_run(trained_run):
    from trading_ml.errors import DataError
    from trading_ml.report import report_data

    ctx, resources, _ = trained_run
    with pytest.raises(DataError, match=r"v[0-9.]+ of run .* has no test metrics.*trading-ml evaluate --run-id"):
        report_data(ctx, RecordsWithoutMetrics(resources.registry(ctx)))
