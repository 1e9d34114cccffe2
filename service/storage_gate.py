"""How long a request waits for object storage: a deadline per storage step and a circuit breaker.

Storage calls are blocking boto3 calls in worker threads (``in_storage_thread``). A stalled S3 (accepting connections,
answering nothing) would hold every request for botocore's read timeout times its attempts (30 s
× 3 by default), and every new request would join them. On the request path the ingress instead

- gives each storage step (one thread-pool call: an edit's lookups and input reads, its result
  writes, an upload, a job's status read …) at most ``storage_deadline_s``, or what is left of the
  request's own deadline (``X-Request-Timeout``) if that is sooner, and answers **503** with
  ``Retry-After`` when it passes;
- counts consecutive storage failures (timeouts and 503s of the storage layer); after
  ``storage_breaker_failures`` of them the breaker is *open* for ``storage_breaker_open_s``: every
  storage step answers 503 at once, without touching S3. Then calls go through again; the first
  success closes the breaker, a failure opens it again.

The thread of a step that timed out runs on until its socket times out; its outcome is dropped.
While it runs it holds one of the ``STORAGE_THREADS``; steps queued behind a full pool time out
the same way, and the breaker opens after the first ``storage_breaker_failures`` of them.
Nothing is half-written by that: results and assets are single PUTs, complete or absent. Jobs do
not use a gate: the job runner retries storage with backoff for as long as it takes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import math
import threading
import time
from typing import Any, Callable

from service import metrics
from service.errors import DeadlineExceeded, StorageUnavailable

# Storage calls run on threads of their own that live as long as the process. AnyIO's worker
# threads (starlette's run_in_threadpool) are stopped when the task that started them ends, and in a
# Serve replica, whose loop has no root task for AnyIO to find, that is the request's task: every
# request got a new thread and, as service.s3_fast keeps one connection per thread, a new TCP
# connection to S3 for every HEAD and PUT (1.5 connects per edit, 1,100 sockets in TIME-WAIT after
# 800 edits). 40 threads: AnyIO's default limit, so as many storage calls run at once as before.
STORAGE_THREADS = 40
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _storage_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(max_workers=STORAGE_THREADS, thread_name_prefix="collage-storage")
    return _pool


async def in_storage_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a storage thread, with the caller's context variables (the request's log context)."""
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(_storage_pool(), call)


class StorageGate:
    """Deadline and circuit breaker around the request path's storage steps (module docstring)."""

    def __init__(self, deadline_s: float, failures_to_open: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline_s = deadline_s  # longest one storage step may take
        self.failures_to_open = failures_to_open  # consecutive failures that open the breaker
        self.open_s = open_s  # how long an open breaker answers 503 without trying
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()  # failures are recorded from the event loop, successes too; cheap either way

    def retry_after_s(self) -> int:
        """Seconds until the breaker lets calls through again (0: closed)."""
        return max(0, math.ceil(self._open_until - self._clock()))

    def check(self) -> None:
        """503 at once while the breaker is open."""
        wait_s = self.retry_after_s()
        if wait_s:
            raise StorageUnavailable(
                f"object storage is known to be down (the last {self._failures} calls failed); retry in {wait_s} s", retry_after_s=wait_s
            )

    def record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= self.failures_to_open:
                if self._open_until <= self._clock():
                    metrics.STORAGE_BREAKER_OPENED.inc()
                self._open_until = self._clock() + self.open_s

    async def run(self, fn: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
        """``fn(*args)`` in a worker thread, within the step's deadline (``deadline``: the request's, as
        time.time()); StorageUnavailable (503) when the breaker is open, the step's deadline passes or storage fails;
        DeadlineExceeded (504) when the request's own deadline had passed before the step began."""
        self.check()
        left_s = None if deadline is None else deadline - time.time()
        if left_s is not None and left_s <= 0:  # gone before the step began: no storage call to blame
            raise DeadlineExceeded("the request's deadline (X-Request-Timeout) passed before the edit could run; it was not computed")
        budget_s = self.deadline_s if left_s is None else min(self.deadline_s, left_s)
        try:
            result = await asyncio.wait_for(in_storage_thread(fn, *args), timeout=max(budget_s, 0.01))
        except asyncio.TimeoutError:
            self.record(False)
            metrics.STORAGE_TIMEOUTS.inc()
            raise StorageUnavailable(
                f"object storage did not answer within {max(budget_s, 0):.1f} s; retry later", retry_after_s=max(1, self.retry_after_s())
            ) from None
        except StorageUnavailable:
            self.record(False)
            raise
        self.record(True)
        return result


class NoGate:
    """The job runner's: storage steps in a worker thread, no deadline, no breaker (jobs retry)."""

    async def run(self, fn: Callable[..., Any], *args: Any, deadline: float | None = None) -> Any:
        return await in_storage_thread(fn, *args)
