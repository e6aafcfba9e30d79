"""The consortium config fails at load, naming the member and the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.config import ConfigError, load_config, parse_config
from circhub.connections.engines import central_url
from tests.helpers import consortium_settings, koha_consortium, sync_cycle

GOOD = {"code": "CD001", "name": "Chengdu Public Library", "profile": "koha",
        "connection": "sqlite:///x.db"}


def _error(members) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config({"members": members})
    return str(exc.value)


def test_an_unknown_profile_names_the_member_and_the_field():
    msg = _error([{**GOOD, "profile": "aleph"}])
    assert "member CD001: field 'profile'" in msg and "unknown ILS profile 'aleph'" in msg


def test_a_duplicate_code_names_the_member():
    msg = _error([GOOD, {**GOOD, "name": "again"}])
    assert "member CD001: field 'code': duplicate member code" in msg


def test_a_missing_connection_names_the_member_and_the_field():
    member = {k: v for k, v in GOOD.items() if k != "connection"}
    assert "member CD001: field 'connection'" in _error([member])


def test_two_connections_at_once_are_refused():
    msg = _error([{**GOOD, "connection_env": "CD001_URL"}])
    assert "give exactly one of" in msg and "connection_env" in msg


def test_every_problem_is_reported_at_once():
    msg = _error([{**GOOD, "profile": "aleph"}, {"code": "x", "profile": "koha"}])
    assert "aleph" in msg and "member x: field 'code'" in msg and "field 'name'" in msg


def test_a_missing_file_and_bad_toml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[consortium\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_a_good_config_loads_with_the_sqlite_default_store():
    consortium = parse_config({"members": [GOOD]})
    assert consortium.central_store == "sqlite:///circhub.db"
    assert consortium.member("CD001").barcode_prefix == "CD001"
    assert consortium.owner_of_barcode("CD0010000042") == "CD001"


@pytest.mark.parametrize("prefixes", [("CD001", "SC001"), ("CD001", "SC0019", "SC00")])
def test_owners_of_a_list_of_barcodes_are_those_of_each_barcode(prefixes):
    members = [{**GOOD, "code": f"M{i:03d}", "barcode_prefix": p}
               for i, p in enumerate(prefixes)]
    consortium = parse_config({"members": members})
    barcodes = ["CD0010000042", "SC0019000001", "SC0010000001", "SC00", "XX001", "", None,
                float("nan"), "CD00"]
    assert consortium.owners_of_barcode_list(barcodes) == [
        consortium.owner_of_barcode(b) if isinstance(b, str) else None for b in barcodes]


@pytest.mark.parametrize("value", [0, -5, "many", 2.5])
def test_a_bad_max_delta_rows_names_the_field(value):
    with pytest.raises(ConfigError) as exc:
        parse_config({"consortium": {"max_delta_rows": value}, "members": [GOOD]})
    assert "[consortium] field 'max_delta_rows'" in str(exc.value)


@pytest.mark.parametrize("value", [0, 1.5, -0.1, "half", True])
def test_a_bad_max_bad_share_names_the_field(value):
    with pytest.raises(ConfigError) as exc:
        parse_config({"consortium": {"max_bad_share": value}, "members": [GOOD]})
    assert "[consortium] field 'max_bad_share'" in str(exc.value)


def test_max_bad_share_defaults_to_half_and_takes_a_share():
    assert parse_config({"members": [GOOD]}).max_bad_share == 0.5
    assert parse_config({"consortium": {"max_bad_share": 1}, "members": [GOOD]}
                        ).max_bad_share == 1.0


def _settings_error(**settings) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config({"consortium": settings, "members": [GOOD]})
    return str(exc.value)


# The typos and values of issue 17, each of which used to be accepted or to fail bare.

def test_a_typo_in_a_setting_is_refused_with_the_nearest_key():
    msg = _settings_error(max_bad_shar=0.9)
    assert "[consortium] unknown field 'max_bad_shar' (did you mean max_bad_share?)" in msg


def test_a_negative_lookback_is_refused_naming_the_field_and_the_value():
    msg = _settings_error(lookback_seconds=-5)
    assert "[consortium] field 'lookback_seconds'" in msg and "not -5" in msg


def test_no_source_connections_at_all_is_refused():
    msg = _settings_error(max_source_connections=0)
    assert "[consortium] field 'max_source_connections'" in msg and "not 0" in msg


def test_attempts_given_as_text_are_a_config_error_naming_field_and_value():
    msg = _settings_error(writeback_max_attempts="x")
    assert "[consortium] field 'writeback_max_attempts'" in msg and "not 'x'" in msg


def test_a_typo_in_a_member_is_refused_naming_the_member():
    msg = _error([{**GOOD, "barcode_prefx": "CD"}])
    assert "member CD001: unknown field 'barcode_prefx' (did you mean barcode_prefix?)" in msg


@pytest.mark.parametrize(("name", "value"), [
    ("lookback_seconds", 1.5), ("max_source_connections", -1), ("max_delta_rows", True),
    ("max_bad_share", 0), ("writeback_max_attempts", 0), ("writeback_backoff_seconds", 0),
    ("writeback_backoff_cap_seconds", -1), ("demo", "yes"), ("name", ""), ("name", 5),
])
def test_every_setting_has_its_type_and_range(name, value):
    msg = _settings_error(**{name: value})
    assert f"[consortium] field {name!r}" in msg and repr(value) in msg


def test_the_edges_of_each_range_are_accepted():
    consortium = parse_config({"consortium": {
        "lookback_seconds": 0, "max_source_connections": 1, "max_delta_rows": 1,
        "max_bad_share": 1, "writeback_max_attempts": 1, "writeback_backoff_seconds": 0.5,
        "writeback_backoff_cap_seconds": 0.5}, "members": [GOOD]})
    assert consortium.lookback_seconds == 0 and consortium.writeback_backoff_cap_seconds == 0.5


def test_a_backoff_cap_below_the_backoff_is_refused():
    msg = _settings_error(writeback_backoff_seconds=60, writeback_backoff_cap_seconds=30)
    assert "field 'writeback_backoff_cap_seconds': 30 is below writeback_backoff_seconds (60)" \
        in msg


def test_problems_of_settings_and_members_are_all_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        parse_config({"consortium": {"max_bad_shar": 0.9, "lookback_seconds": -5},
                      "members": [{**GOOD, "sync": "yes"},
                                  {**GOOD, "code": "CD002", "connection_env": "URL"},
                                  {"code": "CD003", "name": "x", "profile": "koha",
                                   "connection": "sqlite://", "level": "town"}]})
    lines = str(exc.value).splitlines()[1:]
    assert len(lines) == 5
    assert "member CD001: field 'sync': should be a valid boolean, not 'yes'" in lines[2]
    assert "member CD002: field 'connection': give exactly one of" in lines[3]
    assert "member CD003: field 'level'" in lines[4] and "'town'" in lines[4]


def test_a_connection_url_never_appears_in_an_error():
    url = "mysql+pymysql://koha:s3cret@10.0.0.7/koha"
    with pytest.raises(ConfigError) as exc:
        parse_config({"consortium": {"central_store": url, "central_store_env": "X",
                                     "central_stor": url},
                      "members": [{**GOOD, "conection": url, "code": "cd1"},
                                  {**GOOD, "code": "CD002", "connection": 5}]})
    msg = str(exc.value)
    assert "s3cret" not in msg and "unknown field 'conection'" in msg
    assert "member CD002: field 'connection': should be a valid string (value not shown" in msg
    assert "give one of central_store, central_store_env" in msg


def test_a_central_store_from_the_environment_leaves_no_default_behind(monkeypatch):
    monkeypatch.setenv("CIRCHUB_TEST_STORE", "sqlite:///from-env.db")
    consortium = parse_config({"consortium": {"central_store_env": "CIRCHUB_TEST_STORE"},
                               "members": [GOOD]})
    assert consortium.central_store is None
    assert central_url(consortium) == "sqlite:///from-env.db"


def test_two_members_with_one_barcode_prefix_are_refused():
    msg = _error([GOOD, {**GOOD, "code": "CD002", "barcode_prefix": "CD001"}])
    assert "member CD002: field 'barcode_prefix': 'CD001' is CD001's too" in msg


def test_a_branch_mapped_to_no_member_is_refused():
    msg = _error([{**GOOD, "branches": {"MAIN": "CD001", "EAST": "CD009"}}])
    assert "member CD001: field 'branches.EAST': no member 'CD009' in the config" in msg


def test_an_unknown_table_is_refused_with_the_nearest_one():
    with pytest.raises(ConfigError, match=r"unknown table 'member' \(did you mean members\?\)"):
        parse_config({"member": [GOOD], "members": [GOOD]})


def test_a_members_constants_are_parsed_with_their_toml_types(tmp_path):
    path = tmp_path / "consortium.toml"
    path.write_text('[[members]]\ncode = "CD001"\nname = "Chengdu"\nprofile = "koha"\n'
                    'connection = "sqlite:///x.db"\n'
                    'constants = { lending_branch = "MAIN", loan_days = 28, fine = 0.5, '
                    'renewals = true }\n')
    member = load_config(path).member("CD001")
    assert member.constants == {"lending_branch": "MAIN", "loan_days": 28, "fine": 0.5,
                                "renewals": True}
    assert type(member.constants["renewals"]) is bool
    assert parse_config({"members": [GOOD]}).member("CD001").constants == {}


def test_a_constant_that_is_no_single_value_is_refused():
    msg = _error([{**GOOD, "constants": {"branches": ["MAIN", "EAST"]}}])
    assert "member CD001: field 'constants.branches': should be text, a number or true/false" \
        in msg


def test_the_loaded_config_cannot_be_changed():
    consortium = parse_config({"members": [GOOD]})
    with pytest.raises(ValidationError):
        consortium.lookback_seconds = -5
    with pytest.raises(ValidationError):
        consortium.member("CD001").code = "CD002"


def test_a_negative_lookback_never_reaches_extraction(tmp_path, mariadb_db, pg_db):
    """The config does not load: the sync stops before it opens the central store or reads a
    member (it used to read from 5 s after the watermark, skipping rows)."""
    central = pg_db()
    _, config = koha_consortium(tmp_path, [mariadb_db()], central, upgrade=False)
    consortium_settings(config, lookback_seconds=-5)
    result = CliRunner().invoke(app, ["sync", "-c", str(config)])
    assert result.exit_code == 2
    assert "field 'lookback_seconds'" in result.output and "-5" in result.output
    with pytest.raises(ConfigError, match="lookback_seconds"):
        sync_cycle(config)
    assert inspect(create_engine(central)).get_table_names() == []  # no store, no watermark


def test_a_member_without_a_code_is_named_by_its_place_and_nothing_else_is_blamed():
    msg = _error([GOOD, {k: v for k, v in GOOD.items() if k != "code"}])
    assert msg.splitlines()[1:] == ["  - member #2: field 'code': missing"]
