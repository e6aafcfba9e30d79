"""Great Expectations Data Docs: GX's own static site of the suites and validation results.

Imported only once GX is in use (`circhub.tasks.sync.validate` names it in the context it builds),
so it
imports GX at the top. Two parts:

- `LatestResultsStore`, the context's validation results store: in memory, holding only the
  latest result per suite (entity) and run name (member). A validation definition stores every
  result it produces; a sync validates every member's entities each cycle and a backfill every
  chunk, so GX's stock in-memory store grows for as long as the process lives. Results are held
  as objects: GX's JSON round trip (to_json_dict and dumps) would cost each run ~15 ms.
- `build_site`, which builds the context's local-filesystem Data Docs site into a fresh folder,
  makes it render with no network (`docs_pages`), and puts it in place of the old one, so
  nothing stale accumulates and a reader never sees a half-built site.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.store.validation_results_store import ValidationResultsStore
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
)
from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

from circhub.tasks.sync.docs_pages import make_offline, write_index

SITE = "circhub"  # the context's one Data Docs site
RESULTS_STORE = "circhub_latest_results"
ROW = "_row"  # the batch's row number column (circhub.tasks.sync.validate.ROW)
PARTIAL = 20  # GX's partial lists: the first 20


class LatestResultsStore(ValidationResultsStore):
    """The latest validation result per (suite, run name), as objects, until `clear`."""

    def __init__(self, store_backend=None, runtime_environment=None, store_name=None) -> None:
        super().__init__(store_backend=store_backend, runtime_environment=runtime_environment,
                         store_name=store_name)
        self._latest: dict[tuple[str, str | None], ValidationResultIdentifier] = {}

    def serialize(self, value):
        return value

    def deserialize(self, value):
        return value

    def set(self, key, value, **kwargs):
        stored = super().set(key, value, **kwargs)
        if isinstance(key, ValidationResultIdentifier):
            slot = (key.expectation_suite_identifier.name, key.run_id.run_name)
            previous = self._latest.get(slot)
            if previous is not None and previous != key:
                self.remove_key(previous)
            self._latest[slot] = key
        return stored

    def split(self, suite: str, run_name: str, shares: dict[str, object]) -> None:
        """The latest result of (`suite`, `run_name`) replaced by its `shares`: run name ->
        result, each stored under its own run name, same run time and batch."""
        key = self._latest.pop((suite, run_name), None)
        if key is None:
            return
        with contextlib.suppress(KeyError):
            self.remove_key(key)
        for name, share in shares.items():
            run_id = RunIdentifier(run_name=name, run_time=key.run_id.run_time)
            share.meta["run_id"] = run_id
            self.set(ValidationResultIdentifier(key.expectation_suite_identifier, run_id,
                                                key.batch_identifier), share)

    def clear(self) -> None:
        for key in self._latest.values():
            with contextlib.suppress(KeyError):
                self.remove_key(key)
        self._latest.clear()


def member_share(result, frame: pd.DataFrame, rows: range):
    """One member's part of a GX result over several members' rows (`rows`: its positions in
    `frame`, the batch validated): counts, percentages and success as if only its rows had
    been validated, its failing rows numbered from 0. One GX run per entity for all members
    keeps a cycle cheap (validate.validate_members); this keeps its Data Docs per member."""
    mine = frame.iloc[rows.start:rows.stop]
    share = copy.copy(result)  # shallow: a deep copy per member cost 3 ms (250 members: 0.8 s)
    share.results = [_narrow(r, mine, rows) for r in result.results]
    share.meta, share.statistics = dict(result.meta), dict(result.statistics)
    done = [r.success for r in share.results]
    share.success = all(done)
    share.statistics.update(
        evaluated_expectations=len(done), successful_expectations=sum(done),
        unsuccessful_expectations=len(done) - sum(done),
        success_percent=100 * sum(done) / len(done) if done else None)
    return share


def _narrow(result, mine: pd.DataFrame, rows: range):
    """An expectation result narrowed to one member's rows, as a copy; a result without row
    positions (a table-level expectation) is the same result."""
    if "unexpected_index_list" not in result.result:
        return result
    r = copy.copy(result)
    r.result = res = dict(result.result)
    failing = [{ROW: pos - rows.start} for pos in _positions(res["unexpected_index_list"])
               if pos in rows]
    # Only expectations that skip missing values count them (not_be_null's failures are them).
    skips = "missing_count" in res
    # none missing in the batch, none in any member's part: no pandas call (most rules)
    missing = int(_missing(r.expectation_config.kwargs, mine).sum()) if res.get(
        "missing_count") else 0
    checked, present = len(mine), len(mine) - missing
    res.update(
        element_count=checked, unexpected_count=len(failing),
        unexpected_percent=100 * len(failing) / present if present else None,
        unexpected_index_list=failing, partial_unexpected_index_list=failing[:PARTIAL])
    if skips:
        res.update(
            missing_count=missing, missing_percent=100 * missing / checked if checked else None,
            unexpected_percent_nonmissing=res["unexpected_percent"],
            unexpected_percent_total=100 * len(failing) / checked if checked else None)
    mostly = r.expectation_config.kwargs.get("mostly") or 1
    r.success = present == 0 or len(failing) / present <= 1 - mostly
    return r


def _positions(index_list) -> list[int]:
    """Row numbers of GX's unexpected index list: `{"_row": 4}`, or `{"_row": [4, 5]}` for a
    compound-column rule's duplicates."""
    found = set()
    for item in index_list:
        value = item[ROW] if isinstance(item, dict) else item
        found.update(int(v) for v in (value if isinstance(value, list | tuple) else [value]))
    return sorted(found)


def _missing(kwargs: dict, rows: pd.DataFrame) -> pd.Series:
    """The rows a column expectation skips: its column missing, or any of its columns."""
    columns = [kwargs["column"]] if "column" in kwargs else list(kwargs.get("column_list", ()))
    present = [c for c in columns if c in rows]
    if not present:
        return pd.Series(False, index=rows.index)
    return rows[present].isna().any(axis=1)


def context_config() -> DataContextConfig:
    """An ephemeral context's config, its validation results kept by `LatestResultsStore`."""
    stores = dict(InMemoryStoreBackendDefaults().stores)
    # Its own store name: GX fills in a stock store under the default name of any store class
    # it does not find configured, which would replace this one.
    stores[RESULTS_STORE] = {
        "module_name": __name__,
        "class_name": LatestResultsStore.__name__,
        "store_backend": {"class_name": "InMemoryStoreBackend"},
    }
    return DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(),
                             stores=stores, validation_results_store_name=RESULTS_STORE)


def build_site(context, folder: Path) -> Path:
    """Data Docs of the context's suites and kept results, written to `folder` (replacing what
    it held); returns the path of its index.html."""
    folder = folder.expanduser().resolve()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(staging)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    try:
        if SITE in context.list_data_docs_sites():
            context.update_data_docs_site(SITE, site)
        else:
            context.add_data_docs_site(SITE, site)
        context.build_data_docs(site_names=[SITE])
        make_offline(staging)  # no CDN: the monitoring hosts rarely reach the internet
        write_index(staging, folder.name, [])  # GX's index is filled in by a CDN script
        staging.chmod(0o755)  # mkdtemp makes it private to this account
        _put_in_place(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / "index.html"


def _put_in_place(built: Path, folder: Path) -> None:
    """Two renames on one filesystem: the old site is moved aside, the new one takes its name."""
    old = built.with_name(built.name.replace(".building-", ".old-"))
    with contextlib.suppress(FileNotFoundError):
        folder.rename(old)
    try:
        built.rename(folder)
    finally:
        shutil.rmtree(old, ignore_errors=True)
