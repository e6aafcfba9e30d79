"""Rules over the members together, which no single `[[members]]` table can break alone:
codes and barcode prefixes are unique, branch maps name members of the consortium, and members
sharing an ILS instance divide its branches between them.

Each problem names the member (by code), the field and the value, like the fields' own errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from circhub.connections.members import Member


def roster_problems(members: Sequence[Member]) -> list[str]:
    return [*_duplicates(members), *_branch_map_problems(members), *_instance_problems(members)]


def _duplicates(members: Sequence[Member]) -> list[str]:
    errors = []
    code_seen: set[str] = set()
    prefix_owner: dict[str, str] = {}
    for m in members:
        if m.code in code_seen:
            errors.append(f"member {m.code}: field 'code': duplicate member code")
        code_seen.add(m.code)
        # One barcode, one owner: a prefix shared would make the owner a guess.
        owner = prefix_owner.setdefault(m.barcode_prefix, m.code)
        if owner != m.code:
            errors.append(f"member {m.code}: field 'barcode_prefix': {m.barcode_prefix!r} is "
                          f"{owner}'s too")
    return errors


def _branch_map_problems(members: Sequence[Member]) -> list[str]:
    """A branch mapped to a code no member has would make rows held by nobody."""
    codes = {m.code for m in members}
    return [f"member {m.code}: field 'branches.{branch}': no member {code!r} in the config"
            for m in members for branch, code in m.branches.items() if code not in codes]


def _instance_problems(members: Sequence[Member]) -> list[str]:
    """Members sharing an instance: same profile, at least one branch each, none claimed twice."""
    errors = []
    owner_of: dict[tuple[str, str], str] = {}
    profiles: dict[str, str] = {}
    for m in (m for m in members if m.instance):
        label = f"member {m.code}: field 'instance'"
        if not m.own_branches():
            errors.append(f"{label}: list its own ILS branch codes in 'branches' (code -> "
                          f"{m.code}), or it would extract nothing")
        if profiles.setdefault(m.instance, m.profile) != m.profile:
            errors.append(f"{label}: instance {m.instance!r} is used with two profiles")
        for branch in m.own_branches():
            other = owner_of.setdefault((m.instance, branch), m.code)
            if other != m.code:
                errors.append(f"{label}: branch {branch!r} is claimed by {other} too")
    return errors
