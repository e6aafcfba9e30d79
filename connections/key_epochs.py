"""Which reader-ID key the central store is on, and the guard that keeps every writer on it.

Reader keys are HMACs: a process running with another key would not fail, it would silently
file every reader under a second key and split each person in two. So the store records the
current key's fingerprint (``circhub.domain.readers.key_fingerprint``, a check value, never the
key),
`open_runtime` refuses a key that does not match it, and each merge checks it again inside its
own transaction (a long-running worker may still hold the key from before a rotation).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Engine, select

from circhub.connections.engines import ConnectionSetupError
from circhub.connections.store import upsert_insert
from circhub.domain.schema import reader_key_epochs


class KeyMismatch(ConnectionSetupError):
    """The reader-ID key in use is not the one the central store's reader keys are under."""


def current_epoch(conn: Connection, *, lock: bool = False):
    """The current (version, fingerprint) row, or None on a store that never saw a key.

    `lock` takes a shared row lock (PostgreSQL), so a key rotation waits for this transaction
    and a merge that starts during a rotation waits for it, then sees the key retired.
    """
    q = (select(reader_key_epochs.c.version, reader_key_epochs.c.fingerprint)
         .where(reader_key_epochs.c.retired_at.is_(None))
         .order_by(reader_key_epochs.c.version.desc()).limit(1))
    if lock:
        q = q.with_for_update(read=True)
    return conn.execute(q).first()


def claim_key(conn: Connection, fingerprint: str) -> None:
    """Check the key against the store; the first key a store ever sees becomes its key."""
    row = current_epoch(conn, lock=True)
    if row is None and not _has_epochs(conn):
        stmt = upsert_insert(conn, reader_key_epochs).values(
            version=1, fingerprint=fingerprint, activated_at=datetime.now())
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["version"]))
        row = current_epoch(conn, lock=True)
    if row is None or row.fingerprint != fingerprint:
        on = row.fingerprint if row is not None else "a key being rotated"
        raise KeyMismatch(
            f"the reader ID key in use (check value {fingerprint}) is not the central store's "
            f"current key ({on}); if the key was rotated, configure the new one "
            "(CIRCHUB_ID_KEY or the Prefect Secret block 'circhub-id-key')")


def _has_epochs(conn: Connection) -> bool:
    return conn.execute(select(reader_key_epochs.c.version).limit(1)).first() is not None


def ensure_store_key(store: Engine, fingerprint: str) -> None:
    with store.begin() as conn:
        claim_key(conn, fingerprint)
