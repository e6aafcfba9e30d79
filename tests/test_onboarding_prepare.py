"""Onboarding against an ILS that is not kinder than the real one: `circhub check` rehearses
every write-back on real rows and names what is missing, `circhub prepare` creates it once,
and then the first push applies (Koha members on real MariaDB, central store on PostgreSQL;
an Evergreen member on real PostgreSQL).

Until the faithful Koha schema lands, member A's database is given the foreign keys the real
Koha has (kohastructure.sql: `items.holdingbranch`, `branchtransfers.frombranch` and
`tobranch` reference `branches`), and loses the branches the simulator gave it for the other
members, as a real member's Koha never had them.
"""

from __future__ import annotations

import random
import tomllib
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.config import load_config, parse_config
from circhub.connections.engines import engine_for
from circhub.connections.holds import holding
from circhub.connections.profile import PROFILE_DIR, ProfileError, parse_profile
from circhub.connections.runtime import open_runtime
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.polaris import PolarisDesk
from circhub.simulator.world import make_id_number
from circhub.tasks.onboarding.check import check_member
from circhub.tasks.onboarding.prepare import prepare_member
from tests.conftest import MARIADB_ADMIN
from tests.member_databases import member_database
from tests.writeback import BOOK, A, B, C, commands, item_row, push, reader, sync

# `check` and `prepare` work on the member under its Prefect slot (flows.slots).
pytestmark = pytest.mark.usefixtures("prefect_server")

KOHA_BRANCH_KEYS = (
    ("items", "holdingbranch"), ("branchtransfers", "frombranch"), ("branchtransfers", "tobranch"))
TOUCHED = ("items", "issues", "old_issues", "branchtransfers", "branches")


# Koha's close_loan: its items update is step 4 (Koha's 'return' statistics row is step 3); the
# stand-in category and patron the simulator seeds count among the objects already there.
def as_real_koha(world, member: str) -> None:
    """The member's Koha knows only its own branch, and keeps Koha's foreign keys to it."""
    with world.desks[member].engine.begin() as conn:
        conn.execute(text("DELETE FROM branches WHERE branchcode <> :m"), {"m": member})
        for table, column in KOHA_BRANCH_KEYS:
            conn.execute(text(f"ALTER TABLE {table} ADD FOREIGN KEY ({column}) "
                              "REFERENCES branches (branchcode)"))


def returned_unprepared(world, at: str) -> None:
    """A's book lent at A and returned at another member, before A was prepared."""
    as_real_koha(world, A)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, at)


@pytest.fixture(autouse=True)
def _id_key(monkeypatch):
    """The CLI commands refuse to start without a reader-ID key."""
    monkeypatch.setenv("CIRCHUB_ID_KEY", "a-test-key-of-enough-length-0123456789")


def fingerprint(world, member: str) -> dict:
    """Row count and MariaDB's checksum of every table a write-back or prepare touches."""
    with world.desks[member].engine.connect() as conn:
        return {t: (conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one(),
                    conn.execute(text(f"CHECKSUM TABLE {t}")).one()[1]) for t in TOUCHED}


def _check(consortium, code: str, **kw):
    """As `circhub check` runs it: under the member's hold (here without Prefect)."""
    with holding(code):
        return check_member(consortium, code, **kw)


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_check_names_the_missing_branches_prepare_creates_them_once_then_check_is_ready(
        koha):
    world, config = koha
    as_real_koha(world, A)
    world.checkout(BOOK, A, reader(world, A))  # an open loan to rehearse close_loan on
    consortium = load_config(config)
    before = fingerprint(world, A)

    report = _check(consortium, A)

    assert not report.ready
    assert report.missing == [f"consortium branch {B} for member {B} (Chongqing Library)",
                              f"consortium branch {C} for member {C} (Chengdu Public Library)"]
    lacks, *refused = report.reasons
    assert lacks.startswith("its ILS lacks 2 object(s) the write-backs need: consortium "
                            f"branch {B} for member {B}")
    assert lacks.endswith(f"run `circhub prepare {A}`")
    missing_branch = (f"member {A}'s Koha has no consortium branch '{B}' "
                      f"(items.holdingbranch → branches); run `circhub prepare {A}`")
    assert [r.what.split(" of ")[0] for r in report.rehearsals] == [
        "close_loan", "set_item", "set_item", "transfer", "transfer_arrived"]
    assert all(r.problem for r in report.rehearsals)
    assert any(f"write-back 'close_loan' step 4 (update items): {missing_branch}" in r
               for r in refused), refused
    assert any("transfer" in r and "branchtransfers.tobranch → branches" in r for r in refused)
    assert fingerprint(world, A) == before  # the rehearsal left no trace

    dry = cli("prepare", A, "--dry-run", "-c", str(config))
    assert dry.exit_code == 0, dry.output
    assert f"would create: consortium branch {C} for member {C}" in dry.output
    assert fingerprint(world, A) == before

    first = cli("prepare", A, "-c", str(config))
    again = cli("prepare", A, "-c", str(config))

    assert first.exit_code == 0, first.output
    assert f"created: consortium branch {B} for member {B} (Chongqing Library)" in first.output
    assert f"member {A} (koha): created 0 object(s), 4 already there" in again.output
    assert world.desks[A].engine.connect().execute(
        text("SELECT COUNT(*) FROM branches")).scalar_one() == 3
    ready = _check(load_config(config), A)
    assert ready.ready, ready.lines()
    assert [r.problem for r in ready.rehearsals] == [None] * 5


def test_after_prepare_the_first_push_applies_at_the_owner(koha):
    world, config = koha
    as_real_koha(world, A)
    consortium = load_config(config)
    prepare_member(consortium, consortium.member(A), world.desks[A].engine)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)  # a cross return: A's Koha must show its book held at B

    reports = push(sync(config))

    assert reports[A].applied and not reports[A].errors, reports[A].errors
    assert item_row(world, A, BOOK).holdingbranch == B


def test_a_refused_write_back_makes_push_exit_non_zero_naming_the_missing_branch(
        koha, prefect_server):
    world, config = koha
    returned_unprepared(world, B)
    sync(config)

    pushed = cli("push", "-c", str(config))

    assert pushed.exit_code == 1, pushed.output
    said = " ".join(pushed.output.split())
    assert (f"{A}: member {A}: close_loan {BOOK}: profile 'koha' write-back 'close_loan' step 4 "
            f"(update items): member {A}'s Koha has no consortium branch '{B}' "
            f"(items.holdingbranch → branches); run `circhub prepare {A}`") in said
    status = cli("status", "-c", str(config))
    assert status.exit_code == 1  # a foreign key comes back every time: dead at once
    assert f"{A}: 1 write-back(s) dead-lettered" in " ".join(status.output.split())
    rt = open_runtime(str(config))
    [dead] = commands(rt, BOOK, target=A, kind="close_loan")
    assert f"Koha has no consortium branch '{B}'" in dead.last_error

    assert cli("prepare", A, "-c", str(config)).exit_code == 0
    assert cli("outbox", "retry", "--member", A, "-c", str(config)).exit_code == 0
    assert push(rt)[A].applied == 1
    [closed] = commands(rt, BOOK, target=A, kind="close_loan")
    assert (closed.status, closed.last_error) == ("applied", None)
    applied = cli("outbox", "list", "--status", "applied", "-c", str(config))
    assert applied.exit_code == 0
    assert "prepare" not in applied.output  # the old error is gone once applied
    assert cli("status", "-c", str(config)).exit_code == 0


def test_evergreen_check_names_the_org_unit_its_lookup_cannot_find_and_prepare_adds_it(request):
    url = member_database(request, "postgresql")
    desk = EvergreenDesk(engine_for(url), "AA001")
    desk.create_schema({"AA001": "Alpha"})  # no org unit for the other member
    card = make_id_number(random.Random(5), "Chengdu")[0]
    people = desk.add_readers([{"cardnumber": card, "surname": "Wang", "firstname": "Fang",
                                "dateofbirth": None, "sex": "F", "dateenrolled": None}])
    desk.add_items(["AA0010000001", "AA0010000002"], datetime(2026, 10, 1))
    desk.checkout("AA0010000001", people[0], datetime(2026, 10, 1), datetime(2026, 10, 29))
    consortium = parse_config({"consortium": {"name": "test", "demo": True}, "members": [
        {"code": "AA001", "name": "Alpha", "profile": "evergreen", "connection": url},
        {"code": "BB002", "name": "Beta", "profile": "koha",
         "connection": "mysql+pymysql://root@127.0.0.1:1/none"}]})

    report = _check(consortium, "AA001")

    assert not report.ready
    assert any("found nothing in actor.org_unit where shortname = 'BB002': member AA001's "
               "Evergreen has no consortium org unit 'BB002'; run `circhub prepare AA001`" in r
               for r in report.reasons), report.reasons
    created = prepare_member(consortium, consortium.member("AA001"), engine_for(url))
    assert created.created == ["consortium org unit BB002 for member BB002 (Beta)"]
    assert _check(consortium, "AA001").ready


def polaris_before_onboarding(request) -> str:
    """A Polaris-style member with a branch for BB002 but none for CC003, and no consortium
    stand-in (as a real member's Polaris before `circhub prepare`), with a reader's open
    loan."""
    url = member_database(request, "odbc")
    desk = PolarisDesk(engine_for(url), "AA001")
    desk.create_schema({"AA001": "Alpha", "BB002": "Beta"})
    with desk.engine.begin() as conn:
        conn.execute(text('DELETE FROM "Polaris"."PatronRegistration" WHERE "PatronID" IN '
                          '(SELECT "PatronID" FROM "Polaris"."Patrons" '
                          """WHERE "Barcode" = 'CIRCHUB')"""))
        conn.execute(text("""DELETE FROM "Polaris"."Patrons" WHERE "Barcode" = 'CIRCHUB'"""))
        conn.execute(text("""DELETE FROM "Polaris"."PatronCodes" """
                          """WHERE "Description" = 'CIRCHUB'"""))
    card = make_id_number(random.Random(5), "Chengdu")[0]
    people = desk.add_readers([{"cardnumber": card, "surname": "Wang", "firstname": "Fang",
                                "dateofbirth": None, "sex": "F", "dateenrolled": None}])
    desk.add_items(["AA0010000001", "AA0010000002"], datetime(2026, 10, 1))
    desk.checkout("AA0010000001", people[0], datetime(2026, 10, 1), datetime(2026, 10, 29))
    return url


def test_polaris_check_names_the_branch_and_stand_in_prepare_creates_them_once(request):
    url = polaris_before_onboarding(request)
    consortium = parse_config({"consortium": {"name": "test", "demo": True}, "members": [
        {"code": "AA001", "name": "Alpha", "profile": "polaris", "connection": url},
        *({"code": code, "name": name, "profile": "koha",
           "connection": "mysql+pymysql://root@127.0.0.1:1/none"}
          for code, name in (("BB002", "Beta"), ("CC003", "Gamma")))]})

    report = _check(consortium, "AA001")  # rehearsed with BB002 as the holder

    assert not report.ready
    assert report.missing == [
        "consortium branch CC003 for member CC003 (Gamma)",
        "patron code CIRCHUB (consortium stand-in)",
        "stand-in patron CIRCHUB (this member's books lent at other members)",
        "registration of the stand-in patron CIRCHUB"]
    assert any("look-up 'stand_in' found nothing in Polaris.Patrons where Barcode = 'CIRCHUB'"
               in r and "run `circhub prepare AA001`" in r for r in report.reasons), \
        report.reasons
    created = prepare_member(consortium, consortium.member("AA001"), engine_for(url))
    assert created.created == report.missing
    again = prepare_member(consortium, consortium.member("AA001"), engine_for(url))
    assert (again.created, len(again.present)) == ([], 5)
    ready = _check(consortium, "AA001")
    assert ready.ready, ready.lines()
    # the stand-in is no reader: the sample and the backfill leave it out
    assert ready.backfill_rows["readers"] == 1


def test_check_names_a_write_the_hubs_login_may_not_do(koha, mariadb_db):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    url = make_url(load_config(config).member(A).connection)
    user = f"circhub_ro_{url.database[-10:]}"
    admin = engine_for(MARIADB_ADMIN)
    with admin.begin() as conn:  # a login that may read the member's Koha, and only read
        conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"))
        conn.execute(text(f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'%'"))
    try:
        read_only = url.set(username=user, password="pw").render_as_string(hide_password=False)
        config.write_text(config.read_text().replace(str(url.render_as_string(
            hide_password=False)), read_only))

        report = _check(load_config(config), A)

        assert not report.ready
        assert any(f"the hub's database login at member {A} may not INSERT old_issues; "
                   "grant it" in r for r in report.reasons), report.reasons
        assert any("may not UPDATE items; grant it" in r for r in report.reasons)
    finally:
        engine_for(read_only).dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))


def test_a_prepare_object_with_a_parameter_its_loop_does_not_give_is_refused_at_load():
    data = tomllib.loads((PROFILE_DIR / "koha.toml").read_text())
    data["prepare"][0]["for_each"] = "member"  # ":branch" and "{code}" belong to the loop

    with pytest.raises(ProfileError, match=r"profile 'koha' prepare 1: describe uses 'branch'"):
        parse_profile("koha", data)
    data["prepare"][0]["describe"] = "the member's own branch {member_branch}"
    with pytest.raises(ProfileError, match=r"unknown parameter\(s\) \['branch', 'name'\]"):
        parse_profile("koha", data)


def test_a_sync_whose_push_is_refused_exits_non_zero_naming_member_command_and_step(
        koha, prefect_server):
    world, config = koha
    returned_unprepared(world, C)

    synced = cli("sync", "-c", str(config))

    assert synced.exit_code == 1, synced.output
    said = " ".join(synced.output.split())
    assert "1 member(s) need a person" in said
    assert (f"write-back 'close_loan' step 4 (update items): member {A}'s Koha has no "
            f"consortium branch '{C}'") in said
