"""No resident ID number in clear anywhere a sync writes: every column of every central table,
the logs and artifacts of a real Prefect flow run (read back through the Prefect API), the
flow's and tasks' stored parameters and states, the console, the quarantine. Bad rows of every
kind are among the readers, and each lands in quarantine with the specific rule it broke.
Koha members on MariaDB, central store on PostgreSQL, a real Prefect server."""

from __future__ import annotations

import logging
import re
from datetime import date

import pytest
from sqlalchemy import select, text

from circhub.domain.identity import (
    check_character,
    looks_like_id_number,
    normalize_id_number,
    upgrade_15_to_18,
)
from circhub.domain.schema import quarantine, reader_accounts
from circhub.flows.sync import sync_consortium
from tests.conftest import MARIADB_ADMIN, PG_ADMIN, DatabaseFactory
from tests.helpers import flow_run_record, koha_consortium
from tests.store_scan import store_texts

# A hex digest (reader key, row hash, UUID part) can hold a run of 15+ decimal digits by chance;
# such tokens are checked against the known numbers instead of the shape scanner.
HEX_TOKEN = re.compile(r"\b(?=[0-9a-f]*[a-f])[0-9a-f]{16,64}\b")


def _id(area: str, born: str, seq: str) -> str:
    return area + born + seq + check_character(area + born + seq)


def _typo_in_check(body: str) -> str:
    return body + ("0" if check_character(body) != "0" else "1")


def _ending_in_x() -> str:
    """A valid number whose check character is X, typed with a lowercase x."""
    body = next(b for b in (f"51010419700101{n:03d}" for n in range(1000))
                if check_character(b) == "X")
    return body + "x"


ODD_CARDS = [
    _id("510104", "19990230", "123"),  # 30 February: id_birth_date
    _id("990104", "19800101", "123"),  # no province 99: id_area_code
    _typo_in_check("51010419800101124"),  # id_check_digit
    "E12345678",  # a passport: id_format_unverifiable, a person must look at it
    "510104800101127",  # legacy 15-digit number: accepted, upgraded
    _ending_in_x(),  # accepted, upper-cased
]


@pytest.fixture(scope="module")
def synced(tmp_path_factory, prefect_server):
    """One real consortium sync for the whole module (a flow run costs seconds)."""
    pg, mariadb = DatabaseFactory(PG_ADMIN, '"'), DatabaseFactory(MARIADB_ADMIN, "`")
    console = _LocalRecords()
    logging.getLogger("prefect").addHandler(console)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CIRCHUB_ID_KEY", "privacy-test-key-0123456789abcdef")
            yield _sync_once(tmp_path_factory.mktemp("privacy"), pg, mariadb, console)
    finally:
        logging.getLogger("prefect").removeHandler(console)
        pg.drop_all()
        mariadb.drop_all()


class _LocalRecords(logging.Handler):
    """Everything Prefect logs in this process, as the console would show it."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _sync_once(tmp, pg, mariadb, console):
    world, config = koha_consortium(tmp, [mariadb() for _ in range(3)], pg(), readers=8,
                                    items=6, bad_readers=2, demo=False)
    odd = _add_odd_readers(next(iter(world.desks.values())))
    world.play(days=3, actions_per_day=20)
    state = sync_consortium(config=str(config), return_state=True)
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # the API handler sends in batches
    return state, config, _every_number(world, odd), "\n".join(console.lines)


def _add_odd_readers(desk) -> list[str]:
    """Rows a real ILS holds, straight into member A's borrowers table."""
    duplicate = _id("510105", "19900505", "246")
    flagged = _id("510107", "19850303", "135")  # male, born 1985-03-03
    with desk.engine.begin() as conn:
        conn.execute(text("ALTER TABLE borrowers DROP INDEX cardnumber"))  # some ILS allow it
    rows = [{"cardnumber": card} for card in ODD_CARDS]
    rows += [{"cardnumber": None}, {"cardnumber": duplicate}, {"cardnumber": duplicate}]
    rows += [{"cardnumber": flagged, "dateofbirth": date(1985, 3, 4), "sex": "F"}]
    desk.add_readers([{"surname": "Odd", "firstname": "Reader", **r} for r in rows])
    return [r["cardnumber"] for r in rows if r["cardnumber"]]


def _every_number(world, odd: list[str]) -> list[str]:
    """Every number handed to the hub (every card in every member's ILS, typos included), in
    each spelling that could leak."""
    from circhub.simulator import koha

    raw = {p.id_number for p in world.people} | set(odd)
    for desk in world.desks.values():
        with desk.engine.connect() as conn:
            raw |= {c for c in conn.execute(select(koha.borrowers.c.cardnumber)).scalars() if c}
    spellings = raw | {normalize_id_number(n) for n in raw}
    spellings |= {upgrade_15_to_18(n) for n in spellings if len(n) == 15 and n.isascii()}
    return sorted(spellings)


def _leaks(texts, numbers) -> list[str]:
    """Where a known number appears, or anything shaped like one outside a hex digest."""
    found = []
    for where, value in texts:
        if any(n in value or n.lower() in value for n in numbers):
            found.append(f"{where}: a known ID number")
        elif looks_like_id_number(HEX_TOKEN.sub("#", value)):
            found.append(f"{where}: ID-shaped text")
    return found


def test_the_scanner_would_see_every_id_number_that_was_handed_over(synced):
    from circhub.simulator import koha

    _, _, numbers, _ = synced
    system = {koha.STAND_IN, koha.STAFF, koha.STATISTICAL, koha.ANONYMOUS}  # shipped accounts
    ids = [n for n in numbers if n != "E12345678" and n.upper() not in
           {c.upper() for c in system}]
    assert len(ids) > 30 and all(looks_like_id_number(f"x {n} y") for n in ids)
    assert _leaks([("planted", f"row {ids[0]}")], numbers)  # known, so found
    assert _leaks([("planted", "owner 11010519491231002X")], [])  # unknown, ID-shaped
    assert not _leaks([("hash", "ab" + "1" * 30 + "cd")], [])  # a digest's digit run


def test_no_central_table_column_holds_an_id_number_in_clear(synced):
    state, config, numbers, _ = synced
    from circhub.connections.runtime import open_runtime

    rt = open_runtime(str(config))
    texts = [(f"{t}.{c}", v) for t, c, v in store_texts(rt.store)]
    assert {w.split(".")[0] for w, _ in texts} >= {"readers", "reader_accounts", "quarantine",
                                                    "loans", "sync_runs"}
    assert _leaks(texts, numbers) == []


def test_no_prefect_log_artifact_parameter_or_state_holds_an_id_number(synced):
    state, _, numbers, console = synced
    logs, artifacts, runs = _read_back(state.state_details.flow_run_id)

    assert any("quarantined" in log.message for log in logs)  # the risky lines were written
    assert "quarantined" in console
    assert any(a.key == "sync-summary" for a in artifacts)
    texts = [(f"log {log.name}", log.message) for log in logs]
    texts += [(f"artifact {a.key}", a.model_dump_json()) for a in artifacts]
    texts += [(f"run {r.name}", r.model_dump_json()) for r in runs]
    texts += [("console", console)]
    assert _leaks(texts, numbers) == []


def _read_back(flow_run_id):
    record = flow_run_record(flow_run_id)
    return record.logs, record.artifacts, [record.run, *record.tasks.values()]


def test_each_bad_reader_row_is_quarantined_with_the_specific_rule_and_the_rest_proceed(synced):
    state, config, _, _ = synced
    from circhub.connections.runtime import open_runtime

    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        held = conn.execute(select(quarantine.c.rules, quarantine.c.row_masked).where(
            quarantine.c.entity == "readers")).all()
        flags = conn.execute(select(reader_accounts.c.flag).where(
            reader_accounts.c.flag.is_not(None))).scalars().all()
    rules = sorted(tuple(r) for r, _ in held)
    assert ("id_number_valid", "id_birth_date") in rules
    assert ("id_number_valid", "id_area_code") in rules
    assert rules.count(("id_number_valid", "id_check_digit")) == 3  # 2 simulated typos + 1
    assert ("id_number_valid", "id_format_unverifiable") in rules
    assert ("card_number_present", "id_number_valid", "id_empty") in rules
    assert rules.count(("card_number_unique",)) == 2  # both holders of the card: a person decides
    assert len(held) == 9
    assert all(not row["id_masked"] or "*" in row["id_masked"] for _, row in held)
    assert flags == ["birth_date_mismatch,sex_mismatch"]  # accepted, linked, flagged
    assert state.is_completed()


def _rebuildable(records, numbers) -> list[str]:
    """Records that show a number's mask together with the digits the mask hides (the
    birth date, in any spelling): from that one record the whole number can be rebuilt."""
    found = []
    for number in {n for n in numbers if len(n) == 18 and n[:17].isdigit()}:
        mask = number[:6] + "*" * 8 + number[-4:]
        born = number[6:14]
        spellings = {born, f"{born[:4]}-{born[4:6]}-{born[6:]}",
                     f"{born[:4]}/{born[4:6]}/{born[6:]}"}
        found += [f"{where}: the mask of a number beside its birth date"
                  for where, text in records
                  if mask in text and any(s in text for s in spellings)]
    return found


def _store_rows(store):
    from sqlalchemy import MetaData

    reflected = MetaData()
    reflected.reflect(store)
    with store.connect() as conn:
        for table in reflected.sorted_tables:
            for i, row in enumerate(conn.execute(select(table))):
                yield f"{table.name} row {i}", " | ".join(str(v) for v in row)


def _cli_lines(config) -> list[tuple[str, str]]:
    from typer.testing import CliRunner

    from circhub.cli import app

    lines = []
    for args in (["quarantine"], ["reader", "review", "-c", str(config)]):
        out = CliRunner().invoke(app, args, env={"CIRCHUB_CONFIG": str(config)}).output
        lines += [(f"circhub {' '.join(args[:2])} line {i}", line)
                  for i, line in enumerate(out.splitlines())]
    return lines


def test_no_one_record_shows_a_mask_with_the_digits_it_hides(synced):
    """A masked number is shown only without its holder's birth date (the eight digits the
    mask hides): no central row, CLI line, log line or artifact row rebuilds one."""
    state, config, numbers, console = synced
    from circhub.connections.runtime import open_runtime

    rt = open_runtime(str(config))
    logs, artifacts, _ = _read_back(state.state_details.flow_run_id)
    records = list(_store_rows(rt.store))
    records += [(f"log {log.name}", log.message) for log in logs]
    records += [(f"artifact {a.key} row {i}", str(row)) for a in artifacts
                if isinstance(a.data, list) for i, row in enumerate(a.data)]
    records += [("console line", line) for line in console.splitlines()]
    records += _cli_lines(config)
    assert any("*" * 8 in text for _, text in records)  # masks were shown somewhere
    assert _rebuildable(records, numbers) == []
    planted = numbers[0] if len(numbers[0]) == 18 else numbers[1]
    record = (planted[:6] + "*" * 8 + planted[-4:] + f" born {planted[6:10]}-{planted[10:12]}-"
              f"{planted[12:14]}")
    assert _rebuildable([("planted", record)], [planted])  # the check can see one
