"""A campaign's figures: schedules run, faults injected by kind, what the oracle found by
kind, time to converge; and the report section of docs/reliability.md that `make chaos`
refreshes."""

from __future__ import annotations

import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from statistics import median

from chaos.harness import Result

BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"
KINDS = ("lost", "doubled", "wrong", "owner", "outbox", "exception")


@dataclass
class Campaign:
    seed: int
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, result: Result) -> None:
        self.results.append(result)

    @property
    def clean(self) -> bool:
        return all(r.ok for r in self.results)

    def faults(self) -> Counter:
        return Counter(kind for r in self.results for kind in r.schedule.faults())

    def findings(self) -> Counter:
        return Counter(f.kind for r in self.results for f in r.findings)

    def line(self, r: Result) -> str:
        head = (f"[{len(self.results)}] {r.schedule} -> converged in {r.converge_seconds:.0f} s, "
                f"{r.actions} desk actions")
        if r.notes:
            head += "; " + "; ".join(r.notes)
        if r.ok:
            return head + "; oracle: all agree"
        lines = [head, f"  oracle: {len(r.findings)} finding(s)"]
        lines += [f"    {f}" for f in r.findings[:20]]
        lines.append(f"  reproduce: CHAOS_SEED={self.seed} CHAOS_ONLY={r.schedule.index} "
                     "make chaos")
        return "\n".join(lines)

    def converge(self) -> tuple[float, float]:
        times = sorted(r.converge_seconds for r in self.results)
        if not times:
            return 0.0, 0.0
        return median(times), times[min(len(times) - 1, int(0.95 * len(times)))]

    def summary(self) -> str:
        found = self.findings()
        mid, p95 = self.converge()
        failed = [r.schedule.index for r in self.results if not r.ok]
        faults = self.faults()
        return (f"chaos: seed {self.seed}: {len(self.results)} schedules, "
                f"{sum(faults.values())} faults injected ("
                + ", ".join(f"{n} {kind}" for kind, n in sorted(faults.items())) + "); "
                + ", ".join(f"{found[k]} {k}" for k in KINDS)
                + f"; converged in {mid:.0f} s median, {p95:.0f} s p95; "
                + (f"schedules with findings: {failed}" if failed else "no findings"))


def write_report(path: Path, campaign: Campaign) -> None:
    """Replaces the section between the chaos markers of `path` with this campaign's figures."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"chaos: {path} has no {BEGIN} ... {END} section to refresh")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + "\n" + _section(campaign) + END + tail)


def _section(c: Campaign) -> str:
    found = c.findings()
    mid, p95 = c.converge()
    faults = "\n".join(f"| {kind} | {n} |" for kind, n in sorted(c.faults().items()))
    return (f"Last `make chaos`: **{date.today():%d %B %Y}, seed {c.seed}, "
            f"{len(c.results)} schedules** on {platform.machine()} "
            f"({_cores()} cores), {c.seconds / 60:.0f} minutes.\n\n"
            "| found | count |\n| --- | --- |\n"
            + "\n".join(f"| {k} | {found[k]} |" for k in KINDS)
            + f"\n\nTime to converge after the faults stop: median {mid:.0f} s, p95 {p95:.0f} s."
            "\n\n| fault injected | times |\n| --- | --- |\n" + faults + "\n")


def _cores() -> int:
    import os

    return os.cpu_count() or 0
