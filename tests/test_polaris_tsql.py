"""Every statement the Polaris-style profile emits is T-SQL when compiled for SQL Server.

The tests reach the Polaris-style schema through PostgreSQL, so this is where the SQL a real
Polaris member would receive is checked: bracket-quoted names, the three-part transaction
table, TOP instead of LIMIT, + for text concatenation, no PostgreSQL-only syntax.
"""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from sqlalchemy.dialects import mssql

from circhub.connections.profile import load_profile, lookups_in
from circhub.connections.sql import extract_query, key_count_query, step_statement
from circhub.connections.step_sql import (
    Binding,
    identity_count,
    lookup_query,
    readback_query,
    row_exists,
)

PROFILE = load_profile("polaris")
SINCE, UNTIL = datetime(2026, 10, 1), datetime(2026, 10, 2)
PARAMS = {"barcode": "AA0010000001", "holder": "BB001", "holder_branch": "BB001",
          "loan_local_id": "17", "returned_at": datetime(2026, 10, 2, 10, 0),
          "return_member": "BB001", "return_branch": "BB001", "due_at": None,
          "state_at": datetime(2026, 10, 2, 10, 0),
          "owner_branch": "AA001", "requested_at": datetime(2026, 10, 3, 9, 0),
          "arrived_at": datetime(2026, 10, 4, 9, 0)}
NOT_TSQL = {
    "LIMIT": r"\bLIMIT\b",
    "double-quoted identifier": r'"',
    "|| concatenation": r"\|\|",
    ":: cast": r"::",
    "ILIKE": r"\bILIKE\b",
    "RETURNING": r"\bRETURNING\b",
    "now()": r"\bnow\(\)",
    "backtick": r"`",
}


def tsql(statement) -> str:
    return str(statement.compile(dialect=mssql.dialect()))


def assert_tsql(sql: str) -> None:
    for what, pattern in NOT_TSQL.items():
        assert not re.search(pattern, sql, re.IGNORECASE), f"{what} in T-SQL:\n{sql}"
    assert re.search(r"\[Polaris\]\.\[\w+\]|\[PolarisTransactions\]\.\[Polaris\]", sql), sql


def extraction_statements():
    for name, entity in PROFILE.entities.items():
        yield f"{name}-delta", extract_query(entity, SINCE, UNTIL)
        yield f"{name}-own-branches", extract_query(entity, SINCE, branches=["AA001"])
        yield f"{name}-sample", extract_query(entity).limit(1000)
        yield f"{name}-slice", extract_query(entity, SINCE).limit(50_000)  # max_delta_rows
        yield f"{name}-count", key_count_query(entity)


def writeback_statements():
    """Each step, and what the push runs around it: its look-ups, the count of the rows it is
    about, the check for a row there already, the read-back."""
    for kind, steps in PROFILE.writeback.items():
        for i, step in enumerate(steps, 1):
            label = f"{kind}-step{i}-{step.op}"
            yield label, step_statement(step, PARAMS)
            yield f"{label}-count", identity_count(step, Binding(PARAMS))
            yield f"{label}-exists", row_exists(step, Binding(PARAMS))
            yield f"{label}-read-back", readback_query(step, Binding(PARAMS))
            for lk in {id(lk): lk for v in step.values() for lk in lookups_in(v)}.values():
                yield f"{label}-lookup-{lk.label}", lookup_query(lk, Binding(PARAMS))


@pytest.mark.parametrize(("label", "statement"), list(extraction_statements()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_extraction_statement_compiles_to_tsql(label, statement):
    assert_tsql(tsql(statement))


@pytest.mark.parametrize(("label", "statement"), list(writeback_statements()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_writeback_statement_compiles_to_tsql(label, statement):
    assert_tsql(tsql(statement))


def test_the_transaction_log_is_addressed_by_its_three_part_name():
    sql = tsql(extract_query(PROFILE.entities["loans"], SINCE))
    assert "[PolarisTransactions].[Polaris].[TransactionHeaders]" in sql


def test_a_sample_uses_top_not_limit():
    sql = tsql(extract_query(PROFILE.entities["readers"]).limit(1000))
    assert re.search(r"SELECT TOP \S+", sql)


def test_names_are_concatenated_with_plus():
    sql = tsql(extract_query(PROFILE.entities["readers"]))
    assert re.search(r"coalesce\(pr\.\[NameLast\], \S+\) \+ coalesce\(pr\.\[NameFirst\]", sql)


def test_the_server_clock_is_current_timestamp():
    close_loan = [tsql(step_statement(s, PARAMS)) for s in PROFILE.writeback["close_loan"]]
    assert all("CURRENT_TIMESTAMP" in sql for sql in (close_loan[0], close_loan[2]))


def test_the_check_in_is_inserted_only_when_missing():
    step = PROFILE.writeback["close_loan"][0]
    sql = tsql(step_statement(step, PARAMS))
    assert sql.startswith("INSERT INTO [PolarisTransactions].[Polaris].[TransactionHeaders]")
    assert tsql(row_exists(step, Binding(PARAMS))).startswith("SELECT count(*)")


def test_a_lookup_reads_at_most_two_rows_with_top():
    lookup = PROFILE.writeback["close_loan"][0].where["ItemRecordID"]
    assert tsql(lookup_query(lookup, Binding(PARAMS))).startswith("SELECT TOP __[POSTCOMPILE")
