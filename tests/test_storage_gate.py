"""The request path's storage gate (service/storage_gate.py): deadlines and the circuit breaker, without Ray or S3."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.errors import StorageUnavailable
from service.storage_gate import StorageGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _down() -> None:
    raise StorageUnavailable("object storage is unreachable (test)")


def test_the_breaker_opens_after_consecutive_failures_answers_at_once_then_closes_on_a_success():
    clock = Clock()
    gate = StorageGate(deadline_s=5, failures_to_open=3, open_s=10, clock=clock)
    calls = []

    def counted() -> str:
        calls.append(1)
        return "ok"

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(StorageUnavailable, match="unreachable"):
                await gate.run(_down)
        with pytest.raises(StorageUnavailable, match="known to be down") as caught:
            await gate.run(counted)
        assert caught.value.headers["Retry-After"] == "10" and not calls, "an open breaker does not call storage"
        clock.now += 10.5  # open time over: calls go through again
        assert await gate.run(counted) == "ok" and calls == [1]
        with pytest.raises(StorageUnavailable, match="unreachable"):  # closed again: one failure does not reopen it
            await gate.run(_down)
        assert await gate.run(counted) == "ok"

    asyncio.run(scenario())


def test_a_failure_right_after_the_open_time_reopens_the_breaker():
    clock = Clock()
    gate = StorageGate(deadline_s=5, failures_to_open=2, open_s=4, clock=clock)

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(StorageUnavailable):
                await gate.run(_down)
        clock.now += 5
        with pytest.raises(StorageUnavailable, match="unreachable"):
            await gate.run(_down)  # the trial call fails
        assert gate.retry_after_s() == 4

    asyncio.run(scenario())


def test_a_step_past_its_deadline_or_the_requests_is_a_503_counted_by_the_breaker():
    gate = StorageGate(deadline_s=0.3, failures_to_open=2, open_s=30)
    released = threading.Event()

    def stalled() -> str:  # a storage call that answers only when the test lets it
        released.wait(10)
        return "late"

    async def scenario() -> None:
        with pytest.raises(StorageUnavailable, match="did not answer within 0.3 s"):
            await gate.run(stalled)
        with pytest.raises(StorageUnavailable, match="did not answer within 0.1 s"):  # the request's deadline is sooner
            await gate.run(stalled, deadline=time.time() + 0.1)
        with pytest.raises(StorageUnavailable, match="known to be down"):
            await gate.run(lambda: "ok")

    try:
        asyncio.run(scenario())
    finally:
        released.set()


def test_a_step_whose_request_deadline_already_passed_is_a_504_without_calling_storage():
    from service.errors import DeadlineExceeded

    gate = StorageGate(deadline_s=5.0, failures_to_open=1, open_s=30.0)
    calls = []
    with pytest.raises(DeadlineExceeded):
        asyncio.run(gate.run(calls.append, "called", deadline=time.time() - 0.001))
    assert calls == []
    gate.check()  # storage was not at fault: the breaker stays closed
