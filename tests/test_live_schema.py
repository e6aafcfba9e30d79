"""circhub.connections.live_schema: a profile against a member's live schema, names reported
exactly."""

from __future__ import annotations

import pytest
from member_databases import member_database
from sqlalchemy import text

from circhub.connections.engines import engine_for
from circhub.connections.live_schema import schema_problems
from circhub.connections.profile import load_profile
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.polaris import PolarisDesk


@pytest.fixture
def evergreen(request):
    url = member_database(request, "postgresql")
    EvergreenDesk(engine_for(url), "AA001").create_schema({"AA001": "Alpha"})
    return engine_for(url)


@pytest.fixture
def polaris(request):
    url = member_database(request, "odbc")
    PolarisDesk(engine_for(url), "AA001").create_schema({"AA001": "Alpha"})
    return engine_for(url)


def test_a_complete_schema_has_no_problems(evergreen):
    assert schema_problems(load_profile("evergreen"), evergreen) == []


def test_a_missing_column_is_named_with_its_table(evergreen):
    with evergreen.begin() as conn:
        conn.execute(text("ALTER TABLE actor.usr DROP COLUMN ident_value"))
    assert schema_problems(load_profile("evergreen"), evergreen) == [
        "profile 'evergreen': table actor.usr has no column ident_value"]


def test_a_column_only_a_write_back_uses_is_checked_too(evergreen):
    with evergreen.begin() as conn:
        conn.execute(text("ALTER TABLE action.circulation DROP COLUMN checkin_scan_time"))
    assert schema_problems(load_profile("evergreen"), evergreen) == [
        "profile 'evergreen': table action.circulation has no column checkin_scan_time"]


def test_a_missing_table_is_named_over_odbc_with_its_mixed_case_schema(polaris):
    with polaris.begin() as conn:
        conn.execute(text('DROP TABLE "Polaris"."MaterialTypes"'))
    assert schema_problems(load_profile("polaris"), polaris) == [
        "profile 'polaris': table Polaris.MaterialTypes does not exist"]


def test_the_transaction_log_is_found_in_its_dotted_schema(polaris):
    with polaris.begin() as conn:
        conn.execute(text('ALTER TABLE "PolarisTransactions.Polaris"."TransactionHeaders" '
                          'DROP COLUMN "TransactionDate"'))
    assert schema_problems(load_profile("polaris"), polaris) == [
        "profile 'polaris': table PolarisTransactions.Polaris.TransactionHeaders "
        "has no column TransactionDate"]
