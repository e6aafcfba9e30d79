"""circhub.tasks.onboarding.check.check_member: the verdict on a member before its first sync, with
reasons."""

from __future__ import annotations

import random
from datetime import datetime

import pytest
from member_databases import member_database
from sqlalchemy import text

from circhub.connections.config import parse_config
from circhub.connections.engines import engine_for
from circhub.connections.holds import holding
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.koha import KohaDesk
from circhub.simulator.polaris import PolarisDesk
from circhub.simulator.world import make_id_number
from circhub.tasks.onboarding.check import check_member as check_in_hold

T0 = datetime(2026, 10, 1, 9, 0)


def check_member(consortium, code: str, **kw):
    """As `circhub check` runs it: under the member's hold (here without Prefect)."""
    with holding(code):
        return check_in_hold(consortium, code, **kw)


def consortium(profile: str, url: str):
    return parse_config({"consortium": {"name": "test", "demo": True}, "members": [
        {"code": "AA001", "name": "Alpha", "profile": profile, "connection": url}]})


def seed(desk, readers: int = 4, bad_ids: int = 0) -> None:
    desk.create_schema({"AA001": "Alpha"})
    rng = random.Random(5)
    ids = [make_id_number(rng, "Chengdu")[0] for _ in range(readers)]
    ids[:bad_ids] = [i[:-1] + ("0" if i[-1] != "0" else "1") for i in ids[:bad_ids]]
    people = desk.add_readers([{"cardnumber": i, "surname": "Wang", "firstname": "Fang",
                                "dateofbirth": None, "sex": "F", "dateenrolled": None}
                               for i in ids])
    desk.add_items([f"AA00100000{n:02d}" for n in range(1, 6)], T0)
    desk.checkout("AA0010000001", people[-1], T0, datetime(2026, 10, 29))


@pytest.fixture
def koha(request):
    url = member_database(request, "mariadb")
    return url, KohaDesk(engine_for(url), "AA001")


@pytest.fixture
def evergreen(request):
    url = member_database(request, "postgresql")
    return url, EvergreenDesk(engine_for(url), "AA001")


def test_a_clean_koha_member_is_ready_and_its_backfill_is_counted(koha):
    url, desk = koha
    seed(desk)
    report = check_member(consortium("koha", url), "AA001")
    assert report.ready, report.lines()
    assert report.verdict == "ready"
    assert report.backfill_rows == {"readers": 4, "items": 5, "loans": 1}
    assert {e: s.rows for e, s in report.samples.items()} == report.backfill_rows


def test_a_polaris_style_member_over_odbc_is_ready(request):
    url = member_database(request, "odbc")
    seed(PolarisDesk(engine_for(url), "AA001"))
    report = check_member(consortium("polaris", url), "AA001")
    assert report.ready, report.lines()
    assert report.backfill_rows == {"readers": 4, "items": 5, "loans": 1}


def test_a_member_whose_schema_lacks_a_mapped_column_is_not_ready_and_the_column_is_named(
        evergreen):
    url, desk = evergreen
    seed(desk)
    with engine_for(url).begin() as conn:  # an Evergreen that never installed the loans cursor
        conn.execute(text("ALTER TABLE action.circulation DROP COLUMN last_update_time CASCADE"))
    report = check_member(consortium("evergreen", url), "AA001")
    assert not report.ready
    assert report.reasons == [
        "profile 'evergreen': table action.circulation has no column last_update_time"]
    assert report.samples == {}  # nothing sampled through a profile that cannot run


def test_a_member_with_too_many_invalid_readers_is_not_ready(koha):
    url, desk = koha
    seed(desk, readers=4, bad_ids=2)
    report = check_member(consortium("koha", url), "AA001")
    assert not report.ready
    assert report.reasons == [
        "readers: 2 of 4 sampled rows (50.0%) fail validation: id_number_valid=2"]


def test_a_few_invalid_rows_under_the_threshold_are_a_warning_not_a_refusal(koha):
    url, desk = koha
    seed(desk, readers=4, bad_ids=1)
    report = check_member(consortium("koha", url), "AA001", max_bad_share=0.5)
    assert report.ready
    assert report.warnings == [
        "readers: 1 of 4 sampled rows (25.0%) fail validation: id_number_valid=1"]


def test_the_sample_is_limited_to_the_sample_size(koha):
    url, desk = koha
    seed(desk)
    report = check_member(consortium("koha", url), "AA001", sample_rows=2)
    assert report.samples["items"].rows == 2
    assert report.backfill_rows["items"] == 5


def test_an_unreachable_member_is_not_ready_and_says_why():
    url = "mysql+pymysql://root@127.0.0.1:1/nothing"
    report = check_member(consortium("koha", url), "AA001")
    assert not report.ready
    assert report.reasons[0].startswith("cannot connect to its koha database: OperationalError")
    assert url not in " ".join(report.reasons)


def test_circhub_check_names_the_missing_column_and_exits_non_zero(
        evergreen, tmp_path, monkeypatch, prefect_server):  # run under the member's Prefect slot
    from typer.testing import CliRunner

    from circhub.cli import app

    url, desk = evergreen
    seed(desk)
    with engine_for(url).begin() as conn:
        conn.execute(text("ALTER TABLE action.circulation DROP COLUMN last_update_time CASCADE"))
    config = tmp_path / "consortium.toml"
    config.write_text('[consortium]\nname = "t"\ndemo = true\n\n[[members]]\ncode = "AA001"\n'
                      f'name = "Alpha"\nprofile = "evergreen"\nconnection = "{url}"\n')
    monkeypatch.setenv("CIRCHUB_ID_KEY", "a-test-key-of-enough-length-0123456789")

    result = CliRunner().invoke(app, ["check", "AA001", "-c", str(config)])

    assert result.exit_code == 1, result.output
    assert "table action.circulation has no column last_update_time" in result.output
