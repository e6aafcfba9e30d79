"""The source side of a key rotation: read one member's readers in full and map old -> new keys.

The clear ID numbers exist only inside `_key_pairs`, chunk by chunk; what leaves it is pairs of
keyed hashes. Nothing here logs or raises with a row's content.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, select
from sqlalchemy.exc import SQLAlchemyError

from circhub.connections.config import ConfigError, Consortium, Member
from circhub.connections.engines import member_engine
from circhub.connections.errors import is_transient
from circhub.connections.holds import MemberHold
from circhub.connections.store import upsert_insert
from circhub.domain.identity import check_id_number, reader_key
from circhub.domain.prepare import coerce_types
from circhub.domain.schema import reader_accounts
from circhub.tasks.sync.extract import SourceUnavailable, entity_query, iter_chunks

IN_CHUNK = 2_000


def members_with_accounts(conn: Connection) -> list[str]:
    q = select(reader_accounts.c.member).distinct().order_by(reader_accounts.c.member)
    return list(conn.execute(q).scalars())


def map_member(conn: Connection, consortium: Consortium, code: str, mapping: Table,
               old_key: bytes, new_key: bytes, hold: MemberHold) -> tuple[int, int]:
    """Add this member's old -> new pairs to `mapping`, reading its readers under `hold(code)`
    (its slot); returns (accounts matched, stale).

    A member no longer in the config cannot be read: its accounts map through the same
    reader's accounts elsewhere, or end up unlinkable.
    """
    try:
        member = consortium.member(code)
    except ConfigError:
        return 0, 0
    try:
        with hold(code):
            return _map_readers(conn, member, mapping, old_key, new_key)
    except SQLAlchemyError as exc:
        raise SourceUnavailable(f"member {code}: cannot read its readers for the key "
                                f"rotation ({type(exc).__name__}); nothing was changed",
                                transient=is_transient(exc)) from None


def _map_readers(conn: Connection, member: Member, mapping: Table, old_key: bytes,
                 new_key: bytes) -> tuple[int, int]:
    matched = stale = 0
    engine = member_engine(member)
    for chunk in iter_chunks(engine, entity_query(member, "readers", None), "readers"):
        pairs = _key_pairs(chunk, old_key, new_key)
        stored = _stored_keys(conn, member.code, list(pairs))
        confirmed = [p for lid, p in pairs.items() if stored.get(lid) == p[0]]
        stale += sum(1 for lid, p in pairs.items() if lid in stored and stored[lid] != p[0])
        matched += len(confirmed)
        _add_pairs(conn, mapping, confirmed)
    return matched, stale


def _key_pairs(chunk, old_key: bytes, new_key: bytes) -> dict[str, tuple[str, str]]:
    """local_id -> (key under the old secret, key under the new one), for valid numbers."""
    frame = coerce_types("readers", chunk)  # the same local_id spelling the merge stored
    pairs = {}
    for local_id, raw in zip(frame["local_id"], frame["id_number"], strict=True):
        number = check_id_number(raw).normalized
        if number and local_id is not None:
            pairs[str(local_id)] = (reader_key(number, old_key), reader_key(number, new_key))
    return pairs


def _stored_keys(conn: Connection, member: str, local_ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i in range(0, len(local_ids), IN_CHUNK):
        q = select(reader_accounts.c.local_id, reader_accounts.c.reader_key).where(
            reader_accounts.c.member == member,
            reader_accounts.c.local_id.in_(local_ids[i : i + IN_CHUNK]))
        found.update({lid: key for lid, key in conn.execute(q) if key})
    return found


def _add_pairs(conn: Connection, mapping: Table, pairs: list[tuple[str, str]]) -> None:
    rows = [{"old_key": old, "new_key": new} for old, new in dict(pairs).items()]
    if rows:
        conn.execute(upsert_insert(conn, mapping).on_conflict_do_nothing(
            index_elements=["old_key"]), rows)
