"""The words a member's ILS shows for "this book is away at consortium member X" where the ILS
cannot name X itself: a member that chose one consortium branch for all the others
(`holder_branches = "one"`) sees only that branch as the holder, so the hub writes which member
holds the book into a staff-only note (Koha: `items.itemnotes_nonpublic`), and reads it back.

One module writes and reads the note, so the two cannot drift apart. The note starts with
NOTE_PREFIX: a profile guards on it, so that a note the library's own staff wrote is never
overwritten or cleared.
"""

from __future__ import annotations

import re

NOTE_PREFIX = "circhub: "
_AWAY = NOTE_PREFIX + "away at consortium member "
_AWAY_PATTERN = re.compile(re.escape(_AWAY) + r"([A-Z0-9][A-Z0-9_-]{1,31})\b")


def away_note(holder: str) -> str:
    """The note of a book held at another member."""
    return f"{_AWAY}{holder}"


def return_note(owner: str) -> str:
    """The note of a transfer home, naming the owner (its branch may be the one consortium
    branch, which names no member)."""
    return f"{NOTE_PREFIX}return to owner {owner}"


def holder_in_note(text: object) -> str | None:
    """The member code an away note names; None for any other text (a staff note)."""
    if not isinstance(text, str):
        return None
    found = _AWAY_PATTERN.match(text)
    return found.group(1) if found else None
