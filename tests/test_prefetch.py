"""read_ahead: same items in the same order, errors surface in the consumer, an early stop
ends the producer and closes its iterator."""

import threading
import time

import pytest

from circhub.tasks.loads.prefetch import read_ahead


def test_items_arrive_in_order_and_complete():
    assert list(read_ahead(iter(range(1000)))) == list(range(1000))


def test_a_producer_error_is_raised_in_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise ConnectionError("member SC001: connection lost")

    got = []
    with pytest.raises(ConnectionError, match="SC001"):
        for x in read_ahead(source()):
            got.append(x)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_and_closes_the_producer():
    closed = threading.Event()

    def source():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    for x in read_ahead(source()):
        if x == 3:
            break
    assert closed.wait(5)
    assert not any(t.name == "circhub-read-ahead" for t in threading.enumerate())


def test_the_producer_is_never_more_than_one_item_ahead():
    asked = []

    def source():
        for i in range(20):
            asked.append(i)
            yield i

    for x in read_ahead(source()):
        time.sleep(0.01)  # the consumer is slower: the producer waits for it
        assert max(asked) <= x + 1
