"""Alerts: Prefect events from the flows, automations created by circhub that notify a webhook.

The webhook is a real HTTP server in the test; the Prefect server's own trigger and action
services deliver to it, as they would to Slack or a team's alert endpoint.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from prefect import get_client
from prefect.automations import Automation
from sqlalchemy import insert

from circhub.connections.runtime import open_runtime
from circhub.domain.schema import outbox
from circhub.flows.alerts import (
    DEAD_EVENT,
    STALE_EVENT,
    alert_block_id,
    automations,
    ensure_automations,
    save_alert_webhook,
)
from circhub.tasks.reporting.status import Staleness
from tests.helpers import koha_consortium

pytestmark = pytest.mark.usefixtures("prefect_server")
DOWN = "mysql+pymysql://root@127.0.0.1:1/not_there"  # nothing listens on port 1
QUIET_FLOW = "circhub-test-flow-that-never-runs"


class Inbox(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        Inbox.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def webhook():
    Inbox.received = []
    server = HTTPServer(("127.0.0.1", 0), Inbox)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", Inbox.received
    server.shutdown()
    for auto in automations(Staleness()):  # the session's server outlives this test
        with contextlib.suppress(ValueError):
            Automation.read(name=auto.name).delete()
    with get_client(sync_client=True) as client:
        client.delete_block_document(alert_block_id())


def _wait_for(received: list[dict], *needles: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        texts = [m["text"] for m in received]
        if all(any(n in t for t in texts) for n in needles):
            return texts
        time.sleep(0.5)
    raise AssertionError(f"no notification with {needles} in {[m['text'] for m in received]}")


def _events(name: str, since: datetime, timeout: float = 30) -> list[dict]:
    """Events as the API serves them (the server persists them in batches, hence the wait);
    only this test's: the session's server has seen other tests' flows."""
    deadline = time.monotonic() + timeout
    query = {"filter": {"event": {"name": [name]},
                        "occurred": {"since": since.isoformat()}}, "limit": 50}
    with get_client(sync_client=True) as client:
        while True:
            found = client.request("POST", "/events/filter", json=query).json()["events"]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def test_a_stale_member_dead_letters_and_a_silent_schedule_notify_the_alert_webhook(
        tmp_path, webhook):
    from circhub.flows.push import push_writebacks
    from circhub.flows.sync import sync_consortium

    url, received = webhook
    started = datetime.now(UTC)
    save_alert_webhook(url)
    # Watching a flow that never runs, over 10 s, makes the proactive automation fire here.
    stored = ensure_automations(Staleness(interval_seconds=10, intervals=1), QUIET_FLOW)
    assert all(a.actions[0].type == "send-notification" for a in stored)
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db")
    world.play(days=3, actions_per_day=15)
    down = list(world.desks)[2]
    config.write_text(config.read_text().replace(members[2], DOWN))

    assert sync_consortium(config=str(config), return_state=True).is_failed()
    rt = open_runtime(str(config))
    owed = list(world.desks)[0]
    with rt.store.begin() as conn:  # a write-back that failed its last attempt
        conn.execute(insert(outbox).values(
            target=owed, command_key="test:dead", kind="set_item", barcode=f"{owed}0000001",
            payload={"holder": owed}, status="dead", attempts=5,
            last_error="OperationalError: gone", created_at=datetime.now()))
    push_writebacks(config=str(config))

    texts = _wait_for(received, f"circhub.member.{down}: never synced",
                      f"circhub.member.{owed}: 1 write-back(s) dead-lettered",
                      f"no {QUIET_FLOW} run finished")
    assert not any(f"circhub.member.{code}: never" in t for t in texts
                   for code in world.desks if code != down)
    stale = _events(STALE_EVENT, started)
    assert {e["resource"]["prefect.resource.id"] for e in stale} == {f"circhub.member.{down}"}
    assert stale[0]["payload"]["last_error"].startswith(f"member {down}")
    assert [e["payload"]["dead"] for e in _events(DEAD_EVENT, started)] == [1]


def test_ensure_automations_updates_in_place_and_falls_back_to_the_event_feed_without_a_block():
    first = ensure_automations(Staleness())
    again = ensure_automations(Staleness(interval_seconds=60))
    try:
        assert [a.id for a in first] == [a.id for a in again]
        assert all(a.actions[0].type == "do-nothing" for a in again)
        silent = Automation.read(name="circhub: consortium sync silent")
        assert silent.trigger.within.total_seconds() == 180
    finally:
        for auto in again:
            auto.delete()
