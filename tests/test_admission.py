"""Admission of synchronous edits (service/admission.py), without Ray: 429 once the expected wait is too long."""

from __future__ import annotations

import pytest

from service.admission import EditAdmission
from service.errors import TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_edits_are_admitted_until_their_expected_wait_passes_the_limit():
    clock = Clock()
    admission = EditAdmission("collage", max_wait_s=1.0, min_in_flight=4, clock=clock)
    for _ in range(10):  # cold: no rate measured yet, everything is admitted
        admission.admit()
    for _ in range(10):  # 10 edits finish over 0.5 busy seconds: 20 edits/s
        clock.now += 0.05
        admission.finished(computed=True)
    assert admission.in_flight == 0 and admission.rate() == pytest.approx(20, rel=0.01)
    for _ in range(21):  # the 21st has 20 ahead of it at 20/s: a 1 s wait, still admitted
        admission.admit()
    with pytest.raises(TooManyRequests, match="wait about 1.05 s") as refused:
        admission.admit()
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) >= 1
    assert admission.in_flight == 21, "a refused edit is not counted"
    for _ in range(5):
        admission.finished(computed=False)  # cancelled or failed: leaves, adds nothing to the rate
    admission.admit()  # 16 in flight: admitted again


def test_the_rate_counts_busy_time_only_and_forgets_old_completions():
    clock = Clock()
    admission = EditAdmission("style", max_wait_s=1.0, min_in_flight=2, clock=clock)
    admission.admit()
    clock.now += 0.1
    admission.finished(computed=True)  # 1 edit in 0.1 busy s
    clock.now += 3.0  # idle time does not lower the rate
    assert admission.rate() == pytest.approx(10, rel=0.01)
    clock.now += 10.0  # out of the window: no estimate, so cold-start admission again
    assert admission.rate() is None
    for _ in range(50):
        admission.admit()


def test_min_in_flight_edits_are_always_admitted():
    clock = Clock()
    admission = EditAdmission("inpaint", max_wait_s=0.1, min_in_flight=8, clock=clock)
    admission.admit()
    clock.now += 10.0
    admission.finished(computed=True)  # a very slow family: 0.1 edits/s
    for _ in range(8):
        admission.admit()
    with pytest.raises(TooManyRequests):
        admission.admit()
