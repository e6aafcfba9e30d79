"""A flow run that never finishes is not started again and again.

In the cluster topology (docs/scaling.md) an automation puts every crashed run back to
Scheduled, so that a live worker takes it over. A run that crashes each time (a worker killed
for memory on the same member, say) would go round that loop for ever, holding a worker and
the deployment's one concurrency slot. Prefect counts a run's attempts (`run_count`, one more
each time it starts running, whether after a crash or a retry): each circhub flow refuses
an attempt past MAX_ATTEMPTS, and the run ends Failed, which nothing reschedules.
"""

from __future__ import annotations

MAX_ATTEMPTS = 3


class TooManyAttempts(RuntimeError):
    """A flow run started again after MAX_ATTEMPTS that did not finish."""


def check_attempt(flow_name: str, run_count: int) -> None:
    if run_count > MAX_ATTEMPTS:
        raise TooManyAttempts(
            f"{flow_name}: this run is on attempt {run_count}; the {MAX_ATTEMPTS} before it did "
            "not finish (their logs in this run say why), so it is not started again. "
            "Start a new run once the cause is fixed.")


def refuse_endless_attempts() -> None:
    """Called first in every circhub flow."""
    from prefect.runtime import flow_run

    check_attempt(flow_run.flow_name or "flow", flow_run.run_count)
