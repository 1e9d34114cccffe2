"""Admission of synchronous edits at an ingress replica: 429 at once when the wait would be too long.

Serve bounds the *calls* queued for a family (``max_queued_requests``), but the ingress coalesces
edits into calls (service/coalesce.py) and HAProxy does not queue at all, so under overload edits
would wait in the ingress for as long as the backlog takes. Here each family's edits in flight at
this replica are counted, and the rate at which they finish while the family is busy is measured
(completions over busy time, a sliding window). An edit whose expected wait, in flight ÷ rate,
exceeds ``max_queue_wait_s`` is answered **429** with ``Retry-After`` at once. Up to
``min_in_flight`` edits are always admitted (cold start, light traffic). Job items are not counted
here: the job runner paces them itself.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Callable

from service.errors import TooManyRequests

WINDOW_S = 5.0  # completions counted over this much recent time


class EditAdmission:
    """One family's edits in flight at this ingress replica, and their throughput while busy."""

    def __init__(self, family: str, max_wait_s: float, min_in_flight: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.family = family
        self.max_wait_s = max_wait_s  # longest expected wait an admitted edit may face
        self.min_in_flight = min_in_flight  # admitted whatever the estimate
        self._clock = clock
        self.in_flight = 0
        self._finished: collections.deque[float] = collections.deque()  # completion times within the window
        self._busy_since: float | None = None  # start of the current busy period (in_flight > 0)
        self._busy: collections.deque[tuple[float, float]] = collections.deque()  # past busy periods in the window

    def rate(self) -> float | None:
        """Edits finished per busy second over the window (None: nothing finished yet)."""
        now = self._clock()
        self._forget(now)
        if not self._finished:
            return None
        start = now - WINDOW_S
        busy = sum(end - max(begin, start) for begin, end in self._busy)
        if self._busy_since is not None:
            busy += now - max(self._busy_since, start)
        return len(self._finished) / max(busy, 1e-3)

    def admit(self) -> None:
        """Count one more edit in, or raise 429 when its expected wait is over the limit."""
        if self.in_flight >= self.min_in_flight:
            rate = self.rate()
            if rate is not None and self.in_flight / rate > self.max_wait_s:
                wait_s = self.in_flight / rate
                raise TooManyRequests(
                    f"the {self.family} deployment is at capacity: an edit would wait about {wait_s:.2f} s "
                    f"(the limit is {self.max_wait_s:g} s); retry shortly",
                    headers={"Retry-After": str(max(1, math.ceil(wait_s - self.max_wait_s)))},
                )
        if self.in_flight == 0:
            self._busy_since = self._clock()
        self.in_flight += 1

    def finished(self, computed: bool) -> None:
        """One admitted edit left; ``computed``: it came back from the family (counts toward the rate)."""
        now = self._clock()
        self.in_flight -= 1
        if computed:
            self._finished.append(now)
        if self.in_flight == 0 and self._busy_since is not None:
            self._busy.append((self._busy_since, now))
            self._busy_since = None
        self._forget(now)

    def _forget(self, now: float) -> None:
        start = now - WINDOW_S
        while self._finished and self._finished[0] < start:
            self._finished.popleft()
        while self._busy and self._busy[0][1] < start:
            self._busy.popleft()


class LoopLag:
    """How late this event loop runs: a task that sleeps ``interval_s`` at a time and notes how late it woke.

    An ingress replica serves every request on one event loop. When its CPU is the bottleneck (more
    requests arrive than it can even parse), requests wait for the loop *before* any handler sees
    them, so edit admission, which counts what is in flight, finds little in flight and lets them
    all in. The loop's lateness is what such a wait looks like from inside: while it is over the
    limit, the ingress answers new requests 429 at once instead of adding them to the backlog.
    The lateness of the last two wakes counts, the smaller of them: a backlog makes every wake
    late, while a single stall (a collection, a slow import) makes one late and should shed nothing.
    """

    def __init__(self, interval_s: float = 0.02, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lags_s = collections.deque([0.0, 0.0], maxlen=2)  # how late the last two wakes were
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Watch the running loop (a no-op while already watching it; the first request calls it).
        A new loop (a test client's) gets a new watcher; the old one went with its loop."""
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._lags_s.extend((0.0, 0.0))
            self._task = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            due = self._clock() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.observe(self._clock() - due)

    def observe(self, lag_s: float) -> None:
        """Record one wake that came ``lag_s`` late."""
        self._lags_s.append(max(0.0, lag_s))

    def lag_s(self) -> float:
        """The loop's sustained lateness: the smaller of its last two wakes' (0 before any)."""
        return min(self._lags_s)
