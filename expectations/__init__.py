"""The Great Expectations suites, one per entity, built from the entity registry.

Each entity's rules are declared with it (`circhub.domain.records`, `suite_rules`): a GX
expectation type and its kwargs, and the rule name a quarantined row records, which is also
kept in the expectation's `meta` and shown in Data Docs. Rules are GX's own expectations
(compound-column uniqueness within each member, column-pair order of dates, value sets, nulls,
ranges with run-time parameters); the only computed inputs are row facts no column holds and
GX cannot derive (the member a branch code maps to, a barcode's owner by prefix, whether a
name decoded), and the ID number's check result, so the raw ID number never reaches GX.

Run-time parameters (`expectation_parameters` of a validation run): `member_codes` (the
consortium's members) and `latest_time` (the hub's clock plus the future tolerance).
"""

from __future__ import annotations

from circhub.domain.records import Rule, suite_rules


def expectation_class(gx, rule: Rule):
    """The GX expectation class of a rule: `expect_column_values_to_be_unique` ->
    `gx.expectations.ExpectColumnValuesToBeUnique`."""
    name = "".join(part.capitalize() for part in rule.expectation.split("_"))
    return getattr(gx.expectations, name)


def build_suite(gx, entity: str):
    """The entity's ExpectationSuite (not yet added to a context)."""
    suite = gx.ExpectationSuite(name=entity)
    for rule in suite_rules(entity):
        suite.add_expectation(expectation_class(gx, rule)(
            **rule.kwargs, meta={"rule": rule.name, "detail": rule.detail},
            notes=f"circhub rule `{rule.name}`"))  # shown in Data Docs
    return suite


def suite_columns(entity: str) -> list[str]:
    """Every column the suite reads, rule details included: a validation batch holds only
    these (GX looks at nothing else, and a narrower frame is cheaper to build and to run)."""
    found = set()
    for rule in suite_rules(entity):
        found |= rule.columns
        if rule.detail:
            found.add(rule.detail)
    return sorted(found)
