"""The consortium config fails at load, naming the member and the field."""

from __future__ import annotations

import pytest

from circhub.connections.config import ConfigError, load_config, parse_config

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
