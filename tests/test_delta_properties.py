"""Property: whatever the interleaving of source inserts, updates, deletes, equal timestamps,
late commits inside the lookback and crashes between stages, the final syncs alone (before any
reconcile) leave every row the source holds in the central store as the source holds it, and a
reconcile then removes what the source deleted: the central store holds exactly what a full
fresh extraction of the source holds. A sync reads at most MAX_DELTA_ROWS rows an entity, so
deltas are mostly taken in slices.

The assertion before the reconcile is what tests the lookback: a reconcile repairs whatever
the syncs missed, so a property checked only after it passes with the lookback ignored
(issue 22). The draw pinned by `@example` is the one Hypothesis found with `since = mark`."""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, insert, select, update

from circhub.connections.engines import engine_for, member_engine
from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime, upgrade_store
from circhub.domain.schema import member_items
from circhub.simulator import koha
from circhub.simulator.world import config_toml, member_specs
from circhub.tasks.loads.reconcile import reconcile_member
from circhub.tasks.sync.cycle import sync_member
from circhub.tasks.sync.extract import entity_query, extract_member, read_entity
from circhub.tasks.sync.validate import validate_extract
from tests.helpers import consortium_settings

LOOKBACK = 300
MAX_DELTA_ROWS = 4
# Seconds around the clock. A watermark is at most 30 s ahead of the clock (rows stamped in
# the future), so a write at most LOOKBACK - 40 s behind it is inside the next sync's lookback:
# every late commit drawn is one the syncs alone must find.
write_at = st.integers(min_value=-(LOOKBACK - 40), max_value=30)
update_op = st.tuples(st.just("update"), st.integers(0, 50), write_at, st.booleans())
sync_op = st.tuples(st.just("sync"))
# Syncs and updates are drawn more often: the interesting cases are writes landing just
# behind a watermark that a sync has just moved.
op = st.one_of(
    st.tuples(st.just("insert"), write_at),
    update_op, update_op,
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.sampled_from([0, 0, 1, 45, 400])),  # 0: equal timestamps
    sync_op, sync_op,
    st.tuples(st.just("crash"), st.sampled_from(["after_extract", "after_validate"])),
)


class Source:
    """A Koha member's items table written with timestamps the test controls."""

    def __init__(self, folder: Path):
        specs = member_specs(2)
        self.code, self.other = specs[0][0], specs[1][0]
        urls = {s[0]: f"sqlite:///{folder}/{s[0]}.db" for s in specs}
        for code, url in urls.items():
            desk = koha.KohaDesk(create_engine(url), code)
            desk.create_schema({s[0]: s[1] for s in specs})
        self.engine = create_engine(urls[self.code])
        text = config_toml(specs, urls, f"sqlite:///{folder}/central.db", "prop", demo=True)
        self.config = folder / "consortium.toml"
        self.config.write_text(text)
        upgrade_store(self.config)
        consortium_settings(self.config, lookback_seconds=LOOKBACK, max_delta_rows=MAX_DELTA_ROWS)
        self.clock = datetime.now().replace(microsecond=0) - timedelta(days=1)
        self.next_barcode = 1

    def ids(self) -> list[int]:
        with self.engine.connect() as conn:
            return conn.execute(select(koha.items.c.itemnumber)
                                .order_by(koha.items.c.itemnumber)).scalars().all()

    def apply(self, step) -> None:
        kind = step[0]
        with self.engine.begin() as conn:
            if kind == "insert":
                conn.execute(insert(koha.items).values(
                    barcode=f"{self.code}{self.next_barcode:07d}", homebranch=self.code,
                    holdingbranch=self.code, itype="BK",
                    timestamp=self.clock + timedelta(seconds=step[1])))
                self.next_barcode += 1
            elif kind in ("update", "delete") and (ids := self.ids()):
                target = koha.items.c.itemnumber == ids[step[1] % len(ids)]
                if kind == "delete":
                    conn.execute(delete(koha.items).where(target))
                else:
                    conn.execute(update(koha.items).where(target).values(
                        holdingbranch=self.other if step[3] else self.code,
                        timestamp=self.clock + timedelta(seconds=step[2])))
            elif kind == "tick":
                self.clock += timedelta(seconds=step[1])


def _crash(rt, member, where: str) -> None:
    """A run that dies before its merge: nothing it read may count as read."""
    with holding(member.code):
        ext = extract_member(rt.consortium, member, rt.store, rt.id_key)
    if where == "after_validate":
        validate_extract(member.code, ext.frames, rt.member_view(member))


def _central(rt, code) -> set[tuple]:
    with rt.store.connect() as conn:
        return set(conn.execute(select(member_items.c.local_id, member_items.c.barcode,
                                       member_items.c.holding_member)
                                .where(member_items.c.member == code)).all())


def _fresh_extraction(member) -> set[tuple]:
    with holding(member.code):
        frame = read_entity(member_engine(member), entity_query(member, "items", None),
                            "items")
    return {(str(r.local_id), r.barcode, r.holding_branch) for r in frame.itertuples()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=6, max_size=25))
# Found by Hypothesis with the lookback ignored (`since = mark`): the item inserted 132 s
# behind the clock after the sync is behind the watermark (the insert at +7 s), inside the
# lookback; only the lookback lets the final syncs read it.
@example([("insert", 2), ("insert", 7), ("insert", -23), ("update", 0, 2, False), ("sync",),
          ("insert", -132), ("update", 34, -174, False), ("tick", 45)])
def test_central_store_equals_a_fresh_extraction_after_any_interleaving(steps):
    with tempfile.TemporaryDirectory() as folder:
        source = Source(Path(folder))
        open_runtime.cache_clear()
        rt = open_runtime(str(source.config))
        member = rt.consortium.member(source.code)
        for step in steps:
            if step[0] == "sync":
                sync_member(rt, member)
            elif step[0] == "crash":
                _crash(rt, member, step[1])
            else:
                source.apply(step)
        for _ in range(len(steps) + 1):  # one slice per sync until the delta is taken
            if not sync_member(rt, member).extract.catching_up:
                break
        fresh = _fresh_extraction(member)
        live = {row[0] for row in fresh}
        # Before any reconcile: every live row as the source holds it (only deleted rows may
        # linger, until the reconcile).
        assert {row for row in _central(rt, source.code) if row[0] in live} == fresh
        with holding(member.code):
            reconcile_member(rt, member)
        assert _central(rt, source.code) == fresh
        engine_for.cache_clear()
        open_runtime.cache_clear()
