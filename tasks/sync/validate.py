"""Validate: run each entity's Great Expectations suite and split good rows from bad ones.

A failing row goes to quarantine with the names of the rules it broke; the rows beside it
carry on. If too large a share of a batch fails, the batch is refused whole: that is a broken
source or profile, and quarantining everything would hide it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from circhub.connections.runtime import settle_heap
from circhub.domain.prepare import FUTURE_TOLERANCE, MemberView, add_checks
from circhub.domain.records import entities, spec, suite_rules
from circhub.expectations import build_suite, suite_columns
from circhub.tasks.sync.docs_pages import run_name

if TYPE_CHECKING:
    from circhub.connections.config import Consortium

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no outbound network here

ROW = "_row"
MEMBER = "_member"  # which member a row of a batch is from (uniqueness is per member)

_lock = threading.Lock()  # one GX context per process; GX is not known to be thread-safe
_validators: dict[str, object] = {}


class BatchRejected(RuntimeError):
    """Too many rows of one batch failed: the member's merge stops and the run fails."""


@dataclass(frozen=True)
class BadRow:
    entity: str
    row_key: str
    rules: tuple[str, ...]
    row: dict


@dataclass
class Validated:
    member: str
    good: dict[str, pd.DataFrame]
    bad: list[BadRow] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)  # per entity and rule: failed count

    def counts(self) -> dict[str, dict[str, int]]:
        bad_by_entity: dict[str, int] = {}
        for b in self.bad:
            bad_by_entity[b.entity] = bad_by_entity.get(b.entity, 0) + 1
        return {e: {"valid": len(df), "quarantined": bad_by_entity.get(e, 0)}
                for e, df in self.good.items()}


def _context():
    """The process's GX context: ephemeral, keeping the latest result per run name and entity
    for the Data Docs (`circhub.tasks.sync.data_docs`)."""
    if "context" not in _validators:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from circhub.tasks.sync.data_docs import context_config

        ctx = gx.get_context(project_config=context_config(), mode="ephemeral")
        # GX's tqdm bars would flood the Prefect logs with one line per metric batch.
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                         metric_calculations=False)
        _validators["context"] = ctx
        _validators["source"] = _validators["context"].data_sources.add_pandas(name="circhub")
        settle_heap("great-expectations")  # kept for the life of the process
    return _validators["context"]


def _validator(entity: str):
    """A GX validation definition per entity, built once per process."""
    if entity in _validators:
        return _validators[entity]
    import great_expectations as gx

    ctx, source = _context(), _validators["source"]
    batch = source.add_dataframe_asset(name=entity).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(build_suite(gx, entity))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=entity, data=batch,
                                                                suite=suite))
    _validators[entity] = vd
    return vd


def prepare_validator(entity: str) -> None:
    """Import GX and build the entity's suite now (a process's first validation does it
    otherwise: ~3 s, mostly imports)."""
    with _lock:
        _validator(entity)


def failing_rows(entity: str, frame: pd.DataFrame, parameters: dict, member: str = "-",
                 shares: dict[str, range] | None = None,
                 ) -> tuple[dict[int, list[str]], list[dict]]:
    """Row position -> rules broken, and a per-rule summary, from one GX run. `parameters`
    are the suite's run-time values (`member_codes`, `latest_time`: see circhub.expectations).

    The result stays in the context for the Data Docs under run name `member`, the latest per
    run name and entity, until `write_data_docs`; with `shares` (run name -> the rows of one
    member), as one result per member instead, each under its own run name. No unexpected
    values are kept in it (row positions only), so neither it nor the docs can show a value
    of a failing row.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    with _lock:
        result = _validator(entity).run(
            batch_parameters={"dataframe": frame},
            expectation_parameters=parameters,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW],
                           "exclude_unexpected_values": True,
                           "return_unexpected_index_query": False},
            # run_time given: without it GX tries to read a date out of the run name
            run_id=RunIdentifier(run_name=member, run_time=datetime.now(UTC)),
        )
        if shares:
            _file_by_member(entity, member, result, frame, shares)
    broken: dict[int, list[str]] = {}
    summary = []
    for r in result.results:
        rule = r.expectation_config.meta["rule"]
        rows = _row_positions(r.result.get("unexpected_index_list") or [])
        detail = r.expectation_config.meta.get("detail")
        for pos in rows:
            found = broken.setdefault(pos, [])
            found += [x for x in (rule, _detail(frame, detail, pos)) if x and x not in found]
        summary.append({"entity": entity, "rule": rule, "failed": len(rows),
                        "checked": len(frame)})
    return broken, summary


def _file_by_member(entity: str, batch_run: str, result, frame: pd.DataFrame,
                    shares: dict[str, range]) -> None:
    """The batch's result, kept for the Data Docs as one result per member with failing rows
    (under the lock). A member whose rows all passed keeps no GX page, only its line in the
    index (docs_pages): a page per member cost ~3.8 s per entity to build at 250 members,
    half a steady cycle, to say "nothing failed" 250 times."""
    from circhub.tasks.sync.data_docs import member_share

    shares_of = {name: member_share(result, frame, rows) for name, rows in shares.items()}
    kept = {name: share for name, share in shares_of.items() if not share.success}
    _context().validation_results_store.split(entity, batch_run, kept)


def _detail(frame: pd.DataFrame, column: str | None, pos: int) -> str | None:
    value = frame[column].iloc[pos] if column else None
    return value if isinstance(value, str) else None


def _row_positions(index_list) -> list[int]:
    positions = []
    for item in index_list:
        value = item[ROW] if isinstance(item, dict) else item
        values = value if isinstance(value, list | tuple) else [value]
        positions.extend(int(v) for v in values)
    return sorted(set(positions))


def validate_extract(member: str, frames: dict[str, pd.DataFrame], view: MemberView,
                     max_bad_share: float = 0.5, now: datetime | None = None,
                     run_label: str | None = None) -> Validated:
    """One member's extract; raises BatchRejected when a batch fails wholesale."""
    result = validate_members({member: frames}, {member: view}, max_bad_share, now,
                              run_label)[member]
    if isinstance(result, BatchRejected):
        raise result
    return result


def validate_members(frames: dict[str, dict[str, pd.DataFrame]], views: dict[str, MemberView],
                     max_bad_share: float = 0.5, now: datetime | None = None,
                     run_label: str | None = None) -> dict[str, Validated | BatchRejected]:
    """Several members' extracts, with one GX run per entity for all of them.

    A GX run costs ~160 ms whatever its size (measured: 20 rows or 20,000), so a cycle of 251
    members validated one by one would pay it 753 times. Keys are checked for uniqueness within
    each member. A member whose batch fails wholesale gets its BatchRejected; the others go on.
    Each member's part of a run is kept for the Data Docs under its own run name: the run
    (`run_label`, e.g. the sync's flow run name) and the member (`docs_pages.run_name`).
    """
    out = {m: Validated(member=m, good={}) for m in frames}
    if not frames:
        return {}
    rejected: dict[str, BatchRejected] = {}
    parameters = run_parameters(next(iter(views.values())), now or datetime.now())
    for entity in entities():
        parts = []
        for m, member_frames in frames.items():
            if entity not in member_frames:
                continue
            checked = add_checks(entity, member_frames[entity], views[m])
            out[m].good[entity] = checked = checked.reset_index(drop=True)
            if not checked.empty:
                parts.append((m, checked))
        if not parts:
            continue
        broken, _ = _run_batch(entity, parts, parameters, run_label)
        start = 0
        for m, checked in parts:
            mine = {p - start: rules for p, rules in broken.items()
                    if start <= p < start + len(checked)}
            start += len(checked)
            try:
                _split(out[m], entity, checked, mine, max_bad_share)
            except BatchRejected as exc:
                rejected.setdefault(m, exc)
    return {m: rejected.get(m, v) for m, v in out.items()}


def _run_batch(entity: str, parts: list[tuple[str, pd.DataFrame]], parameters: dict,
               run_label: str | None) -> tuple[dict[int, list[str]], list[dict]]:
    """One GX run over the members' rows; its result kept per member, named by run and member
    (one member alone: under its own name, nothing to split)."""
    batch = _batch(entity, parts)
    if len(parts) == 1:
        return failing_rows(entity, batch, parameters, run_name(run_label, parts[0][0]))
    shares, start = {}, 0
    for m, checked in parts:
        shares[run_name(run_label, m)] = range(start, start + len(checked))
        start += len(checked)
    return failing_rows(entity, batch, parameters, f"{run_label or 'validation'} (batch)",
                        shares)


def run_parameters(view: MemberView, now: datetime) -> dict:
    """The suites' run-time values: the members a branch may map to, the latest time a row
    may show (member servers' clocks drift: FUTURE_TOLERANCE)."""
    return {"member_codes": sorted(view.known_members), "latest_time": now + FUTURE_TOLERANCE}


def _batch(entity: str, parts: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """The members' checked rows as one frame, numbered, with the member of each row (keys
    and cards are unique within a member: two members may both have item 17, and one reader
    may hold cards at both). Only the columns the suite reads."""
    needed = [c for c in suite_columns(entity) if c != MEMBER]
    batch = pd.concat([checked[needed] for _, checked in parts], ignore_index=True)
    batch[MEMBER] = [m for m, checked in parts for _ in range(len(checked))]
    batch[ROW] = range(len(batch))
    return _times_in_nanoseconds(batch)


def _times_in_nanoseconds(batch: pd.DataFrame) -> pd.DataFrame:
    """GX compares a time column with its bounds column-wise only at nanosecond resolution;
    pandas reads ILS times at microseconds, which GX compared value by value in Python: the
    "not in the future" rules took 80 % of a backfill's validation (0.55 s per 100,000 items
    instead of 0.11). A column with a time beyond nanoseconds' range (after 2262: a 9999 due
    date) stays as it is, and slow."""
    for name in batch.columns:
        if batch[name].dtype.kind == "M" and batch[name].dt.unit != "ns":
            with contextlib.suppress(pd.errors.OutOfBoundsDatetime):
                batch[name] = batch[name].dt.as_unit("ns")
    return batch


def _split(out: Validated, entity: str, checked: pd.DataFrame, broken: dict[int, list[str]],
           max_bad_share: float) -> None:
    """One member's share of a GX run: its summary, its bad rows and its good frame."""
    names = dict.fromkeys(rule.name for rule in suite_rules(entity))  # in order, once each
    summary = [{"entity": entity, "rule": name, "checked": len(checked),
                "failed": sum(name in rules for rules in broken.values())} for name in names]
    out.summary.extend(summary)
    if len(checked) >= 10 and len(broken) > max_bad_share * len(checked):
        raise BatchRejected(
            f"member {out.member}: {len(broken)} of {len(checked)} {entity} rows fail "
            f"validation (more than {max_bad_share:.0%}); merge stopped. Rules: "
            + ", ".join(f"{s['rule']}={s['failed']}" for s in summary if s["failed"]))
    if not broken:  # the usual batch: every row good, no copy of it made
        out.good[entity] = checked
        return
    numbered = checked.assign(**{ROW: range(len(checked))})
    for pos, rules in sorted(broken.items()):
        out.bad.append(_bad_row(entity, numbered.iloc[pos], rules))
    out.good[entity] = checked[~numbered[ROW].isin(broken)]


def write_data_docs(folder: str | Path) -> Path:
    """GX Data Docs of this process's suites and of the results validated since the last call
    (the latest per run name and entity), written to `folder`, replacing what it held. Returns
    its index.html. Built once at the end of a flow run, never per validation; the results are
    dropped afterwards, so the next run's docs show that run only."""
    from circhub.tasks.sync.data_docs import build_site

    with _lock:
        ctx = _context()
        try:
            return build_site(ctx, Path(folder))
        finally:
            ctx.validation_results_store.clear()


def publish_data_docs(consortium: Consortium, site: str, log, checks=None,
                      run_label: str | None = None) -> Path | None:
    """At the end of a flow run: its Data Docs in `data_docs_dir/<site>/` of the config; with
    `checks` (`docs_pages.MemberChecks`), an index with a section per member, named by the run.

    Never fails the run (the rows were validated and merged already): a folder that cannot be
    written is logged as a warning.
    """
    if consortium.data_docs_dir is None:  # turned off in the config
        if "context" in _validators:
            with _lock:
                _validators["context"].validation_results_store.clear()
        return None
    folder = consortium.data_docs_dir / site
    try:
        index = write_data_docs(folder)
        if checks is not None:
            from circhub.tasks.sync.docs_pages import write_index

            write_index(folder, run_label or site, checks)
    except Exception as exc:  # noqa: BLE001 - the docs are a view; the run's work is done
        log.warning("Great Expectations Data Docs not written to %s: %s", folder, exc)
        return None
    log.info("Great Expectations Data Docs: %s", index.as_uri())
    return index


def quarantined_row(entity: str, row: dict, rules: list[str]) -> BadRow:
    """A row found bad after validation (a reference the merge cannot resolve)."""
    shown = {c: _plain(row.get(c)) for c in spec(entity).shown_columns if c in row}
    return BadRow(entity, str(row.get(spec(entity).key)), tuple(rules), shown)


def _bad_row(entity: str, row: pd.Series, rules: list[str]) -> BadRow:
    shown = {c: _plain(row.get(c)) for c in spec(entity).shown_columns if c in row}
    key = row.get("local_id")
    return BadRow(entity, str(key) if key is not None else f"row#{row[ROW]}", tuple(rules), shown)


def _plain(value):
    """JSON-safe scalars for the quarantine table and Prefect artifacts."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value
