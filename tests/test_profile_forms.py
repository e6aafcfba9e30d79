"""The declarative forms profiles are written in: checked when loaded, compiled per dialect."""

from __future__ import annotations

import tomllib

import pytest
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite
from sqlalchemy.engine import make_url

from circhub.connections.odbc import odbc_connection_string
from circhub.connections.profile import (
    PROFILE_DIR,
    ProfileError,
    available_profiles,
    load_profile,
    parse_profile,
)
from circhub.connections.sql import extract_query, step_statement
from circhub.connections.step_sql import Binding, returning_insert

PARAMS = {"barcode": "AA0010000001", "holder_branch": "BB001", "due_at": None,
          "loan_local_id": "7", "returned_at": None, "return_branch": "BB001"}


def raw_profile(kind: str) -> dict:
    return tomllib.loads((PROFILE_DIR / f"{kind}.toml").read_text())


@pytest.mark.parametrize("kind", ["koha", "evergreen", "polaris", "openbiblio"])
def test_every_shipped_profile_loads(kind):
    assert kind in available_profiles()
    assert load_profile(kind).kind == kind


def test_a_write_back_naming_an_unknown_lookup_is_refused():
    data = raw_profile("evergreen")
    data["writeback"]["set_item"][0]["set"]["circ_lib"] = "@nowhere"
    with pytest.raises(ProfileError, match="no lookup named 'nowhere'"):
        parse_profile("evergreen", data)


def test_an_unknown_special_value_is_refused():
    data = raw_profile("evergreen")
    data["writeback"]["set_item"][0]["set"]["edit_date"] = "$today"
    with pytest.raises(ProfileError, match=r"'\$today' is not one of"):
        parse_profile("evergreen", data)


def test_if_null_needs_a_parameter_then_and_else():
    data = raw_profile("evergreen")
    data["writeback"]["set_item"][0]["set"]["status"] = {"if_null": ":due_at", "then": 0}
    with pytest.raises(ProfileError, match="if_null needs"):
        parse_profile("evergreen", data)


def test_a_join_filter_compares_with_constants_only():
    data = raw_profile("evergreen")
    data["entities"]["items"]["sources"][0]["joins"][3]["filter"] = {"checkin_time": "$now"}
    with pytest.raises(ProfileError, match="is not a constant"):
        parse_profile("evergreen", data)


def test_an_insert_missing_step_needs_the_row_it_looks_for():
    data = raw_profile("polaris")
    del data["writeback"]["close_loan"][0]["where"]
    with pytest.raises(ProfileError, match="needs a 'where'"):
        parse_profile("polaris", data)


def test_tables_and_columns_read_by_lookups_and_join_filters_are_referenced():
    referenced = load_profile("polaris").referenced_columns()
    assert "Abbreviation" in referenced["Polaris.Organizations"]
    assert {"TransactionTypeID", "TransactionDate"} <= referenced[
        "PolarisTransactions.Polaris.TransactionHeaders"]


@pytest.mark.parametrize(("dialect", "joined"), [
    (postgresql.dialect(), "||"), (sqlite.dialect(), "||"),
    (mysql.dialect(), "concat("), (mssql.dialect(), ") + coalesce("),
])
def test_a_list_of_columns_is_read_as_one_text_in_each_dialect(dialect, joined):
    sql = str(extract_query(load_profile("koha").entities["readers"]).compile(dialect=dialect))
    assert joined in sql


@pytest.mark.parametrize(("due_at", "status"), [(None, 0), ("2026-11-01", 1)])
def test_if_null_picks_the_value_by_the_command_parameter(due_at, status):
    step = load_profile("evergreen").writeback["set_item"][0]
    compiled = step_statement(step, {**PARAMS, "due_at": due_at}).compile(
        dialect=postgresql.dialect())
    assert status in compiled.params.values()


def test_an_odbc_url_becomes_a_postgresql_odbc_connection_string():
    url = make_url("postgresql+pyodbc://hub:p;w}d@db.example:5433/polaris"
                   "?driver=PostgreSQL+Unicode&SSLmode=require")
    assert odbc_connection_string(url) == (
        "DRIVER={PostgreSQL Unicode};SERVER=db.example;PORT=5433;DATABASE=polaris;UID=hub;"
        "PWD={p;w}}d};UseServerSidePrepare=0;SSLmode=require")


@pytest.mark.parametrize(("dialect", "can_return", "handed_back"), [
    (postgresql.dialect(), True, "RETURNING biblio_status_hist.histid"),
    (mssql.dialect(), True, "OUTPUT inserted.histid"),
    (mysql.dialect(), False, None),  # MySQL: the driver's lastrowid
])
def test_an_insert_hands_its_new_key_back_in_each_dialect(dialect, can_return, handed_back):
    step = load_profile("openbiblio").writeback["set_item"][0]
    params = {"barcode": "AA0010000001", "due_at": None, "state_at": "2026-10-02 10:00:00"}
    sql = str(returning_insert(step, Binding(params), can_return).compile(dialect=dialect))
    assert sql.startswith("INSERT INTO biblio_status_hist")
    if handed_back:
        assert handed_back in sql
    else:
        assert "RETURNING" not in sql and "OUTPUT" not in sql
