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
import shutil
import tempfile
from pathlib import Path

from great_expectations.data_context.store.validation_results_store import ValidationResultsStore
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
)
from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

from circhub.tasks.sync.docs_pages import make_offline, write_index

SITE = "circhub"  # the context's one Data Docs site
RESULTS_STORE = "circhub_latest_results"


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

    def clear(self) -> None:
        for key in self._latest.values():
            with contextlib.suppress(KeyError):
                self.remove_key(key)
        self._latest.clear()


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
