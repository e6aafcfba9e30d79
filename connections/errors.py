"""How a database error reads in a run summary, a log or an outbox record."""

from __future__ import annotations


def driver_message(exc: BaseException) -> str:
    """The driver's own message, first line only, without the SQL or its parameters (which
    may hold a reader's data): `OperationalError: (2003, "Can't connect to MySQL server")`."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).splitlines()[0] if str(orig) else ""
    return f"{type(orig).__name__}: {first}".strip()
