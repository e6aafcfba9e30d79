"""Alerts a data engineer sees: Prefect events from the flows, automations that notify.

Events, emitted from the central store (the same rows `circhub status` prints) at the end of
every consortium sync (both kinds) and push run (dead letters), one per member needing a person:

- `circhub.member.stale`: the member's last good sync is older than N sync intervals;
- `circhub.member.sync-failed`: the member failed in this sync run (its one-line cause), and
  `circhub.member.failing` once it has failed `CIRCHUB_ALERT_AFTER_FAILURES` (3) runs in a row;
- `circhub.writeback.dead-lettered`: write-backs to the member were given up on.

Their resource is `circhub.member.<CODE>`, so the UI's event feed filters by member.
Automations, created or updated through the API by `ensure_automations` (at serve/deploy):

- "circhub: member not synced", "circhub: member failing" and "circhub: write-backs
  dead-lettered" react to those events, at most once per member per hour (a member down all
  night is one message an hour, not 12);
- "circhub: consortium sync silent" is proactive: no sync-consortium run finished within N
  intervals (worker down, schedule paused) - the case where nothing runs to emit events.

Each sends to the notification block named `circhub-alerts` when one exists (any kind: Slack,
Teams, a webhook - `circhub serve --alert-webhook URL` makes a webhook one); without it the
automation still fires and shows in the UI's event feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from prefect import get_client, get_run_logger
from prefect.automations import (
    Automation,
    DoNothing,
    EventTrigger,
    Posture,
    SendNotification,
)
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events import emit_event

from circhub.connections.runtime import Runtime
from circhub.tasks.reporting.status import MemberStatus, Staleness, member_statuses

STALE_EVENT = "circhub.member.stale"
FAILED_EVENT = "circhub.member.sync-failed"
FAILING_EVENT = "circhub.member.failing"
DEAD_EVENT = "circhub.writeback.dead-lettered"
ALERT_BLOCK = "circhub-alerts"
RESOURCE_PREFIX = "circhub.member."
REPEAT_AFTER = timedelta(hours=1)


def member_resource(s: MemberStatus) -> dict[str, str]:
    return {"prefect.resource.id": f"{RESOURCE_PREFIX}{s.code}",
            "prefect.resource.name": f"{s.code} {s.name}",
            "circhub.region": s.region, "circhub.level": s.level}


def raise_alerts(rt: Runtime, rule: Staleness | None = None, stale: bool = True,
                 failed: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Emit one event per member that needs a person; returns (event, member) pairs.

    The push flow passes `stale=False`: freshness is the sync's to judge (a push every minute
    right after start would otherwise call every member "never synced"). `failed`: the members
    that failed in this sync run.
    """
    rule = rule or Staleness.from_env()
    sent = []
    for s in member_statuses(rt.store, rt.consortium):
        if s.code in failed:
            sent += _failure_events(s, rule)
        if stale and s.stale(rule):
            _emit(STALE_EVENT, s, {"problem": s.staleness(), "last_error": s.last_error,
                                   "lag_seconds": s.lag.total_seconds() if s.lag else None,
                                   "threshold_seconds": rule.limit.total_seconds()})
            sent.append((STALE_EVENT, s.code))
        if s.dead:
            _emit(DEAD_EVENT, s, {"problem": f"{s.dead} write-back(s) dead-lettered",
                                  "dead": s.dead, "pending": s.pending})
            sent.append((DEAD_EVENT, s.code))
    return sent


def _failure_events(s: MemberStatus, rule: Staleness) -> list[tuple[str, str]]:
    """The failed run's event (the event feed), and the alert once it has failed N in a row.
    Not logged here: the run's message and the member's red task run already say it."""
    payload = {"problem": f"sync failed: {s.last_error}", "last_error": s.last_error,
               "failures_in_a_row": s.failures_in_a_row}
    emit_event(FAILED_EVENT, resource=member_resource(s), payload=payload)
    sent = [(FAILED_EVENT, s.code)]
    if s.failures_in_a_row >= rule.failures:
        _emit(FAILING_EVENT, s, {**payload, "problem": f"{s.failures_in_a_row} sync runs "
                                 f"failed in a row: {s.last_error}"})
        sent.append((FAILING_EVENT, s.code))
    return sent


def _emit(event: str, s: MemberStatus, payload: dict) -> None:
    get_run_logger().warning("alert %s: member %s: %s", event, s.code, payload["problem"])
    emit_event(event, resource=member_resource(s), payload=payload)


def save_alert_webhook(url: str) -> None:
    """A webhook notification block named `circhub-alerts` (JSON: subject and text)."""
    CustomWebhookNotificationBlock(
        name="circhub", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"},
    ).save(ALERT_BLOCK, overwrite=True)


def alert_block_id() -> UUID | None:
    """The `circhub-alerts` block, whatever its kind (block names are unique per kind)."""
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/block_documents/filter", json={
            "block_documents": {"name": {"any_": [ALERT_BLOCK]}}, "include_secrets": False,
        }).json()
    return UUID(found[0]["id"]) if found else None


def automations(rule: Staleness, watched_flow: str = "sync-consortium") -> list[Automation]:
    member = {"prefect.resource.id": f"{RESOURCE_PREFIX}*"}
    per_member = {"prefect.resource.id"}
    body = "{{ event.resource.id }}: {{ event.payload.problem }}"
    return [
        _automation("circhub: member not synced", body, EventTrigger(
            expect={STALE_EVENT}, match=member, for_each=per_member, within=REPEAT_AFTER)),
        _automation("circhub: member failing", body, EventTrigger(
            expect={FAILING_EVENT}, match=member, for_each=per_member, within=REPEAT_AFTER)),
        _automation("circhub: write-backs dead-lettered", body, EventTrigger(
            expect={DEAD_EVENT}, match=member, for_each=per_member, within=REPEAT_AFTER)),
        _automation("circhub: consortium sync silent",
                    f"no {watched_flow} run finished in the last {rule.limit}: is a worker "
                    "polling the circhub work pool, and is the schedule active?",
                    EventTrigger(
                        expect={"prefect.flow-run.Completed", "prefect.flow-run.Failed"},
                        match_related={"prefect.resource.role": "flow",
                                       "prefect.resource.name": watched_flow},
                        posture=Posture.Proactive, threshold=1, within=rule.limit)),
    ]


def _automation(name: str, body: str, trigger: EventTrigger) -> Automation:
    return Automation(name=name, description=f"circhub alert: {body}", trigger=trigger,
                      actions=[DoNothing()], tags=["circhub"])


def ensure_automations(rule: Staleness | None = None,
                       watched_flow: str = "sync-consortium") -> list[Automation]:
    """Create or update circhub's automations (matched by name); returns them as stored."""
    rule = rule or Staleness.from_env()
    block = alert_block_id()
    stored = []
    for auto in automations(rule, watched_flow):
        if block:
            body = auto.description.removeprefix("circhub alert: ")
            auto.actions = [SendNotification(block_document_id=block, subject=auto.name,
                                             body=body)]
        stored.append(_upsert(auto))
    return stored


def _upsert(auto: Automation) -> Automation:
    try:
        existing = Automation.read(name=auto.name)
    except ValueError:
        return auto.create()
    auto.id = existing.id
    auto.update()
    return auto
