"""README's tables of the config's settings and member fields are the models' own: defaults,
ranges and meanings come from the fields (one place for each), and this test fails when the
README says otherwise, printing the tables to paste."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import annotated_types as at
from pydantic import BaseModel

from circhub.connections.config import Member, Settings

README = Path(__file__).resolve().parents[1] / "README.md"
KINDS = {int: "whole number", float: "number", bool: "true / false", str: "text",
         Path: "folder", dict: "table"}
BOUNDS = ((at.Ge, "ge", "≥"), (at.Gt, "gt", ">"), (at.Le, "le", "≤"), (at.Lt, "lt", "<"))


def _kind(annotation) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return " / ".join(map(str, args))
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return _kind(args[0])
    return KINDS[typing.get_origin(annotation) or annotation]


def _range(metadata) -> str:
    return ", ".join(f"{sign} {getattr(m, attr):g}" for m in metadata
                     for kind, attr, sign in BOUNDS if isinstance(m, kind))


def _default(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value in (None, {}, ""):
        return "—"
    if isinstance(value, bool):
        return str(value).lower()  # as TOML writes it
    return f'"{value}"' if isinstance(value, str) else f"{value:g}"


def model_table(model: type[BaseModel]) -> str:
    rows = ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        kind = " ".join(filter(None, [_kind(field.annotation), _range(field.metadata)]))
        rows.append(f"| `{name}` | {kind} | {_default(field)} | {field.description} |")
    return "\n".join(rows)


def readme_table(model: type[BaseModel]) -> str:
    marker = f"<!-- generated: {model.__module__}.{model.__name__} -->"
    text = README.read_text()
    assert marker in text, f"README has no table marked {marker}"
    found = re.search(re.escape(marker) + r"\n((?:\|.*\n)+)", text)
    return found.group(1).strip() if found else ""


def test_the_readme_lists_every_setting_with_the_models_default_and_range():
    expected = model_table(Settings)
    assert readme_table(Settings) == expected, f"README's [consortium] table:\n{expected}"


def test_the_readme_lists_every_member_field_as_the_model_declares_it():
    expected = model_table(Member)
    assert readme_table(Member) == expected, f"README's [[members]] table:\n{expected}"


def test_every_setting_and_member_field_says_what_it_is():
    for model in (Settings, Member):
        assert all(f.description for f in model.model_fields.values())
