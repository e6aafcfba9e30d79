"""Read ahead: run an iterator in a background thread, one item ahead of its consumer.

A backfill alternates between reading a chunk from the member (the driver parses rows, or
waits on the member's server) and merging it (mostly waiting on the central store's
INSERT ... ON CONFLICT). With the next chunk read while the current one merges, the two waits
overlap on the machine's two cores. One chunk ahead at most, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(items: Iterator[T], name: str = "circhub-read-ahead") -> Iterator[T]:
    """The items of `items`, produced by a thread that stays at most one item ahead: it asks
    for the next item only once the consumer has taken the last one, so the consumer's item
    and one more are all there is (a backfill chunk is ~50 MB of frames). An error in the
    producer is raised in the consumer; a consumer that stops early stops the producer (and
    its iterator is closed in that thread, which releases its database connection)."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    taken = threading.Semaphore(1)  # released each time the consumer takes an item
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in _when_taken(items, taken, stop):
                if not _put(handoff, item, stop):
                    return
            _put(handoff, _DONE, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            _put(handoff, _Failed(exc), stop)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            taken.release()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        _drain(handoff)
        thread.join()


def _when_taken(items: Iterator[T], taken: threading.Semaphore,
                stop: threading.Event) -> Iterator[T]:
    """The items, each asked for only once the one before it was taken (or at the start)."""
    iterator = iter(items)
    while True:
        while not taken.acquire(timeout=0.2):
            if stop.is_set():
                return
        if stop.is_set():
            return
        try:
            item = next(iterator)
        except StopIteration:
            return
        yield item


def _put(handoff: queue.Queue, item, stop: threading.Event) -> bool:
    """Hand one item over, unless the consumer has gone; True when handed over."""
    while not stop.is_set():
        try:
            handoff.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


def _drain(handoff: queue.Queue) -> None:
    while True:
        try:
            handoff.get_nowait()
        except queue.Empty:
            return
