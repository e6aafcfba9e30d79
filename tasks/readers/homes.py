"""Keep each reader's home member right as their accounts arrive, in the merge's transaction.

Members sync in any order, so the first account the hub happens to see is not the home; the
home is where the person first registered (``circhub.domain.readers.choose_home``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, bindparam, select, update

from circhub.domain.readers import AccountFacts, choose_home
from circhub.domain.schema import reader_accounts, readers

IN_CHUNK = 2_000


def refresh_homes(conn: Connection, keys: Iterable[str]) -> int:
    """Recompute the home member of these readers; returns how many changed."""
    keys = sorted({k for k in keys if k})
    changed = []
    for i in range(0, len(keys), IN_CHUNK):
        part = keys[i : i + IN_CHUNK]
        accounts = _accounts(conn, part)
        current = dict(conn.execute(select(readers.c.reader_key, readers.c.home_member)
                                    .where(readers.c.reader_key.in_(part))).all())
        for key, home in current.items():
            best = choose_home(accounts.get(key, []), home)
            if best != home:
                changed.append({"k": key, "home": best})
    if changed:
        stmt = (update(readers).where(readers.c.reader_key == bindparam("k"))
                .values(home_member=bindparam("home")))
        conn.execute(stmt, changed)
    return len(changed)


def _accounts(conn: Connection, keys: list[str]) -> dict[str, list[AccountFacts]]:
    q = select(reader_accounts.c.reader_key, reader_accounts.c.member,
               reader_accounts.c.home_branch, reader_accounts.c.registered_on,
               reader_accounts.c.flag).where(reader_accounts.c.reader_key.in_(keys))
    found: dict[str, list[AccountFacts]] = {}
    for r in conn.execute(q):
        # home_branch holds the member the account's own branch belongs to (a shared ILS
        # instance lists one account under each of its members).
        facts = AccountFacts(r.home_branch or r.member, r.registered_on, r.flag)
        found.setdefault(r.reader_key, []).append(facts)
    return found
