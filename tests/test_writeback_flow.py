"""The push flow on a real Prefect server publishes what needs a person: dead letters, open
circulation exceptions, and the dry run of a member with write-back off (Koha members on real
MariaDB, the central store on real PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from circhub.flows.push import push_writebacks
from tests.helpers import consortium_settings
from tests.writeback import BOOK, A, B, C, reader, sync

pytestmark = pytest.mark.usefixtures("prefect_server")
OTHER = "SC0010000002"


def _artifact(key: str) -> list[dict]:
    from prefect.artifacts import Artifact

    data = Artifact.get(key).data
    return json.loads(data) if isinstance(data, str) else data




def test_the_push_flow_publishes_dead_letters_exceptions_and_dry_runs(koha):
    world, config = koha
    onboarding = f'code = "{C}"\nwriteback = false\n'
    config.write_text(config.read_text().replace(f'code = "{C}"\n', onboarding))
    consortium_settings(config, writeback_max_attempts=1)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)  # A is owed a close_loan: A's ILS refuses it below
    world.checkout(OTHER, A, reader(world, A))
    world.checkin(OTHER, C)  # C holds it; a transfer home would go to C, which is onboarding
    world.desks[C].checkin("SC0010000003", world.tick())  # a book not on loan scanned at C
    with world.desks[A].engine.begin() as conn:
        conn.execute(text("CREATE TRIGGER circhub_test_lock BEFORE UPDATE ON items FOR EACH "
                          f"ROW BEGIN IF NEW.barcode = '{BOOK}' THEN SIGNAL SQLSTATE '45000' "
                          "SET MESSAGE_TEXT = 'item locked for inventory'; END IF; END"))
    sync(config)
    rt = sync(config, [A])  # A's data is in: the scan at C is a real exception now
    from circhub.tasks.circulation.transfers import request_transfer

    request_transfer(rt.store, rt.consortium, OTHER, at=world.tick())

    push_writebacks(config=str(config))

    [dead] = _artifact("outbox-dead-letters")
    assert (dead["member"], dead["barcode"]) == (A, BOOK)
    assert "item locked for inventory" in dead["last error"]
    [held] = _artifact("circulation-exceptions")
    assert (held["barcode"], held["reason"]) == ("SC0010000003", "return_not_on_loan")
    [dry] = _artifact("outbox-dry-run")
    assert (dry["member"], dry["kind"], dry["barcode"]) == (C, "transfer", OTHER)
    assert dry["steps"] == "insert_missing branchtransfers"
