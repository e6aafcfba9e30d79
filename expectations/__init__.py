"""Great Expectations suites, one JSON file per entity.

Each expectation carries a `rule` name: that name is what a quarantined row records as broken.
Row-level facts GX cannot see directly (an ID number's check digit, a barcode's owner) arrive
as computed `chk_*` / `id_status` columns, so the raw ID number never reaches GX or its results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class RuleSpec:
    rule: str
    type: str
    kwargs: dict
    # A row column naming the specific rule broken (id_check_digit, id_area_code, ...): a
    # quarantined row records it next to the suite's rule.
    detail: str | None = None


@dataclass(frozen=True)
class SuiteSpec:
    entity: str
    key: str
    rules: tuple[RuleSpec, ...]

    @property
    def columns(self) -> set[str]:
        return {r.kwargs["column"] for r in self.rules}

    @property
    def unique_columns(self) -> set[str]:
        """Columns whose values must be unique (within one member's rows)."""
        return {r.kwargs["column"] for r in self.rules
                if r.type == "expect_column_values_to_be_unique"}


@cache
def suite_spec(entity: str) -> SuiteSpec:
    data = json.loads((HERE / f"{entity}.json").read_text())
    rules = tuple(RuleSpec(e["rule"], e["type"], e["kwargs"], e.get("detail"))
                  for e in data["expectations"])
    return SuiteSpec(data["entity"], data["key"], rules)
