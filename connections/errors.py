"""How a database error reads in a run summary, a log or an outbox record."""

from __future__ import annotations

import re
from dataclasses import dataclass


def driver_message(exc: BaseException) -> str:
    """The driver's own message, first line only, without the SQL or its parameters (which
    may hold a reader's data): `OperationalError: (2003, "Can't connect to MySQL server")`."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).splitlines()[0] if str(orig) else ""
    return f"{type(orig).__name__}: {first}".strip()


# -- what a refused statement was missing, from the driver's own words -------------------------
# MariaDB/MySQL (error numbers 1452, 1048, 1054, 1142, 1146), PostgreSQL (psycopg, and its
# ODBC driver, which passes PostgreSQL's text on) and SQL Server (the messages of its errors
# 547, 515, 207, 229, 208). The patterns read the first line and PostgreSQL's DETAIL line.
_FAULTS = (
    ("foreign_key", r"foreign key constraint fails \(`[^`]*`\.`(?P<table>[^`]+)`, CONSTRAINT "
                    r"`[^`]+` FOREIGN KEY \(`(?P<column>[^`]+)`\) REFERENCES `(?P<ref_table>"
                    r"[^`]+)` \(`(?P<ref_column>[^`]+)`\)"),
    ("foreign_key", r'(?s)on table "(?P<table>[^"]+)" violates foreign key constraint.*?Key '
                    r'\((?P<column>[^)]+)\)=\((?P<value>.*?)\) is not present in table '
                    r'"(?P<ref_table>[^"]+)"'),
    ("foreign_key", r'conflicted with the FOREIGN KEY constraint "[^"]+"\. The conflict occurred'
                    r' in database "[^"]+", table "(?P<ref_table>[^"]+)", column '
                    r"'(?P<ref_column>[^']+)'"),
    ("not_null", r"Column '(?P<column>[^']+)' cannot be null"),
    ("not_null", r'null value in column "(?P<column>[^"]+)" (?:of relation "(?P<table>[^"]+)" '
                 r')?violates not-null'),
    ("not_null", r"Cannot insert the value NULL into column '(?P<column>[^']+)', table "
                 r"'(?P<table>[^']+)'"),
    ("unknown_column", r"Unknown column '(?P<column>[^']+)'"),
    ("unknown_column", r'column "(?P<column>[^"]+)" (?:of relation "(?P<table>[^"]+)" )?does '
                       r'not exist'),
    ("unknown_column", r"Invalid column name '(?P<column>[^']+)'"),
    ("permission", r"(?P<verb>[A-Z]+) command denied to user '[^']*'@'[^']*' for table "
                   r"(?:`[^`]+`\.)?[`']?(?P<table>[^`'\s]+)"),
    ("permission", r"permission denied for (?:table|relation) (?P<table>\S+)"),
    ("permission", r"The (?P<verb>[A-Z]+) permission was denied on the object '(?P<table>"
                   r"[^']+)'"),
    ("unknown_table", r"Table '(?:[^'.]*\.)?(?P<table>[^']+)' doesn't exist"),
    ("unknown_table", r'relation "(?P<table>[^"]+)" does not exist'),
    ("unknown_table", r"Invalid object name '(?P<table>[^']+)'"),
)


@dataclass(frozen=True)
class Fault:
    """What a database refused, in parts a message can name: the rule broken ('foreign_key',
    'not_null', 'unknown_column', 'permission', 'unknown_table') and whatever the driver
    said of the table, column, referenced table and value."""

    rule: str
    table: str | None = None
    column: str | None = None
    ref_table: str | None = None
    ref_column: str | None = None
    value: str | None = None
    verb: str | None = None


def fault_of(exc: BaseException) -> Fault | None:
    """The rule a driver error reports as broken, or None for anything else (a lost
    connection, a lock wait, a trigger's own message)."""
    orig = getattr(exc, "orig", None) or exc
    said = str(orig)
    for rule, pattern in _FAULTS:
        found = re.search(pattern, said)
        if found:
            return Fault(rule, **{k: _unquote(v) for k, v in found.groupdict().items()})
    return None


def _unquote(name: str | None) -> str | None:
    return name.strip('"`[]') if name else name
