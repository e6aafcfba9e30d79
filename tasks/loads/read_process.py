"""A backfill's reading in a child process: the source read, the typing (reader ID numbers
hashed) and the content hash of the next chunks run on the machine's other core while the
backfill validates and merges the current one.

Why a process and not the read-ahead thread alone: every step of it is Python holding the
GIL (the driver building rows, pandas on columns of Python strings), so a thread only fills
the merge's waits on the central store; with the reading in its own process a PostgreSQL
member's backfill went from ~100,000 to ~140,000 rows a second here (docs/benchmarks.md).

The child is `python -m circhub.tasks.loads.read_process`. What it needs (the member, its database
URL,
the reader-ID key, the windows) arrives pickled on its stdin, never on its command line or in
its environment; chunks go back pickled on its stdout, one window at a time, each window
followed by a `WindowRead`. It stops when it has read every window, when its stdout is closed
(the backfill stopped or died: its next write fails), or when killed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import pandas as pd

from circhub.connections.backends import STATEMENT_TIMEOUT_SECONDS
from circhub.connections.config import Member

# What the reader process runs with besides the backfill's own environment:
# - connectorx (the Arrow reader) is Rust: a panic of it prints its message, not a backtrace
#   of Rust frames, whatever the operator's shell sets;
# - glibc gives each thread that allocates its own heap arena, and connectorx reads on
#   threads of its own: two arenas held the reader's peak at 352 MB against 389 over a
#   5,000,000-item backfill here (glibc only; other C libraries ignore it).
READER_ENVIRONMENT = {"RUST_BACKTRACE": "0", "MALLOC_ARENA_MAX": "2"}


@dataclass(frozen=True)
class ReadJob:
    member: Member
    url: str  # resolved by the backfill (env or Secret block); may hold a password
    entity: str
    windows: list[tuple[datetime, datetime]]
    chunk_rows: int
    id_key: bytes
    # Read through connectorx into Arrow where the member's backend allows
    # (`circhub.connections.arrow_read`); False: through the driver, whatever the backend.
    arrow: bool = True


@dataclass(frozen=True)
class WindowRead:
    """Every chunk of the window ending at `end` has been handed over."""

    end: datetime


@dataclass(frozen=True)
class ReaderDone:
    peak_mb: float  # the child's own peak memory, for the memory benchmark


@dataclass(frozen=True)
class _Failed:
    source: bool  # the member's database failed (SourceUnavailable), or anything else
    message: str
    transient: bool = False  # the driver's code says a retry may succeed (connections.errors)


def read_in_child(job: ReadJob) -> Iterator[pd.DataFrame | WindowRead | ReaderDone]:
    """The job's chunks (typed and hashed frames) and window markers, from a child process.
    A failure there is raised here: SourceUnavailable when the member's database failed."""
    from circhub.tasks.sync.extract import SourceUnavailable

    child = subprocess.Popen([sys.executable, "-m", "circhub.tasks.loads.read_process"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env={**os.environ, **READER_ENVIRONMENT})
    finished, watchdog = False, _Watchdog(child, SILENCE_SECONDS)
    try:
        pickle.dump(job, child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        child.stdin.close()
        while True:
            message = _next_message(child, job.member.code, watchdog)
            if isinstance(message, _Failed):
                if message.source:
                    raise SourceUnavailable(message.message, transient=message.transient)
                raise RuntimeError(message.message)
            finished = isinstance(message, ReaderDone)
            yield message
            if finished:
                return
    finally:
        watchdog.stop()
        _end(child, finished)


def _end(child: subprocess.Popen, finished: bool) -> None:
    """The reader process gone, before the caller gives the member's slot back. One that
    finished has closed its connections to the member and is exiting: it is given
    EXIT_SECONDS, since a process killed on a connection leaves the member's server a session
    it notices only later; one stopped early is killed at once."""
    if finished:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(EXIT_SECONDS)
    if child.poll() is None:
        child.kill()
    child.stdout.close()
    child.wait()


EXIT_SECONDS = 10


def _next_message(child: subprocess.Popen, member: str, watchdog: _Watchdog):
    from circhub.tasks.sync.extract import SourceUnavailable

    watchdog.waiting()
    try:
        return pickle.load(child.stdout)
    except EOFError:
        if watchdog.fired:
            raise SourceUnavailable(
                f"member {member}: nothing came from its database for {watchdog.seconds:.0f} s; "
                "the backfill's reader was stopped", transient=True) from None
        raise RuntimeError(f"member {member}: the backfill's reader process ended unexpectedly "
                           f"(exit code {child.wait()})") from None
    finally:
        watchdog.received()


# How long the backfill waits for the reader's next message before it stops the reader:
# connectorx sets no client-side read timeout, so a member lost mid-read (no reset from its
# side) would hold the backfill, and the member's slot, until TCP keepalive gave up (two
# hours), where the driver path gives up after its own read timeout. A member's statement
# may run STATEMENT_TIMEOUT_SECONDS; the margin is for a chunk's typing and hashing.
SILENCE_SECONDS = STATEMENT_TIMEOUT_SECONDS + 60


class _Watchdog:
    """Kills the reader process when the backfill has waited `seconds` for one message."""

    def __init__(self, child: subprocess.Popen, seconds: float) -> None:
        self.seconds, self.fired = seconds, False
        self._child, self._since = child, None
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="circhub-reader-watchdog",
                         daemon=True).start()

    def waiting(self) -> None:
        self._since = time.monotonic()

    def received(self) -> None:
        self._since = None

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(min(5.0, self.seconds / 4)):
            since = self._since
            if since is not None and time.monotonic() - since > self.seconds:
                self.fired = True
                self._child.kill()
                return


def _read(job: ReadJob, out: BinaryIO) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from circhub.connections.engines import bulk_read_engine
    from circhub.connections.errors import is_transient
    from circhub.domain.rowhash import with_row_hash
    from circhub.tasks.loads.member_rows import MemberRows
    from circhub.tasks.sync.extract import entity_query, prepare_frame

    source = MemberRows(job.member, job.url, job.entity, job.chunk_rows,
                        lambda: bulk_read_engine(job.url), arrow=job.arrow)
    try:
        for start, end in job.windows:
            query = entity_query(job.member, job.entity, start, end)
            for raw in source.chunks(query, f"from {start:%Y-%m-%d %H:%M}"):
                frame = with_row_hash(job.entity, prepare_frame(job.entity, raw, job.id_key))
                del raw  # the source's rows, no longer needed while the frame goes out
                _send(out, frame)
                del frame
            _send(out, WindowRead(end))
    except SQLAlchemyError as exc:
        _send(out, _Failed(True, f"member {job.member.code}: backfill of {job.entity} stopped: "
                                 f"{type(getattr(exc, 'orig', exc)).__name__}",
                           is_transient(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - handed to the backfill, raised there
        _send(out, _Failed(False, f"member {job.member.code}: reading {job.entity} failed: "
                                  f"{type(exc).__name__}: {exc}"))
        return
    # Its connections to the member closed (the driver's pool; connectorx closes its own at
    # the end of each window) before the backfill hears it is done and frees the member.
    bulk_read_engine(job.url).dispose()
    _send(out, ReaderDone(_peak_mb()))


def _send(out: BinaryIO, message) -> None:
    pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
    out.flush()


def _peak_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # no /proc (macOS): not measured
        pass
    return 0.0


def main() -> None:
    # The pickle stream gets the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    job = pickle.load(sys.stdin.buffer)
    try:
        _read(job, out)
        out.close()
    except BrokenPipeError:  # the backfill has gone: nobody to read for
        os._exit(0)  # no flush of a pipe nobody reads


if __name__ == "__main__":
    # Run the module's imported twin, so what is pickled names
    # `circhub.tasks.loads.read_process.WindowRead`
    # and not `__main__.WindowRead`, which the backfill could not unpickle.
    from circhub.tasks.loads.read_process import main as imported_main

    imported_main()
