"""The fault suite's live stack, shared by its scenarios (one start, about a minute on 2 cores), and its
report: one row per scenario, written to `faults-report.json` in pytest's tmp dir and printed in the
terminal summary.

Sized by environment variables: GENLOOM_FAULTS_JOBS (jobs per scenario), GENLOOM_FAULTS_INTERVAL_S
(pace of submits), GENLOOM_FAULTS_BOUND_S (how long a client listens without news, once the stack is whole again after
the fault, before its job counts as lost),
GENLOOM_FAULTS_OUTAGE_S (how long a killed or paused part stays away)."""

from __future__ import annotations

import json
import os

import pytest

from tests.faults.load import Row
from tests.faults.stack import FaultStack

JOBS = int(os.environ.get("GENLOOM_FAULTS_JOBS", "6"))
INTERVAL_S = float(os.environ.get("GENLOOM_FAULTS_INTERVAL_S", "0.4"))
BOUND_S = float(os.environ.get("GENLOOM_FAULTS_BOUND_S", "60"))
OUTAGE_S = float(os.environ.get("GENLOOM_FAULTS_OUTAGE_S", "2"))

#: the rows of this run, in scenario order
ROWS: list[Row] = []
COLUMNS = ("scenario", "accepted", "ended", "completed", "failed", "clear_errors", "lost", "duplicates", "missing",
           "recover_s", "not_accepted", "rerun")


@pytest.fixture(scope="package")
def fault_stack(tmp_path_factory):
    stack = FaultStack(tmp_path_factory.mktemp("faults")).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def fault_report(tmp_path_factory):
    """Call with a Row: it is kept, and the JSON file rewritten."""
    path = tmp_path_factory.getbasetemp() / "faults-report.json"

    def add(row: Row) -> None:
        ROWS.append(row)
        path.write_text(json.dumps([r.as_dict() for r in ROWS], indent=2))
        print(row)

    return add


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    terminalreporter.section("fault report")
    terminalreporter.write_line(" | ".join(COLUMNS))
    for row in ROWS:
        terminalreporter.write_line(" | ".join(str(getattr(row, c)) for c in COLUMNS))
