"""Edits bound for the same model, sent to the family as one Serve call when they arrive together.

Every Serve call costs CPU on both ends whatever it carries: the handle's routing and the actor
call in the ingress, request handling and result serialisation in the replica (about as much as
the one-hop floor's whole second hop, loadtests/serving_cost.py). The family batches edits anyway,
so edits that meet in the ingress can travel together: a call carries up to ``max_items`` tasks
(``FamilyDeployment.run_tasks``), and each task still joins the replica's batch queue on its own.

When the model has no call in flight, an edit leaves on the next turn of the event loop (with any
that arrived in the same turn): a lone request waits for nothing. While a call is in flight, the
replicas are busy and a new edit would wait in their queue anyway; it waits here instead, at most
``window_s``, for others to share its call. ``window_s = 0`` sends every edit alone, at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from service import metrics
from service.tasks import EditOutput, EditTask


class CoalescedCalls:
    """The calls of one (model, background) pair of ``family``; ``handle``: a DeploymentHandle on ``run_tasks``."""

    def __init__(self, family: str, handle: Any, window_s: float, max_items: int) -> None:
        self.family = family
        self.handle = handle
        self.window_s = window_s
        self.max_items = max(1, max_items)
        self.in_flight = 0  # calls sent and not yet answered
        self._pending: list[tuple[EditTask, asyncio.Future]] = []
        self._timer: asyncio.Handle | None = None

    def submit(self, task: EditTask) -> "asyncio.Future[EditOutput]":
        """A future of ``task``'s output (or its exception). Cancelling it gives up on the task; a
        call whose every task was given up is cancelled in the family too."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((task, future))
        if len(self._pending) >= self.max_items or self.window_s <= 0:
            self._send()
        elif self._timer is None:
            if self.in_flight == 0:
                self._timer = loop.call_soon(self._send)
            else:
                self._timer = loop.call_later(self.window_s, self._send)
        return future

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [(task, future) for task, future in self._pending if not future.done()]  # drop those given up
        self._pending = []
        if not batch:
            return
        self.in_flight += 1
        metrics.CALL_EDITS.labels(self.family).observe(len(batch))
        response = self.handle.remote([task for task, _ in batch])
        futures = [future for _, future in batch]
        give_up = _cancel_when_all_done(futures, response.cancel)
        for future in futures:
            future.add_done_callback(give_up)
        asyncio.ensure_future(self._deliver(response, futures))

    async def _deliver(self, response: Any, futures: list[asyncio.Future]) -> None:
        try:
            results = await response
        except asyncio.CancelledError:  # every caller gave up, or the loop is closing
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:  # the call failed as a whole (replica died, back-pressure, unavailable)
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        else:
            for future, result in zip(futures, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self.in_flight -= 1
            if self._pending and self.in_flight == 0:  # the replicas took everything sent: no need to wait more
                self._send()


def _cancel_when_all_done(futures: list[asyncio.Future], cancel: Callable[[], None]) -> Callable[[asyncio.Future], None]:
    """A done-callback that calls ``cancel`` once every future was cancelled (all callers gave up)."""

    def check(_: asyncio.Future) -> None:
        if all(future.cancelled() for future in futures):
            cancel()

    return check
