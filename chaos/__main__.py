"""`make chaos`: a campaign of randomized fault schedules against a simulated consortium.

    CHAOS_SCHEDULES=N   how many schedules (default 20)
    CHAOS_SEED=S        the campaign's seed (default: drawn, and printed)
    CHAOS_ONLY=I[,J]    run only these schedule indexes of the seed (a reproduction)
    CHAOS_REPORT=path   where the campaign's figures go (default docs/reliability.md, between
                        its chaos markers; "" for none)

Prints, per schedule, what it injected and what the oracle found, and a reproduction line
for any schedule with findings. Exits 1 when any schedule found something.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

from chaos.campaign import Campaign, write_report
from chaos.consortium import member_codes
from chaos.harness import Harness
from chaos.schedule import draw


def main() -> int:
    count = int(os.environ.get("CHAOS_SCHEDULES", "20"))
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
    only = os.environ.get("CHAOS_ONLY", "")
    indexes = [int(i) for i in only.split(",")] if only else list(range(count))
    report = os.environ.get("CHAOS_REPORT", "docs/reliability.md")
    home = Path(tempfile.mkdtemp(prefix="circhub-chaos-"))
    print(f"chaos: seed {seed}, {len(indexes)} schedule(s), servers and logs under {home}",
          flush=True)
    campaign = Campaign(seed)
    harness = Harness(home)
    started = time.monotonic()
    try:
        for i in indexes:
            result = harness.run(draw(seed, i, tuple(member_codes())))
            campaign.add(result)
            print(campaign.line(result), flush=True)
    finally:
        harness.close()
    campaign.seconds = time.monotonic() - started
    print(campaign.summary(), flush=True)
    if report and not only:
        write_report(Path(report), campaign)
        print(f"chaos: figures written to {report}")
    return 0 if campaign.clean else 1


if __name__ == "__main__":
    sys.exit(main())
