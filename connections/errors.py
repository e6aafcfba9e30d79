"""How a database error reads in a run summary, a log or an outbox record, and whether it may go
away by itself.

Only a transient error is worth a retry: a source that did not answer, a connection lost, a
lock wait or a deadlock. A refused login, a missing table or column, a constraint violation
fails the same way every time, and a retry only hides its cause for a while. The driver's own
error code decides, never the text where a code exists:

- MariaDB/MySQL (pymysql, `args[0]`): the client and server error codes of the MariaDB
  manual ("MariaDB Error Codes": 2002/2003 cannot connect, 2006/2013 gone away or lost,
  1205 lock wait timeout, 1213 deadlock, 1040 too many connections; 1044/1045 access denied,
  1049 unknown database, 1054 unknown column, 1146 no such table, 1062/1451/1452 constraints);
- PostgreSQL (psycopg, `sqlstate`): the SQLSTATE classes of Appendix A of its manual (08
  connection exception, 40001 serialization failure, 40P01 deadlock, 55P03 lock not
  available, 57P01-57P03 shutdown or not yet accepting connections, 53300 too many
  connections; 28 invalid authorization, 3D000 no such database, 42 syntax or missing
  object, 23 integrity constraint). psycopg gives no SQLSTATE for a failed connection
  attempt; its message says whether the server refused the login;
- ODBC (pyodbc, `args[0]` is the SQLSTATE): 08xxx, HYT00/HYT01 timeouts and 40001 are
  transient; 28000, 42Sxx and 23000 are not;
- SQLite: "database is locked" is transient, nothing else is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MYSQL_TRANSIENT = frozenset({1040, 1205, 1213, 2002, 2003, 2006, 2013, 2055})
MYSQL_PERMANENT = frozenset({1044, 1045, 1049, 1054, 1062, 1064, 1142, 1143, 1146, 1364,
                             1451, 1452, 1698})
PG_TRANSIENT_CLASSES = ("08",)
PG_TRANSIENT = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
PG_PERMANENT_CLASSES = ("28", "3D", "42", "23")
PG_REFUSED_LOGIN = ("password authentication failed", "role \"", "no password supplied",
                    "database \"", "no pg_hba.conf entry")
ODBC_TRANSIENT = ("08", "HYT00", "HYT01", "40001")
ODBC_PERMANENT = ("28", "42S", "23", "3D")


def driver_message(exc: BaseException) -> str:
    """The driver's own message, first line only, without the SQL or its parameters (which
    may hold a reader's data): `OperationalError: (2003, "Can't connect to MySQL server")`."""
    orig = getattr(exc, "orig", None) or exc
    first = str(orig).splitlines()[0] if str(orig) else ""
    return f"{type(orig).__name__}: {first}".strip()


def is_transient(exc: BaseException) -> bool:
    """May this error go away by itself (worth a retry)? Unknown errors are not."""
    return _verdict(exc) == "transient"


def is_permanent(exc: BaseException) -> bool:
    """Will this error come back every time (refused login, missing object, constraint)?"""
    return _verdict(exc) == "permanent"


def _verdict(exc: BaseException) -> str | None:
    """'transient', 'permanent' or None (the driver's code says neither), for the first
    exception in the chain of causes that carries a driver error."""
    seen = exc
    while seen is not None:
        found = _driver_verdict(getattr(seen, "orig", None) or seen)
        if found:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


def _driver_verdict(orig: BaseException) -> str | None:
    module = type(orig).__module__.split(".")[0]
    if module == "pymysql":
        return _mysql(orig)
    if module == "psycopg":
        return _postgres(orig)
    if module == "pyodbc":
        return _odbc(orig)
    if module == "sqlite3":
        return "transient" if "database is locked" in str(orig) else "permanent"
    return None


def _mysql(orig: BaseException) -> str | None:
    code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
    if code in MYSQL_TRANSIENT:
        return "transient"
    if code in MYSQL_PERMANENT:
        return "permanent"
    return None


def _postgres(orig: BaseException) -> str | None:
    state = getattr(orig, "sqlstate", None)
    if state is None:  # a connection attempt that failed: refused login, or no answer
        if type(orig).__name__ != "OperationalError":
            return None
        text = str(orig)
        return "permanent" if any(s in text for s in PG_REFUSED_LOGIN) else "transient"
    if state in PG_TRANSIENT or state.startswith(PG_TRANSIENT_CLASSES):
        return "transient"
    if state.startswith(PG_PERMANENT_CLASSES):
        return "permanent"
    return None


def _odbc(orig: BaseException) -> str | None:
    state = str(orig.args[0]) if orig.args else ""
    if state.startswith(ODBC_TRANSIENT):
        return "transient"
    if state.startswith(ODBC_PERMANENT):
        return "permanent"
    return None


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
