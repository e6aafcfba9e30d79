"""One member's push in a process of its own, so a fault test can SIGKILL it mid-push.

    python -m tests.push_runner CONFIG MEMBER
"""

from __future__ import annotations

import sys

from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime
from circhub.tasks.writeback.push import push_member


def main(config: str, member: str) -> int:
    rt = open_runtime(config)
    with holding(member):  # one member in one process: no Prefect limit to take
        report = push_member(rt.store, rt.consortium, rt.consortium.member(member))
    print(f"applied={report.applied} failed={report.failed}")
    return 0 if not report.errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
