"""`make mutants` runs, for each mutant, the guarding tests that execute the line it changed.
A selection that missed a test would let mutants survive that the tests kill: these pin how a
changed line is found and which tests it picks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import mutant_tests  # noqa: E402
import mutants  # noqa: E402

SOURCE = '''\
LIMIT = 5


def pick(rows, limit=LIMIT):
    if (len(rows) > limit
            and rows[0] is not None):
        return rows[:limit]
    kept = [r for r in rows
            if r is not None]
    return kept
'''


def plan(reached_by: dict[int, list[str]]) -> dict:
    return {"source": SOURCE, "tests": ["t_quick", "t_mid", "t_slow"],
            "body_lines": mutants.body_lines(SOURCE), "spans": mutants.statement_spans(SOURCE),
            "reached_by": {str(line): ids for line, ids in reached_by.items()}}


def mutated(old: str, new: str) -> list[str]:
    assert old in SOURCE
    return SOURCE.replace(old, new).splitlines()


def test_the_changed_line_is_found_by_its_number_in_the_unmutated_module():
    lines = mutant_tests.changed_lines(SOURCE.splitlines(), mutated("> limit", ">= limit"))
    assert lines == {5}


def test_a_line_inside_a_body_picks_the_tests_that_ran_it_in_the_plans_order():
    chosen = mutant_tests.tests_for(plan({7: ["t_slow", "t_quick"], 8: ["t_mid"]}), {7})
    assert chosen == ["t_quick", "t_slow"]


def test_the_continuation_of_a_statement_picks_the_tests_that_ran_its_first_line():
    """Coverage files `kept = [...]` under line 8; a mutant may change line 9."""
    assert mutant_tests.tests_for(plan({8: ["t_mid"]}), {9}) == ["t_mid"]
    assert mutant_tests.tests_for(plan({5: ["t_quick"]}), {6}) == ["t_quick"]


def test_a_default_or_a_module_constant_runs_every_test():
    """Run at import, before any test: no test's context holds it."""
    for line in (1, 4):
        assert mutant_tests.tests_for(plan({}), {line}) == ["t_quick", "t_mid", "t_slow"]


def test_a_line_run_outside_any_test_runs_every_test():
    assert mutant_tests.tests_for(plan({7: ["", "t_mid"]}), {7}) == ["t_quick", "t_mid", "t_slow"]


def test_a_line_no_test_runs_picks_none():
    assert mutant_tests.tests_for(plan({8: ["t_mid"]}), {7}) == []


def test_each_tests_unmutated_seconds_are_read_by_its_id(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite>'
                     '<testcase classname="tests.test_a" name="test_x[p-1]" time="2.5"/>'
                     '<testcase classname="tests.test_a.TestGroup" name="test_y" time="0.5"/>'
                     '</testsuite></testsuites>')
    assert mutants.durations(junit) == {"tests/test_a.py::test_x[p-1]": 2.5,
                                        "tests/test_a.py::TestGroup::test_y": 0.5}


def test_tests_running_three_times_their_unmutated_time_and_a_minute_are_stopped():
    p = {"seconds": {"t_quick": 1.0, "t_slow": 10.0}}
    assert mutant_tests.time_limit(p, ["t_quick", "t_slow"]) == 3 * 11 + 60
    a_test = "tests/test_mutant_selection.py::test_a_line_no_test_runs_picks_none"
    assert mutant_tests.run_tests([a_test], limit=0.01) == 1  # stopped, counted as killed
    assert mutant_tests.run_tests([a_test], limit=120) == 0
