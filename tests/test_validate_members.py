"""One GX run per entity for several members: each member's rows are judged as if alone."""

from __future__ import annotations

import re
from datetime import datetime

import pandas as pd
import pytest

from circhub.domain.prepare import MemberView, coerce_types
from circhub.tasks.sync.docs_pages import MemberChecks, write_index
from circhub.tasks.sync.validate import (
    BatchRejected,
    validate_extract,
    validate_members,
    write_data_docs,
)

NOW = datetime(2026, 11, 25, 12, 0)
MEMBERS = ("SC001", "SC002")


def _view(code: str) -> MemberView:
    return MemberView(code=code, known_members=frozenset(MEMBERS),
                      branch_to_member=lambda b: b,
                      owner_of_barcode=lambda b: b[:5] if b and b[:5] in MEMBERS else None,
                      copy_item_type=None)


def _items(code: str, local_ids: list[str], barcodes: list[str] | None = None) -> pd.DataFrame:
    barcodes = barcodes or [f"{code}{int(i):07d}" for i in local_ids]
    return coerce_types("items", pd.DataFrame({
        "local_id": local_ids, "barcode": barcodes, "home_branch": code, "holding_branch": code,
        "item_type": "BK", "last_seen": NOW, "updated_at": NOW}))


def test_the_same_key_at_two_members_is_no_duplicate_but_twice_at_one_member_is():
    results = validate_members(
        {"SC001": {"items": _items("SC001", ["1", "2", "3"])},
         "SC002": {"items": _items("SC002", ["1", "2", "2"])}},
        {m: _view(m) for m in MEMBERS}, now=NOW)

    assert len(results["SC001"].good["items"]) == 3 and not results["SC001"].bad
    bad = results["SC002"].bad
    assert [b.row_key for b in bad] == ["2", "2"]
    assert all("item_key_unique" in b.rules for b in bad)
    assert results["SC002"].good["items"]["local_id"].tolist() == ["1"]
    # Each member's summary counts its own rows only.
    failed = {s["rule"]: s["failed"] for s in results["SC002"].summary}
    assert failed["item_key_unique"] == 2
    assert {s["checked"] for s in results["SC001"].summary} == {3}


def test_a_member_whose_batch_fails_wholesale_fails_alone():
    wrong = [f"SC009{i:07d}" for i in range(12)]  # nobody's prefix: every row breaks a rule
    results = validate_members(
        {"SC001": {"items": _items("SC001", [str(i) for i in range(12)], wrong)},
         "SC002": {"items": _items("SC002", ["1", "2"])}},
        {m: _view(m) for m in MEMBERS}, now=NOW)

    assert isinstance(results["SC001"], BatchRejected)
    assert "SC001" in str(results["SC001"]) and "barcode_matches_owner=12" in str(results["SC001"])
    assert len(results["SC002"].good["items"]) == 2


def test_one_member_alone_gives_the_same_verdict_as_in_a_batch():
    frames = {"items": _items("SC002", ["1", "2", "2"])}
    alone = validate_extract("SC002", frames, _view("SC002"), now=NOW)
    together = validate_members({"SC001": {"items": _items("SC001", ["2"])}, "SC002": frames},
                                {m: _view(m) for m in MEMBERS}, now=NOW)["SC002"]
    assert [(b.row_key, b.rules) for b in alone.bad] == \
        [(b.row_key, b.rules) for b in together.bad]
    assert alone.summary == together.summary


def test_validation_runs_are_named_by_the_run_and_the_member_each_judging_its_own_rows(
        tmp_path):
    run = "sync-consortium-2026-11-25T12:00"
    validate_members({"SC001": {"items": _items("SC001", ["1", "2", "3"])},
                      "SC002": {"items": _items("SC002", ["1", "2", "2"])}},
                     {m: _view(m) for m in MEMBERS}, now=NOW, run_label=run)
    site = write_data_docs(tmp_path / "site").parent

    runs = {p.name: p for p in (site / "validations" / "items").iterdir()
            if p.name.startswith(run)}  # (the tests above validated without a run's name)
    # A page for the member with failing rows only: SC001's rows all passed.
    assert set(runs) == {f"{run} SC002"}
    page = _text(next(runs[f"{run} SC002"].rglob("*.html")))
    # SC002's duplicate key: 2 of its own 3 rows, not of the batch's 6
    assert "local_id 2 unexpected values found. ≈66.67% of 3" in page
    assert re.search(r"Unsuccessful Expectations\s+1\b", page)
    checks = [MemberChecks(code, code, [{"entity": "items", "rule": "unique_key",
                                         "failed": int(code == "SC002"), "checked": 3}])
              for code in MEMBERS]
    index = _text(write_index(site, run, checks))
    sections = re.split(r"(?=SC00\d SC00\d)", index)  # a member's section: its own runs only
    mine = {code: next(s for s in sections if s.startswith(f"{code} {code}")) for code in MEMBERS}
    assert f"items ({run} SC002)" in mine["SC002"] and f"{run} SC001" not in mine["SC002"]
    assert run not in mine["SC001"]


def _text(page) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text()))


def _with_bad(code: str, rows: int, bad: int) -> pd.DataFrame:
    """`rows` items of `code`, the first `bad` with a barcode of nobody's prefix."""
    barcodes = [f"SC009{i:07d}" if i < bad else f"{code}{i:07d}" for i in range(rows)]
    return _items(code, [str(i) for i in range(rows)], barcodes)


# A batch is refused when more than half its rows fail, from ten rows up (the default share,
# the consortium's `max_bad_share`); below that its bad rows go to quarantine.
@pytest.mark.parametrize(("rows", "bad", "refused"), [
    (10, 0, False), (10, 1, False), (10, 5, False), (10, 6, True), (9, 9, False),
    (11, 6, True)])
def test_a_batch_is_refused_only_past_half_bad_rows_and_from_ten_rows_up(rows, bad, refused):
    frames = {"items": _with_bad("SC001", rows, bad)}
    views = {"SC001": _view("SC001")}
    verdicts = [validate_members({"SC001": frames}, views, now=NOW)["SC001"]]
    try:
        verdicts.append(validate_extract("SC001", frames, views["SC001"], now=NOW))
    except BatchRejected as exc:
        verdicts.append(exc)
    for verdict in verdicts:
        assert isinstance(verdict, BatchRejected) is refused, verdict
        if not refused:
            assert len(verdict.bad) == bad and len(verdict.good["items"]) == rows - bad


def test_a_member_without_an_entity_does_not_keep_the_next_members_rows_from_being_judged():
    results = validate_members({"SC001": {}, "SC002": {"items": _with_bad("SC002", 3, 1)}},
                               {m: _view(m) for m in MEMBERS}, now=NOW)
    assert [b.row_key for b in results["SC002"].bad] == ["0"]
    assert results["SC002"].good["items"]["local_id"].tolist() == ["1", "2"]


def test_the_next_members_first_row_is_never_blamed_on_the_member_before():
    results = validate_members({"SC001": {"items": _items("SC001", ["1", "2", "3"])},
                                "SC002": {"items": _with_bad("SC002", 3, 1)}},
                               {m: _view(m) for m in MEMBERS}, now=NOW)
    assert not results["SC001"].bad and len(results["SC001"].good["items"]) == 3
    assert [b.row_key for b in results["SC002"].bad] == ["0"]
