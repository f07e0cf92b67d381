"""A run's identity and folder: unique ids, one folder per run, claimed once, paths only from the layout."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.conftest import AS_OF
from trading_ml.errors import ConfigError
from trading_ml.run import RunContext, RunLayout, check_run_id, find_run, find_runs, folder_name, new_run_id

REPO = Path(__file__).resolve().parent.parent


def test_two_runs_on_one_as_of_get_their_own_ids_and_folders(settings):
    first, second = (RunContext.create(settings, AS_OF, ["AAPL"], ["1d"]) for _ in range(2))
    assert first.run_id != second.run_id and first.run_id.startswith("cli__")
    assert first.run_root != second.run_root
    assert first.run_root.parent == second.run_root.parent == settings.data_dir / "runs" / AS_OF
    assert [r.run_id for r in find_runs(settings.data_dir)] == [first.run_id, second.run_id]


def test_an_airflow_run_id_becomes_a_safe_folder_name_and_unsafe_ids_are_refused():
    assert folder_name("manual__2026-11-25T09:00:00.123456+00:00") == "manual__2026-11-25T09-00-00.123456-00-00"
    assert folder_name("backfill__2024-04-01T06:00:00+00:00") == "backfill__2024-04-01T06-00-00-00-00"
    for bad in ("", "../other", "a/b", ".hidden", "x" * 251, "run id", None):
        with pytest.raises(ConfigError, match="run id"):
            check_run_id(bad)
    assert len({new_run_id() for _ in range(50)}) == 50


def test_a_folder_claimed_by_one_run_id_is_refused_to_another(settings):
    RunContext.create(settings, AS_OF, ["AAPL"], ["1d"], run_id="manual__a:b").layout  # noqa: B018 - claims
    with pytest.raises(ConfigError, match="belongs to run 'manual__a:b'"):
        RunContext.create(settings, AS_OF, ["AAPL"], ["1d"], run_id="manual__a+b").layout  # noqa: B018 - same folder name
    again = RunContext.create(settings, AS_OF, ["XOM"], ["1d"], run_id="manual__a:b")
    assert again.run_root.name == "manual__a-b"  # the same run (a retried task) may come back


def test_concurrent_claims_of_one_folder_let_exactly_one_run_id_win(settings):
    ids = [f"manual__race{sep}1" for sep in (":", "+", "~")]  # three ids, one folder name
    outcomes = {}

    def claim(run_id):
        try:
            RunContext.create(settings, AS_OF, ["AAPL"], ["1d"], run_id=run_id).layout  # noqa: B018
            outcomes[run_id] = "claimed"
        except ConfigError:
            outcomes[run_id] = "refused"

    threads = [threading.Thread(target=claim, args=(run_id,)) for run_id in ids]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert sorted(outcomes.values()) == ["claimed", "refused", "refused"]
    assert find_runs(settings.data_dir)[0].run_id == next(r for r, o in outcomes.items() if o == "claimed")


def test_paths_recorded_in_manifests_never_lead_out_of_the_run_folder(tmp_path):
    layout = RunLayout(tmp_path / "runs" / AS_OF / "r1")
    assert layout.resolve("raw/AAPL_1d.csv") == layout.raw_bars("AAPL", "1d")
    for escaping in ("../r2/raw/AAPL_1d.csv", "/etc/passwd", "raw/../../r2/x"):
        with pytest.raises(ConfigError, match="not a path inside the run folder"):
            layout.resolve(escaping)


def test_a_run_is_found_by_id_as_of_or_folder(settings):
    older = RunContext.create(settings, "2026-08-20", ["AAPL"], ["1d"])
    newer = [RunContext.create(settings, AS_OF, ["AAPL"], ["1d"]) for _ in range(2)]
    for ctx in (older, *newer):
        ctx.layout  # noqa: B018 - claims
    assert find_run(settings.data_dir, older.run_id).layout.root == older.run_root
    assert find_run(settings.data_dir, AS_OF).run_id == newer[-1].run_id  # an as-of means its newest run
    assert find_run(settings.data_dir, str(newer[0].run_root)).run_id == newer[0].run_id
    assert find_run(settings.data_dir).run_id == newer[-1].run_id
    with pytest.raises(ConfigError, match="no run matches nope"):
        find_run(settings.data_dir, "nope")


def test_only_the_run_layout_builds_paths_inside_a_run_folder():
    """No module of the library or its drivers joins run-folder pieces by hand."""
    by_hand = re.compile(
        r"run_root\s*/|/\s*\"(raw|validated|quarantine|features|models|runs)\"|\"(raw|validated|features|models)/"
    )
    offenders = []
    for path in [*REPO.glob("trading_ml/**/*.py"), *REPO.glob("dags/*.py"), *REPO.glob("plugins/*.py")]:
        if path.name == "run.py":
            continue
        offenders += [
            f"{path.relative_to(REPO)}:{n}"
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if by_hand.search(line)
        ]
    assert offenders == []
