"""Job leases (service/job_lease.py) against the session's real S3 server (SeaweedFS): acquire,
conflict, renewal, takeover after expiry, a lost lease, and the conditional writes they rest on.

Durations are measured on a clock each test steps itself, so no test sleeps or depends on timing."""

from __future__ import annotations

import concurrent.futures
import json
import uuid

from service.job_lease import HOLD_FRACTION, JobLease, conditional_writes_work


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> None:
        self.now += seconds


DURATION_S = 30.0


def _leases(store, *owners: str, clock: SteppedClock) -> tuple[str, list[JobLease]]:
    job_id = uuid.uuid4().hex
    return job_id, [JobLease(store, job_id, owner, DURATION_S, clock=clock) for owner in owners]


def _stored(store, lease: JobLease) -> dict:
    found = store.get_with_etag(lease.key)
    assert found is not None
    return json.loads(found[0])


def test_the_first_runner_acquires_and_a_second_is_refused_while_it_renews(store):
    clock = SteppedClock()
    _, (first, second) = _leases(store, "runner-a", "runner-b", clock=clock)
    assert first.try_acquire() and first.held()
    assert _stored(store, first)["owner"] == "runner-a"
    assert not second.try_acquire() and not second.held()
    for _ in range(6):  # far past one lease duration in all, but renewed every third of it
        clock.step(first.renew_interval_s)
        assert first.renew() and first.held()
        assert not second.try_acquire()
    assert _stored(store, first)["owner"] == "runner-a"


def test_a_renewal_writes_a_new_etag_and_keeps_the_acquisition_time(store):
    clock = SteppedClock()
    _, (lease,) = _leases(store, "runner-a", clock=clock)
    assert lease.try_acquire()
    before_etag, before = store.get_with_etag(lease.key)[1], _stored(store, lease)
    assert lease.renew()
    after_etag, after = store.get_with_etag(lease.key)[1], _stored(store, lease)
    assert after_etag != before_etag and after["acquired_at"] == before["acquired_at"] and after["token"] != before["token"]


def test_an_unrenewed_lease_is_taken_over_after_its_duration_and_the_old_holder_has_lost_it(store):
    clock = SteppedClock()
    _, (first, second) = _leases(store, "runner-a", "runner-b", clock=clock)
    assert first.try_acquire()
    assert not second.try_acquire()  # starts watching the lease's ETag
    clock.step(DURATION_S * HOLD_FRACTION)
    assert not first.held(), "the holder stops trusting its lease before anyone may take it over"
    clock.step(DURATION_S * (1 - HOLD_FRACTION) - 0.001)
    assert not second.try_acquire(), "not before a whole duration without renewal"
    clock.step(0.001)
    assert second.try_acquire() and second.held()
    assert _stored(store, second)["owner"] == "runner-b"
    assert not first.renew() and not first.held(), "the old holder's renewal finds the lease taken over"
    assert not first.try_acquire(), "and it waits like any other contender"


def test_the_expiry_wait_starts_over_whenever_the_holder_renews(store):
    clock = SteppedClock()
    _, (first, second) = _leases(store, "runner-a", "runner-b", clock=clock)
    assert first.try_acquire()
    assert not second.try_acquire()
    clock.step(DURATION_S * 0.9)
    assert first.renew()
    clock.step(DURATION_S * 0.2)  # 1.1 durations since the contender first looked, 0.2 since the renewal
    assert not second.try_acquire()
    clock.step(DURATION_S)
    assert second.try_acquire()


def test_a_released_lease_is_acquired_at_once_and_a_release_never_deletes_another_holders_lease(store):
    clock = SteppedClock()
    _, (first, second) = _leases(store, "runner-a", "runner-b", clock=clock)
    assert first.try_acquire()
    first.release()
    assert not first.held() and store.get_with_etag(first.key) is None
    assert second.try_acquire()
    first.release()  # holds nothing: a no-op
    stale = JobLease(store, second.job_id, "runner-a", DURATION_S, clock=clock)
    stale._etag, stale._held_until = '"' + "0" * 32 + '"', clock() + 1  # as if it still believed in an old write
    stale.release()
    assert _stored(store, second)["owner"] == "runner-b"


def test_a_runner_takes_back_its_own_lease_without_waiting(store):
    clock = SteppedClock()
    _, (lease,) = _leases(store, "runner-a", clock=clock)
    assert lease.try_acquire()
    clock.step(DURATION_S * HOLD_FRACTION)  # its term ran out (e.g. S3 was unreachable for a while)
    assert not lease.held()
    assert lease.try_acquire() and lease.held()


def test_of_runners_racing_for_a_new_or_an_expired_lease_exactly_one_wins(store):
    clock = SteppedClock()
    owners = [f"runner-{n}" for n in range(8)]
    _, leases = _leases(store, *owners, clock=clock)
    with concurrent.futures.ThreadPoolExecutor(len(leases)) as pool:
        assert sum(pool.map(JobLease.try_acquire, leases)) == 1
        [holder] = [lease for lease in leases if lease.held()]
        contenders = [lease for lease in leases if lease is not holder]
        assert not any(pool.map(JobLease.try_acquire, contenders))  # every contender watches the same ETag
        clock.step(DURATION_S)
        assert sum(pool.map(JobLease.try_acquire, contenders)) == 1
    assert sum(lease.held() for lease in leases) == 1
    assert not holder.renew()


def test_the_s3_server_honours_the_conditional_writes_leases_rest_on(store):
    assert conditional_writes_work(store)
    assert not store.list_keys("job-lease-probe/"), "the probe cleans up after itself"
