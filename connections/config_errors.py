"""How a consortium config's problems read: one line each, naming where (`[consortium]` or the
member's code), the field and the value, with the nearest known key for a typo.

A value is shown only where it cannot hold a secret: connection URLs may carry a password, and
an unknown key may be a misspelt `connection`, so neither is ever printed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

# Fields whose values may hold a password (a SQLAlchemy URL in clear).
SECRET_FIELDS = frozenset({"connection", "central_store"})
LONGEST_VALUE = 60  # characters of a value shown; a longer one is cut


def nearest(key: str, known: Iterable[str]) -> str:
    """' (did you mean max_bad_share?)' for the nearest known key, or ''."""
    found = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {found[0]}?)" if found else ""


def unknown_key(where: str, key: str, known: Iterable[str]) -> str:
    return f"{where} unknown field {key!r}{nearest(key, known)}"


def rule_error(field: str, message: str) -> dict[str, Any]:
    """A broken rule over several fields, as a line error of the model's validation (its
    value is not shown: the fields named in the message are)."""
    return {"type": PydanticCustomError("rule", "{message}", {"message": message}),
            "loc": (field,), "input": None}


def problems(exc: ValidationError, where: str, known: Iterable[str]) -> list[str]:
    """Each error of a model's validation as one line, its location under `where`
    ("[consortium]", "member CD001:")."""
    known = list(known)
    lines = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(unknown_key(where, field, known))
            continue
        if error["type"] == "missing":  # its input is the whole table: nothing to show
            lines.append(f"{where} field {field!r}: missing")
            continue
        message = _message(error)
        if not field:  # the table itself is not one
            lines.append(f"{where} {message}")
            continue
        lines.append(f"{where} field {field!r}: {message}{_shown(field, error['input'], message)}")
    return lines


def _message(error: dict) -> str:
    # pydantic says "Input should be ...", "String should ...", "Value error, ..."; the field
    # is named already.
    message = error["msg"].removeprefix("Value error, ")
    return re.sub(r"^\w+ should", "should", message)


def _shown(field: str, value: Any, message: str) -> str:
    """The value, after the message (unless the message quotes it already)."""
    if value is None:
        return ""
    if field.split(".")[0] in SECRET_FIELDS:
        return " (value not shown: it may hold a password)"
    text = repr(value)
    if text in message:
        return ""
    if len(text) > LONGEST_VALUE:
        text = text[: LONGEST_VALUE - 3] + "..."
    return f", not {text}"
