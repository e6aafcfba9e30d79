"""How runs read in the Prefect UI: names that say what and when, tags a data engineer filters by.

A run list of `sync-consortium-2026-11-25T10:05` and task runs tagged `member:CD001`,
`region:Chengdu`, `ils:koha`, `level:county` answers "which Koha members in Chengdu failed
this morning" with the UI's own filters.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

from prefect import tags

from connections.config import Member
from connections.runtime import Runtime


def timed_name(prefix: str) -> str:
    return f"{prefix}-{datetime.now():%Y-%m-%dT%H:%M}"


def member_tags(member: Member) -> list[str]:
    found = [f"member:{member.code}", f"ils:{member.profile}", f"level:{member.level}"]
    if member.region:
        found.append(f"region:{member.region}")
    return found


def tagged(rt: Runtime, code: str) -> AbstractContextManager:
    """Tags for the task runs submitted inside, from the member's entry in the config."""
    return tags(*member_tags(rt.consortium.member(code)))


def push_run_name() -> str:
    return timed_name("push-writebacks")


def report_run_name() -> str:
    return timed_name("daily-report")
