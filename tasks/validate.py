"""Validate: run each entity's Great Expectations suite and split good rows from bad ones.

A failing row goes to quarantine with the names of the rules it broke; the rows beside it
carry on. If too large a share of a batch fails, the batch is refused whole: that is a broken
source or profile, and quarantining everything would hide it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from domain.prepare import MemberView, add_checks
from expectations import suite_spec

if TYPE_CHECKING:
    from connections.config import Consortium

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no outbound network here

ROW = "_row"
# Columns worth keeping on a quarantined row (masked forms only; never an ID in clear).
SHOWN = {
    "readers": ["local_id", "card_masked", "id_masked", "id_rule", "branch", "birth_date"],
    "items": ["local_id", "barcode", "home_branch", "holding_branch", "item_type", "updated_at"],
    "loans": ["local_id", "reader_local_id", "barcode", "branch", "issued_at", "due_at",
              "returned_at", "updated_at"],
}

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
    for the Data Docs (`tasks.data_docs`)."""
    if "context" not in _validators:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        from tasks.data_docs import context_config

        ctx = gx.get_context(project_config=context_config(), mode="ephemeral")
        # GX's tqdm bars would flood the Prefect logs with one line per metric batch.
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False,
                                                         metric_calculations=False)
        _validators["context"] = ctx
        _validators["source"] = _validators["context"].data_sources.add_pandas(name="circhub")
    return _validators["context"]


def _validator(entity: str):
    """A GX validation definition per entity, built once per process."""
    if entity in _validators:
        return _validators[entity]
    import great_expectations as gx

    ctx, source = _context(), _validators["source"]
    spec = suite_spec(entity)
    batch = source.add_dataframe_asset(name=entity).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=entity))
    for rule in spec.rules:
        cls = _expectation_class(gx, rule.type)
        suite.add_expectation(cls(**rule.kwargs, meta={"rule": rule.rule,
                                                       "detail": rule.detail},
                                  notes=f"circhub rule `{rule.rule}`"))  # shown in Data Docs
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=entity, data=batch,
                                                                suite=suite))
    _validators[entity] = vd
    return vd


def _expectation_class(gx, snake: str):
    name = "".join(part.capitalize() for part in snake.split("_"))
    return getattr(gx.expectations, name)


def failing_rows(entity: str, frame: pd.DataFrame,
                 member: str = "-") -> tuple[dict[int, list[str]], list[dict]]:
    """Row position -> rules broken, and a per-rule summary, from one GX run.

    The result stays in the context for the Data Docs under run name `member`, the latest per
    run name and entity, until `write_data_docs`. No unexpected values are kept in it (row
    positions only), so neither it nor the docs can show a value of a failing row.
    """
    from great_expectations.core.run_identifier import RunIdentifier

    with _lock:
        result = _validator(entity).run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW],
                           "exclude_unexpected_values": True,
                           "return_unexpected_index_query": False},
            # run_time given: without it GX tries to read a date out of the run name
            run_id=RunIdentifier(run_name=member, run_time=datetime.now(UTC)),
        )
    broken: dict[int, list[str]] = {}
    summary = []
    for r in result.results:
        rule = r.expectation_config.meta["rule"]
        rows = _row_positions(r.result.get("unexpected_index_list") or [])
        detail = r.expectation_config.meta.get("detail")
        for pos in rows:
            broken.setdefault(pos, []).append(rule)
            if detail and isinstance(frame[detail].iloc[pos], str):
                broken[pos].append(frame[detail].iloc[pos])
        summary.append({"entity": entity, "rule": rule, "failed": len(rows),
                        "checked": len(frame)})
    return broken, summary


def _row_positions(index_list) -> list[int]:
    positions = []
    for item in index_list:
        value = item[ROW] if isinstance(item, dict) else item
        values = value if isinstance(value, list | tuple) else [value]
        positions.extend(int(v) for v in values)
    return sorted(set(positions))


def validate_extract(member: str, frames: dict[str, pd.DataFrame], view: MemberView,
                     max_bad_share: float = 0.5, now: datetime | None = None) -> Validated:
    now = now or datetime.now()
    out = Validated(member=member, good={})
    for entity, frame in frames.items():
        checked = add_checks(entity, frame, view, now).reset_index(drop=True)
        if checked.empty:
            out.good[entity] = checked
            continue
        checked[ROW] = range(len(checked))
        broken, summary = failing_rows(entity, checked, member)
        out.summary.extend(summary)
        if len(checked) >= 10 and len(broken) > max_bad_share * len(checked):
            raise BatchRejected(
                f"member {member}: {len(broken)} of {len(checked)} {entity} rows fail "
                f"validation (more than {max_bad_share:.0%}); merge stopped. Rules: "
                + ", ".join(f"{s['rule']}={s['failed']}" for s in summary if s["failed"])
            )
        bad_mask = checked[ROW].isin(broken)
        for pos, rules in broken.items():
            out.bad.append(_bad_row(entity, checked.iloc[pos], rules))
        out.good[entity] = checked[~bad_mask].drop(columns=[ROW])
    return out


def write_data_docs(folder: str | Path) -> Path:
    """GX Data Docs of this process's suites and of the results validated since the last call
    (the latest per run name and entity), written to `folder`, replacing what it held. Returns
    its index.html. Built once at the end of a flow run, never per validation; the results are
    dropped afterwards, so the next run's docs show that run only."""
    from tasks.data_docs import build_site

    with _lock:
        ctx = _context()
        try:
            return build_site(ctx, Path(folder))
        finally:
            ctx.validation_results_store.clear()


def publish_data_docs(consortium: Consortium, site: str, log) -> Path | None:
    """At the end of a flow run: its Data Docs in `data_docs_dir/<site>/` of the config.

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
    except Exception as exc:  # noqa: BLE001 - the docs are a view; the run's work is done
        log.warning("Great Expectations Data Docs not written to %s: %s", folder, exc)
        return None
    log.info("Great Expectations Data Docs: %s", index.as_uri())
    return index


def _bad_row(entity: str, row: pd.Series, rules: list[str]) -> BadRow:
    shown = {c: _plain(row.get(c)) for c in SHOWN[entity] if c in row}
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
