"""`trading-ml`: the stages from the command line, in-process, with a progress bar.

Every stage command takes the same options (--source, --symbols, --timeframes, --as-of, --run-id,
--data-dir, --config), so scripts can rely on them. `run` and `ingest` start a new run (a fresh run
id); the other stages continue the newest run of the as-of date, or the one --run-id names. The
plan's `train_production_models.py --stage ... / --full-pipeline` runs the same functions through
:func:`plan_main`.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import re
import sys
import webbrowser
from collections.abc import Sequence

from tqdm import tqdm

from trading_ml.config import Settings, parse_as_of, shorten
from trading_ml.config.loader import ENV_DATA_DIR, ENV_MONGO_URI
from trading_ml.console import (
    print_features_summary,
    print_history,
    print_ingest_summary,
    print_model_table,
    print_report_summary,
    print_runs,
    print_settings_differences,
    print_sync_summary,
    print_trained,
    print_validate_summary,
)
from trading_ml.drivers import load_settings
from trading_ml.errors import ConfigError, SourceUnavailable, StageFailed, StoreError, TradingMLError
from trading_ml.io import read_json
from trading_ml.models.catalogue import MODEL_NAMES, TRAINED_MODELS, chosen_models
from trading_ml.pipeline import STAGES, before_stage
from trading_ml.pipeline.features import build_features
from trading_ml.pipeline.ingest import ingest
from trading_ml.pipeline.planning import RunRequest, plan_run
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.validate import validate
from trading_ml.run import RunContext, find_run, find_runs
from trading_ml.sources import spec_forms
from trading_ml.sync import sync_to_mongo

EXIT_STAGE_FAILED, EXIT_BAD_INPUT, EXIT_RETRY_LATER = 1, 2, 3
PLAN_STAGES = {  # the plan's script: its 'ingest' is Phase 1 (data), its 'validate' is model validation
    "ingest": ("ingest", "validate", "features"),
    "features": ("features",),
    "train": ("train",),
    "validate": ("evaluate",),
    "evaluate": ("evaluate",),
    "deploy": ("deploy",),
}


def common_options() -> OneLineParser:
    """--data-dir, --config and -v: every command takes them (an argparse parent)."""
    common = OneLineParser(add_help=False)
    common.add_argument(
        "--data-dir", help="where runs and the fallback store live (default: config or TRADING_ML_DATA_DIR)"
    )
    common.add_argument("--config", help="config.yaml path (default: TRADING_ML_CONFIG or the repo's)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return common


def run_options() -> OneLineParser:
    """What a stage command takes to pick its run (an argparse parent, with the common options)."""
    options = OneLineParser(add_help=False, parents=[common_options()])
    options.add_argument("--source", help=f"{' | '.join(spec_forms())} (default: config `source`)")
    options.add_argument("--symbols", help="comma-separated tickers (default: the config universe)")
    options.add_argument("--timeframes", help="comma-separated, e.g. 1d,1h (default: config)")
    options.add_argument(
        "--models",
        help=f"comma-separated models to train, of {', '.join(TRAINED_MODELS)} "
        f"(default: all {len(TRAINED_MODELS)}, or the run's)",
    )
    options.add_argument("--as-of", help="YYYY-MM-DD; windows end here (default: today)")
    options.add_argument(
        "--run-id",
        type=run_id_option,
        help="the run to continue (default: a new run for run/ingest, else the as-of's newest)",
    )
    return options


def split_list(text: str | None, option: str = "--symbols") -> list[str] | None:
    """A comma-separated option's items; None when the option is absent; an empty list is an error
    (it never means "everything")."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError(
            f"{option} {shorten(text)} lists nothing; name at least one (e.g. {option} {EXAMPLES[option]}) "
            "or leave the option out for the configured ones"
        )
    return items


EXAMPLES = {"--symbols": "AAPL,^GSPC", "--timeframes": "1d", "--models": "regime_rf"}


def settings_from_args(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    if args.data_dir is not None:
        if not args.data_dir.strip():
            raise ConfigError("--data-dir is empty; pass a folder (e.g. --data-dir data)")
        env[ENV_DATA_DIR] = args.data_dir
    if getattr(args, "mongo_uri", None):
        env[ENV_MONGO_URI] = args.mongo_uri
    return load_settings(args.config, env)


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (exit 2) instead of the usage block and the error."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{shorten(text)} is not a port; use 1-65535")
    return int(text)


def host_name(text: str) -> str:
    """An IPv4 or IPv6 address, or a host name: '256.0.0.1' is neither."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        if not re.fullmatch(r"[0-9.]+", text) and re.fullmatch(
            r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*", text
        ):
            return text
    raise argparse.ArgumentTypeError(
        f"{shorten(text)} is not an IP address or host name; pass e.g. 127.0.0.1 or localhost"
    )


def run_id_option(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; name a run (see `trading-ml runs`) or leave the option out")
    return text


MAX_REASON = 500  # characters of a promotion's --reason


def promotion_reason(text: str) -> str:
    if len(text) > MAX_REASON or not text.isprintable():
        raise argparse.ArgumentTypeError(
            f"must be one line of printable text of at most {MAX_REASON} characters (got {len(text)})"
        )
    return text


def build_context(args: argparse.Namespace, stages: Sequence[str]) -> RunContext:
    """The run the command works on, planned as the DAG plans it. A command that starts with ingest
    starts a new run (unless --run-id names one); a later stage continues a run and defaults to what
    that run selected."""
    request = RunRequest(
        as_of=args.as_of,
        symbols=split_list(args.symbols, "--symbols"),
        timeframes=split_list(args.timeframes, "--timeframes"),
        source=args.source,
        models=split_list(args.models, "--models"),
        run_id=args.run_id,
        continues=stages[0] != "ingest",
    )
    return plan_run(settings_from_args(args), request)


def run_stages(ctx: RunContext, stages: Sequence[str]) -> None:
    """Each stage in order, with what it printed; they find their inputs in the run folder."""
    with StageResources.open(ctx) as resources:
        print(
            f"run {ctx.run_id}  as-of {ctx.as_of}  store {resources.store_choice.kind} "
            f"({resources.store_choice.reason})  -> {ctx.run_root}"
        )
        for stage in stages:
            before_stage(stage, stages)
            RUNNERS[stage](ctx, resources)
    if {"evaluate", "deploy"} & set(stages):
        deployed = ctx.stage_manifest("deploy") if "deploy" in stages else None
        print_model_table(ctx, read_json(ctx.layout.evaluation_report), deployed)


def run_ingest(ctx: RunContext, resources: StageResources) -> None:
    with tqdm(total=len(ctx.pairs), desc="ingest", unit="pair", file=sys.stderr, disable=None) as bar:

        def advance(manifest: dict) -> None:
            bar.set_postfix_str(f"{manifest['symbol']} {manifest['timeframe']}")
            bar.update()

        try:
            ingest(ctx, resources=resources, on_done=advance)
        finally:
            print_ingest_summary(ctx, ctx.ingest_manifests())


def run_validate(ctx: RunContext, resources: StageResources) -> None:
    try:
        validate(ctx, resources)
    finally:
        if ctx.layout.validation_report.is_file():
            print_validate_summary(ctx, read_json(ctx.layout.validation_report))


def run_features(ctx: RunContext, resources: StageResources) -> None:
    print_features_summary(ctx, build_features(ctx, resources))


def run_train(ctx: RunContext, resources: StageResources) -> None:
    from trading_ml.pipeline.train import combine, train_models

    models = chosen_models(ctx.models)
    with tqdm(total=len(models), desc="train", unit="model", file=sys.stderr, disable=None) as bar:

        def advance(manifest: dict, seconds: float) -> None:
            bar.set_postfix_str(manifest["model_name"])
            bar.update()

        trained = train_models(ctx, resources, on_trained=advance)
    trained.extend(combine(ctx, resources)["combined"].values())
    print_trained(ctx, trained)


def run_evaluate(ctx: RunContext, resources: StageResources) -> None:
    from trading_ml.pipeline.evaluate import evaluate

    evaluate(ctx, resources)


def run_deploy(ctx: RunContext, resources: StageResources) -> None:
    from trading_ml.pipeline.deploy import deploy

    deploy(ctx, resources)


def run_report_stage(ctx: RunContext, resources: StageResources) -> None:
    from trading_ml.pipeline.report import report

    written = report(ctx, resources)
    print(f"report: {ctx.layout.report_html} ({len(written['figures'])} plots; `trading-ml report --open` shows it)")


RUNNERS = {
    "ingest": run_ingest,
    "validate": run_validate,
    "features": run_features,
    "train": run_train,
    "evaluate": run_evaluate,
    "deploy": run_deploy,
    "report": run_report_stage,
}


def find_evaluated_run(settings: Settings, reference: str | None):
    """RUN as a run id, an as-of date (its newest run) or a folder; by default the newest evaluated run."""
    if reference:
        run = find_run(settings.data_dir, reference)
        if not run.layout.evaluation_report.is_file():
            raise ConfigError(
                f"run {run.run_id} ({run.layout.root}) is not evaluated yet; run `trading-ml evaluate --run-id "
                f"{run.run_id}`"
            )
        return run
    evaluated = [run for run in find_runs(settings.data_dir) if run.layout.evaluation_report.is_file()]
    if not evaluated:
        raise ConfigError(f"no evaluated run under {settings.data_dir / 'runs'}; run `trading-ml run` first")
    return evaluated[-1]


def run_report(args: argparse.Namespace) -> None:
    """Show a run's report; write it first when it is missing or --regenerate is given."""
    settings = settings_from_args(args)
    run = find_evaluated_run(settings, args.run)
    path = run.layout.report_html
    if args.regenerate or not path.is_file():
        from trading_ml.pipeline.report import report

        ctx = plan_run(settings, RunRequest(run_id=run.run_id, continues=True))
        with StageResources.open(ctx) as resources:
            report(ctx, resources)
    print_report_summary(read_json(run.layout.report_json))
    print(f"report: {path}")
    if args.open and not webbrowser.open(path.as_uri()):
        print("no browser found here; open the file above in one", file=sys.stderr)


def run_serve(args: argparse.Namespace) -> None:
    import socket

    from trading_ml.serving import serve

    settings = settings_from_args(args)
    with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
        try:
            probe.bind((args.host, args.port))
        except socket.gaierror as error:
            raise ConfigError(
                f"cannot listen on {args.host}: no such address ({error.strerror or error}); "
                "pass --host an address of this machine, e.g. 127.0.0.1"
            ) from None
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(
                    f"cannot listen on {args.host}: it is not an address of this machine; "
                    "pass --host one that is, e.g. 127.0.0.1"
                ) from None
            raise ConfigError(
                f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); "
                "stop what uses that port or pass another --port"
            ) from None
    serve(settings, args.host, args.port)


def run_sync(args: argparse.Namespace) -> None:
    summary = sync_to_mongo(settings_from_args(args), args.mongo_uri)
    print_sync_summary(summary)


def run_promote(args: argparse.Namespace) -> None:
    """A person's decision: make a version production, whatever the gate said; the reason is stored.
    The version must pass verification (every file matching its recorded sha256, its load and canary
    predictions, in a child process) or it is refused (exit 2)."""
    from trading_ml.registry import ModelRegistry
    from trading_ml.storage import open_store
    from trading_ml.verify import Verifier

    settings = settings_from_args(args)
    store, _ = open_store(settings, fall_back=False)  # the registry lives in MongoDB when one is configured
    try:
        registry = ModelRegistry(store, settings.data_dir)
        record = registry.record(args.model, args.version)
        Verifier(registry, settings).load(
            record
        )  # a DataError (altered, missing, malformed files, bad predictions) refuses it
        before = registry.production(args.model)
        reason = (
            f"promoted by hand (trading-ml promote): {args.reason}"
            if args.reason
            else "promoted by hand (trading-ml promote)"
        )
        registry.promote(args.model, record["run_id"], reason)
        previous = (
            f"; {registry.record_for_run(args.model, before['run_id'])['version']} is archived"
            if before and before["run_id"] != record["run_id"]
            else ""
        )
        print(f"{args.model} {record['version']} (run {record['run_id']}) is production{previous}")
    finally:
        store.close()


def run_history(args: argparse.Namespace) -> None:
    """The out-of-sample record of what production served between the runs of one model."""
    from trading_ml.history import deployment_history
    from trading_ml.io import write_json
    from trading_ml.models.catalogue import task_of
    from trading_ml.registry import ModelRegistry
    from trading_ml.storage import open_stage_store

    settings = settings_from_args(args)
    task_of(args.model)  # an unknown name is refused before any store is opened
    store = open_stage_store(settings)
    try:
        history = deployment_history(settings, ModelRegistry(store, settings.data_dir), args.model)
    finally:
        store.close()
    path = write_json(settings.data_dir / "history" / f"{args.model}.json", history)
    print_history(args.model, history, path)


def run_list(args: argparse.Namespace) -> None:
    """Every run under the data directory: as-of, run id, folder and the stages it finished; or, with
    --diff, how two runs' frozen settings differ."""
    data_dir = settings_from_args(args).data_dir
    if args.diff:
        runs = [find_run(data_dir, reference) for reference in args.diff]
        print_settings_differences(runs, [run.layout.frozen_settings() for run in runs])
        return
    print_runs(find_runs(data_dir, parse_as_of(args.as_of) if args.as_of else None))


def stage_commands() -> tuple[tuple[str, str], ...]:
    """Each stage command and what it does (`run` is every stage)."""
    return (
        ("ingest", "fetch every symbol and timeframe into raw/ and the store"),
        ("validate", "run the six checks on an ingested run; clean into validated/, quarantine failures"),
        ("features", "indicators, market-wide features and targets of a validated run; training tables"),
        (
            "train",
            f"fit the {len(TRAINED_MODELS)} models ({', '.join(TRAINED_MODELS)}) on the run's training table, then "
            "combine them (the direction ensemble); register them as candidates",
        ),
        ("evaluate", "walk-forward out-of-sample metrics with intervals, beside the baselines and the plan's targets"),
        (
            "deploy",
            "promote the candidates whose skill over their baselines is significant and not worse than production",
        ),
        ("run", f"the full pipeline: {', '.join(STAGES)}"),
    )


def parser() -> argparse.ArgumentParser:
    root = OneLineParser(prog="trading-ml", description="Market data to registered trading models.")
    commands = root.add_subparsers(dest="command", required=True)
    common, stage = common_options(), run_options()
    for name, text in stage_commands():
        commands.add_parser(name, help=text, description=text, parents=[stage])
    report = commands.add_parser(
        "report", help="show (or regenerate) a run's HTML performance report", parents=[common]
    )
    report.add_argument(
        "run", nargs="?", help="run id, as-of date (its newest run) or run folder (default: the newest evaluated run)"
    )
    report.add_argument(
        "--regenerate", action="store_true", help="write it again from the run's files and the registry"
    )
    report.add_argument("--open", action="store_true", help="open it in a browser")
    serve = commands.add_parser("serve", help="the signals API (FastAPI) over the production models", parents=[common])
    serve.add_argument("--host", default="127.0.0.1", type=host_name, help="default 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=port_number, default=8000)
    listing = commands.add_parser(
        "runs", help="list the runs: as-of, run id, finished stages, folder", parents=[common]
    )
    listing.add_argument("--as-of", help="only the runs of this as-of date")
    listing.add_argument(
        "--diff",
        nargs=2,
        metavar="RUN",
        help="how two runs' settings differ (each run's settings.json, frozen when it started)",
    )
    models = f"one of {', '.join(MODEL_NAMES)}"
    promote = commands.add_parser(
        "promote", help="make a registered version production by hand (the gate is not asked)", parents=[common]
    )
    promote.add_argument("model", help=models)
    promote.add_argument("version", help="the version, e.g. 3.0 (see GET /models or the Airflow registry page)")
    promote.add_argument(
        "--reason",
        type=promotion_reason,
        help=f"why, kept in the record and the production history (one line, at most {MAX_REASON} characters)",
    )
    history = commands.add_parser(
        "history",
        help="what production served between runs, beside always promoting the latest and the baselines",
        parents=[common],
    )
    history.add_argument("model", help=models)
    sync = commands.add_parser("sync", help="copy what landed in the TinyDB fallback into MongoDB", parents=[common])
    sync.add_argument("--mongo-uri", help="default: TRADING_ML_MONGO_URI or storage.mongo_uri")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return _run(args, lambda: _dispatch(args))


def _dispatch(args: argparse.Namespace) -> None:
    commands = {
        "sync": run_sync,
        "report": run_report,
        "serve": run_serve,
        "runs": run_list,
        "promote": run_promote,
        "history": run_history,
    }
    if args.command in commands:
        commands[args.command](args)
        return
    stages = STAGES if args.command == "run" else (args.command,)
    run_stages(build_context(args, stages), stages)


def _run(args: argparse.Namespace, action) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        action()
    except StageFailed as error:
        print(f"stage failed: {error}", file=sys.stderr)
        return EXIT_STAGE_FAILED
    except (StoreError, SourceUnavailable) as error:
        print(f"unavailable, retry later: {error}", file=sys.stderr)
        return EXIT_RETRY_LATER
    except TradingMLError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # a --data-dir that cannot be written (under /proc, read-only, a file in the path)
        print(
            f"error: cannot use {error.filename or 'a path'}: {error.strerror or error}; pass --data-dir a folder "
            "you can write to",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    return 0


def plan_parser() -> argparse.ArgumentParser:
    root = OneLineParser(
        prog="train_production_models.py",
        description="The plan's entry point: run one stage, or the full pipeline.",
        parents=[run_options()],
    )
    mode = root.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--stage",
        choices=list(PLAN_STAGES),
        help="ingest = fetch + validate data + features; validate = evaluate the models",
    )
    mode.add_argument("--full-pipeline", action="store_true", help="every stage in order")
    return root


def plan_main(argv: Sequence[str] | None = None) -> int:
    args = plan_parser().parse_args(argv)
    stages = STAGES if args.full_pipeline else PLAN_STAGES[args.stage]
    return _run(args, lambda: run_stages(build_context(args, stages), stages))


if __name__ == "__main__":
    raise SystemExit(main())
