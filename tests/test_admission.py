"""Admission of synchronous edits (service/admission.py), without Ray: 429 once the expected wait is too long."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from service.admission import EditAdmission, LoopLag
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


def test_loop_lag_counts_sustained_lateness_not_one_stall():
    lag = LoopLag()
    assert lag.lag_s() == 0.0
    lag.observe(0.9)  # one late wake: a collection, a slow import
    assert lag.lag_s() == 0.0
    lag.observe(0.4)  # a second in a row: a backlog
    assert lag.lag_s() == pytest.approx(0.4)
    lag.observe(0.001)  # on time again
    assert lag.lag_s() == pytest.approx(0.001)


def test_loop_lag_sees_a_backlog_of_ready_tasks():
    async def run() -> tuple[float, float]:
        lag = LoopLag(interval_s=0.01)
        lag.start()
        await asyncio.sleep(0.05)

        async def busy_request() -> None:  # a backlog: many requests each taking the CPU a little at a time
            for _ in range(5):
                time.sleep(0.003)
                await asyncio.sleep(0)

        await asyncio.gather(*(busy_request() for _ in range(100)))
        behind = lag.lag_s()
        await asyncio.sleep(0.2)
        return behind, lag.lag_s()

    behind, after = asyncio.run(run())
    # each turn of the loop runs 100 x 3 ms of work, and a blocked thread only ever wakes later, never sooner:
    # the watcher's wakes are at least one turn late whatever else the machine runs
    assert behind >= 0.25
    assert after < behind  # on time again once the backlog is gone


class _Asgi:
    """A request through an ASGI app: the response's status, headers and body."""

    def __init__(self, path: str = "/v1/edits") -> None:
        self.scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        self.messages: list[dict] = []

    async def receive(self):
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(self, message):
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])


async def _ok_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_a_full_or_saturated_ingress_answers_429_problems_before_the_app_and_probes_pass(monkeypatch):
    from service.config import get_settings
    from service.ingress import IngressAdmissionMiddleware

    monkeypatch.setenv("COLLAGE_INGRESS_MAX_ONGOING_REQUESTS", "16")
    get_settings.cache_clear()
    try:

        async def run() -> dict[str, _Asgi]:
            middleware = IngressAdmissionMiddleware(_ok_app)
            answers = {}
            for name, path, in_flight in [("free", "/v1/edits", 15), ("full", "/v1/edits", 16), ("probe", "/readyz", 16)]:
                middleware.in_flight = in_flight
                answers[name] = request = _Asgi(path)
                await middleware(request.scope, request.receive, request.send)
            middleware.in_flight = 0
            middleware.loop_lag.start()
            middleware.loop_lag.observe(2.0)
            middleware.loop_lag.observe(2.0)  # two late wakes: the loop is behind
            for name, path in [("saturated", "/v1/edits"), ("saturated_probe", "/healthz")]:
                answers[name] = request = _Asgi(path)
                await middleware(request.scope, request.receive, request.send)
            assert middleware.in_flight == 0  # every admitted request counted out again
            return answers

        answers = asyncio.run(run())
    finally:
        get_settings.cache_clear()
    assert {name: a.status for name, a in answers.items()} == {
        "free": 200,
        "full": 429,
        "probe": 200,
        "saturated": 429,
        "saturated_probe": 200,
    }
    for name in ("full", "saturated"):
        problem = json.loads(answers[name].messages[1]["body"])
        assert answers[name].headers[b"content-type"] == b"application/problem+json"
        assert answers[name].headers[b"retry-after"] == b"1"
        assert problem["status"] == 429 and "retry" in problem["detail"]
    assert "limit of 16 requests" in json.loads(answers["full"].messages[1]["body"])["detail"]
    assert "event loop runs 2000 ms late" in json.loads(answers["saturated"].messages[1]["body"])["detail"]


def test_request_metrics_label_only_declared_ops_and_a_refused_export_fails_no_request():
    from service import metrics
    from service.ingress import metric_op

    assert metric_op("sample") == "sample" and metric_op("") == ""
    assert metric_op("Òops") == "other" and metric_op("x" * 64) == "other"  # client text, before validation

    class RefusingExport:  # Ray's recorder raises on a non-ASCII tag value
        def inc(self, value, tags):
            raise UnicodeEncodeError("ascii", "Ò", 0, 1, "ordinal not in range(128)")

    counter = metrics.Counter("collage_test_refused_export", "a test counter", ["op"])
    counter._ray = RefusingExport()
    counter.labels("Ò").inc()  # no exception: recorded locally only
    assert counter.local.labels("Ò")._value.get() == 1 and counter.export_failed
