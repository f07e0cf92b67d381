"""The suite's grouping under ``--dist loadgroup`` (tests/conftest.py): tests that share a fixture
wider than one test run on one worker, so it is built once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO, shared_fixture_groups

PRINT_GROUPS = "TRADING_ML_TEST_PRINT_GROUPS"
MODULES = [
    "tests/pipeline/test_deploy.py",
    "tests/test_registry.py",
    "tests/dags/test_plugin.py",
    "tests/test_history.py",
]


def pytest_collection_finish(session):
    """As a plugin (``-p tests.test_suite_groups``) with PRINT_GROUPS set: each collected test's
    fixtures and group, as JSON on one line."""
    if os.environ.get(PRINT_GROUPS):
        groups = shared_fixture_groups(session.items)
        found = {item.nodeid: [sorted(item.fixturenames), groups.get(item)] for item in session.items}
        print("GROUPS " + json.dumps(found))


def collected_groups() -> dict:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", "-o", "addopts="]
    done = subprocess.run(
        [*command, "-p", "tests.test_suite_groups", *MODULES],
        cwd=REPO,
        env={**os.environ, PRINT_GROUPS: "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = [line for line in done.stdout.splitlines() if line.startswith("GROUPS ")]
    return json.loads(line.removeprefix("GROUPS "))


def test_tests_sharing_a_wide_fixture_directly_or_through_another_share_a_group():
    found = collected_groups()

    def group_of(fixture: str) -> set:
        return {group for fixtures, group in found.values() if fixture in fixtures}

    for fixture in ("trained_run", "quarterly_runs", "planted", "random_walk", "two_runs"):
        assert len(group_of(fixture)) == 1 and None not in group_of(fixture), fixture
    assert group_of("planted") == group_of("random_walk")  # a test reads both: one group
    assert group_of("trained_run") != group_of("quarterly_runs")  # unrelated: two groups, both workers busy
    per_worker_only = [
        group
        for fixtures, group in found.values()
        if "airflow_db" in fixtures and "trained_run" not in fixtures and "quarterly_runs" not in fixtures
    ]
    assert per_worker_only and set(per_worker_only) == {None}  # airflow_db alone: built on each worker, no group
