"""One hub process, as a deployment starts it: `python -m chaos.entry RUN CONFIG [MEMBER SINCE]`.

Each runs the flow its deployment's entrypoint names (deployments/prefect.yaml), in a process
of its own, against the harness's Prefect server: the sync of every member (which pushes
after merging), the push alone, the reconcile of every member, a backfill of one member's
items. The exit code is the flow's: 0 when it completed.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    run, config = argv[0], argv[1]
    if run == "sync":
        from circhub.flows.sync import sync_consortium

        state = sync_consortium(config=config, return_state=True)
    elif run == "push":
        from circhub.flows.push import push_writebacks

        state = push_writebacks(config=config, return_state=True)
    elif run == "reconcile":
        from circhub.flows.reconcile import reconcile

        state = reconcile(config=config, return_state=True)
    elif run == "backfill":
        from circhub.flows.backfill import backfill

        state = backfill(member=argv[2], entity="items", since=argv[3], config=config,
                         return_state=True)
    else:
        print(f"chaos.entry: unknown run {run!r}", file=sys.stderr)
        return 2
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
