"""CoalescedCalls without Ray: which edits share a call to the family, and how results, failures and
cancellations reach each caller."""

from __future__ import annotations

import asyncio

import pytest

from service.coalesce import CoalescedCalls
from service.errors import Unprocessable


class FakeResponse:
    """A DeploymentResponse stand-in the test answers by hand."""

    def __init__(self, tasks: list) -> None:
        self.tasks = tasks
        self.answer: asyncio.Future = asyncio.get_running_loop().create_future()
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __await__(self):
        return self.answer.__await__()


class FakeHandle:
    def __init__(self) -> None:
        self.calls: list[FakeResponse] = []

    def remote(self, tasks: list) -> FakeResponse:
        self.calls.append(FakeResponse(list(tasks)))
        return self.calls[-1]


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_lone_edit_leaves_on_the_next_loop_turn_with_those_of_the_same_turn():
    async def scenario():
        handle = FakeHandle()
        calls = CoalescedCalls("fake", handle, window_s=10.0, max_items=8)  # a window this long would show as a hang
        first, second = calls.submit("a"), calls.submit("b")
        await turns()
        assert [c.tasks for c in handle.calls] == [["a", "b"]]
        handle.calls[0].answer.set_result(["A", "B"])
        assert await asyncio.wait_for(asyncio.gather(first, second), 1) == ["A", "B"]
        assert calls.in_flight == 0

    asyncio.run(scenario())


def test_edits_arriving_while_a_call_is_in_flight_share_the_next_call():
    async def scenario():
        handle = FakeHandle()
        calls = CoalescedCalls("fake", handle, window_s=0.05, max_items=8)
        calls.submit("a")
        await turns()
        later = [calls.submit(name) for name in "bcd"]
        await turns()
        assert len(handle.calls) == 1, "held for the window while a call is in flight"
        await asyncio.sleep(0.1)
        assert [c.tasks for c in handle.calls] == [["a"], ["b", "c", "d"]]
        handle.calls[1].answer.set_result(["B", "C", "D"])
        assert await asyncio.wait_for(asyncio.gather(*later), 1) == ["B", "C", "D"]

    asyncio.run(scenario())


def test_a_full_call_leaves_at_once_and_an_answered_call_releases_what_waits():
    async def scenario():
        handle = FakeHandle()
        calls = CoalescedCalls("fake", handle, window_s=10.0, max_items=2)
        calls.submit("a")
        await turns()
        calls.submit("b"), calls.submit("c")  # two: a full call, no window
        await turns()
        assert [c.tasks for c in handle.calls] == [["a"], ["b", "c"]]
        waiting = calls.submit("d")
        await turns()
        assert len(handle.calls) == 2
        handle.calls[0].answer.set_result(["A"])
        handle.calls[1].answer.set_result(["B", "C"])
        await turns()
        assert [c.tasks for c in handle.calls][-1] == ["d"], "nothing in flight any more: sent without the window"
        handle.calls[2].answer.set_result(["D"])
        assert await asyncio.wait_for(waiting, 1) == "D"

    asyncio.run(scenario())


def test_each_caller_gets_its_own_failure_and_a_failed_call_fails_all_of_its_edits():
    async def scenario():
        handle = FakeHandle()
        calls = CoalescedCalls("fake", handle, window_s=1.0, max_items=8)
        good, bad = calls.submit("a"), calls.submit("b")
        await turns()
        handle.calls[0].answer.set_result(["A", Unprocessable("b is wrong")])
        assert await good == "A"
        with pytest.raises(Unprocessable, match="b is wrong"):
            await bad
        both = calls.submit("c"), calls.submit("d")
        await turns()
        handle.calls[1].answer.set_exception(ConnectionError("replica died"))
        for future in both:
            with pytest.raises(ConnectionError):
                await future

    asyncio.run(scenario())


def test_a_call_is_cancelled_only_when_every_caller_gave_up():
    async def scenario():
        handle = FakeHandle()
        calls = CoalescedCalls("fake", handle, window_s=1.0, max_items=8)
        first, second = calls.submit("a"), calls.submit("b")
        await turns()
        first.cancel()
        await turns()
        assert not handle.calls[0].cancelled, "one caller still waits"
        second.cancel()
        await turns()
        assert handle.calls[0].cancelled
        handle.calls[0].answer.set_result(["A", "B"])  # a late answer goes nowhere, harmlessly
        await turns()
        given_up = calls.submit("c")
        given_up.cancel()  # before it was sent: it never is
        await turns()
        assert len(handle.calls) == 1 and calls.in_flight == 0

    asyncio.run(scenario())


def test_no_window_sends_every_edit_alone_at_once():
    async def scenario():
        handle = FakeHandle()
        calls = CoalescedCalls("fake", handle, window_s=0, max_items=8)
        calls.submit("a"), calls.submit("b")
        assert [c.tasks for c in handle.calls] == [["a"], ["b"]]

    asyncio.run(scenario())


def test_autoscaling_counts_the_edits_replicas_hold_not_the_calls():
    from ray.serve._private.common import DeploymentID, ReplicaID
    from ray.serve.config import AutoscalingConfig, AutoscalingContext

    from service.autoscaling import EDITS_METRIC, edits_autoscaling_policy, edits_in_flight

    replicas = [ReplicaID(unique_id=f"r{i}", deployment_id=DeploymentID(name="StyleDeployment", app_name="collage")) for i in range(2)]

    def context(calls: float, queued: float, edits: list[float] | None) -> AutoscalingContext:
        return AutoscalingContext(
            deployment_id=replicas[0].deployment_id,
            deployment_name="StyleDeployment",
            app_name="collage",
            current_num_replicas=2,
            target_num_replicas=2,
            running_replicas=replicas,
            total_num_requests=calls,
            total_queued_requests=queued,
            aggregated_metrics={EDITS_METRIC: dict(zip(replicas, edits))} if edits else {},
            raw_metrics=None,
            capacity_adjusted_min_replicas=1,
            capacity_adjusted_max_replicas=8,
            policy_state={},
            last_scale_up_time=None,
            last_scale_down_time=None,
            current_time=None,
            config=AutoscalingConfig(min_replicas=1, max_replicas=8, target_ongoing_requests=16),
        )

    # 8 calls of 8 edits each in 2 replicas, 2 calls queued: Serve counts 10 requests, there are 66 edits
    loaded = context(calls=10, queued=2, edits=[32, 32])
    assert edits_in_flight(loaded) == 66
    desired, _ = edits_autoscaling_policy(loaded)
    assert desired == 2 * 66 / (16 * 2), "as many replicas as 66 edits at 16 per replica ask for"
    assert edits_autoscaling_policy(context(calls=10, queued=2, edits=None))[0] == 2 * 10 / 32, "no reports yet: calls"
    assert edits_in_flight(context(calls=3, queued=0, edits=[1, 0])) == 3, "never below Serve's own count"
