"""Text typed by people (reader names, titles) from legacy Chinese ILS databases, made UTF-8.

Three shapes arrive: proper Unicode; raw bytes (binary columns, old drivers) in UTF-8 or
GBK/GB18030; and "mojibake" — GBK bytes stored in a latin1 column, which the driver hands over
as Latin-1 characters ("ÍõÃ÷" for 王明). Each is repaired only when the evidence is clear;
anything else gets the rule name `text_encoding` and no text, so it is quarantined instead of
being stored garbled. Pure functions, no I/O.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

TEXT_ENCODING = "text_encoding"  # the rule a quarantined row records

# MySQL's "latin1" is Windows-1252: bytes 0x80-0x9F come back as typographic characters.
# The five bytes cp1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) come back as U+0081 etc.
_CP1252_UNDEFINED = (0x81, 0x8D, 0x8F, 0x90, 0x9D)
_CP1252_BYTE = {
    bytes([b]).decode("cp1252"): b for b in range(0x80, 0xA0) if b not in _CP1252_UNDEFINED
}


@dataclass(frozen=True)
class NormalisedText:
    text: str | None
    rule: str | None = None  # TEXT_ENCODING when the value could not be trusted
    repaired: bool = False


def normalise_text(value) -> NormalisedText:
    """One name or title as clean UTF-8 text, or the rule it broke."""
    if value is None:
        return NormalisedText(None)
    if isinstance(value, bytes | bytearray | memoryview):
        return _from_bytes(bytes(value))
    return _from_str(str(value))


def _clean(text: str) -> str | None:
    text = unicodedata.normalize("NFC", text).strip()
    return text or None


def _from_bytes(raw: bytes) -> NormalisedText:
    for codec in ("utf-8", "gb18030"):  # gb18030 is a superset of GBK and GB2312
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError:
            continue
        if _garbled(text):
            continue
        return NormalisedText(_clean(text), repaired=codec != "utf-8")
    return NormalisedText(None, TEXT_ENCODING)


def _from_str(text: str) -> NormalisedText:
    if "\ufffd" in text:  # a decoder upstream already replaced bytes it could not read
        return NormalisedText(None, TEXT_ENCODING)
    raw = _latin1_bytes(text)
    if raw is None or max(raw, default=0) < 0x80:
        return NormalisedText(_clean(text))  # real Unicode (or plain ASCII): nothing to repair
    repaired = _repair(text, raw)
    if repaired is not None:
        return NormalisedText(_clean(repaired), repaired=True)
    if _plausible_latin(text):
        return NormalisedText(_clean(text))
    return NormalisedText(None, TEXT_ENCODING)


def _latin1_bytes(text: str) -> bytes | None:
    """The bytes a latin1 column held, if every character maps back to one byte."""
    out = bytearray()
    for ch in text:
        if ch in _CP1252_BYTE:
            out.append(_CP1252_BYTE[ch])
        elif ord(ch) < 0x100:
            out.append(ord(ch))
        else:
            return None
    return bytes(out)


def _repair(text: str, raw: bytes) -> str | None:
    """UTF-8 or GBK bytes read as Latin-1, decoded again; None when the evidence is weak."""
    try:
        decoded = raw.decode("utf-8")  # UTF-8 mojibake ("çŽ‹æ˜Ž"): strict decoding is telling
        return decoded if not _garbled(decoded) else None
    except UnicodeDecodeError:
        pass
    try:
        decoded = raw.decode("gb18030")
    except UnicodeDecodeError:
        return None
    ascii_kept = _ascii(decoded) == _ascii(text)  # no ASCII letter was eaten as a trail byte
    cjk = [ch for ch in decoded if ord(ch) >= 0x80]
    if not ascii_kept or not cjk or not all(_is_cjk(ch) for ch in cjk):
        return None
    # "Ação" decodes to one ideograph between Latin letters: too little to call it Chinese.
    has_letters = any(ch.isascii() and ch.isalpha() for ch in text)
    return decoded if len(cjk) >= 2 or not has_letters else None


def _plausible_latin(text: str) -> bool:
    """Real Latin-1 text (José, Müller): accented letters alone between ASCII letters."""
    if any(0x80 <= ord(ch) < 0xA0 for ch in text):
        return False  # C1 control characters never appear in typed text
    run = 0
    for ch in text:
        run = run + 1 if ord(ch) >= 0x80 else 0
        if run > 1:
            return False
    return True


def _ascii(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii())


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # extension A
        or 0x20000 <= code <= 0x3134F  # extensions B-G (GB18030 four-byte forms)
        or 0x3000 <= code <= 0x303F  # CJK punctuation
        or 0xFF00 <= code <= 0xFFEF  # full-width forms
        or code in (0x00B7, 0x30FB)  # middle dots in transliterated minority names
    )


def _garbled(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in "\t\n\r"
               for ch in text)
