"""The job runner: a Serve deployment (``jobs_runner_replicas`` replicas) that executes jobs in the background.

It runs every item through the same :class:`~service.edits.EditPipeline` as ``POST /v1/edits``,
calling the family deployments through their handles. Synchronous edits keep priority in two
places: the runner dispatches ``jobs_max_in_flight`` items at a time (all jobs together; enough to
fill a dynamic batch) only while the families report no synchronous traffic, and
``jobs_min_in_flight`` while they do (:class:`DispatchLimit`); inside a family replica, job items
step aside while a synchronous edit waits (:class:`service.family.PriorityGate`).

It keeps no state of its own that matters: everything is in S3 (``service/jobs.py``). On start and
every ``jobs_poll_interval_s`` it picks up the jobs in ``job-queue/`` it is not running, so a job
whose runner (or whole service) died resumes with the unfinished items only. The ingress also
pokes a replica on submit and cancel so that work starts without waiting for the next poll.

Several replicas share the queue: a replica runs a job only while it holds the job's lease
(``service/job_lease.py``), renewed every third of ``jobs_lease_s``. A replica that loses it (taken
over after its renewals stopped, or its own term ran out while S3 was unreachable) dispatches
nothing more and writes no record or status of that job any more; the new holder resumes the job
from its item records, as after a crash.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ray import serve

from schemas.edits import EditRequest
from service import metrics
from service.auth import Principal
from service.config import get_settings
from service.edits import EditPipeline, validate
from service.errors import NotFound, ProblemError, ServiceUnavailable, TooManyRequests
from service.families import load_fit_task
from service.job_lease import JobLease, conditional_writes_work, new_owner_id
from service.jobs import MAX_LISTED_ERRORS, JobStore, deliver_webhook, final_state, is_terminal, item_seed, utcnow
from service.logs import get_logger, set_level
from service.registry import ModelRegistry
from service.storage import AssetStore

log = get_logger("collage.job_runner")


class JobProgress:
    """Counts and first errors of one running job, and whether status.json needs rewriting."""

    def __init__(self, status: dict[str, Any], finished: dict[int, str]) -> None:
        self.status = status
        self.finished = finished  # item index -> state of the items recorded before this run
        self.unrecorded = 0  # items run but not recorded because the lease was not held at that moment
        total = status["counts"]["total"]
        succeeded = sum(1 for s in finished.values() if s == "succeeded")
        failed = len(finished) - succeeded
        status["counts"] = {"total": total, "succeeded": succeeded, "failed": failed, "cancelled": 0, "pending": total - len(finished)}
        self.dirty = True

    def finish_item(self, record: dict[str, Any]) -> None:
        counts = self.status["counts"]
        counts[record["state"]] += 1
        counts["pending"] -= 1
        if record["state"] == "failed" and len(self.status["errors"]) < MAX_LISTED_ERRORS:
            self.status["errors"].append({"index": record["index"], "problem": record["problem"]})
        self.dirty = True

    def set(self, **fields: Any) -> None:
        self.status.update(fields)
        self.dirty = True


class DispatchLimit:
    """How many job items may be in flight: ``high`` while the families are quiet, ``low`` while
    synchronous edits come in (family replicas report it with every result: ``sync_idle_s``)."""

    def __init__(self, high: int, low: int, quiet_s: float) -> None:
        self.high, self.low, self.quiet_s = high, min(low, high), quiet_s
        self.in_flight = 0
        self.last_sync = float("-inf")  # time.monotonic() of the latest synchronous edit a family reported
        self._released = asyncio.Event()

    def limit(self) -> int:
        return self.low if time.monotonic() - self.last_sync < self.quiet_s else self.high

    def observe(self, sync_idle_s: float | None) -> None:
        if sync_idle_s is not None:
            self.last_sync = max(self.last_sync, time.monotonic() - sync_idle_s)

    async def acquire(self) -> None:
        while self.in_flight >= self.limit():
            self._released.clear()
            try:  # re-check now and then: the limit rises by itself once sync traffic has been quiet for quiet_s
                await asyncio.wait_for(self._released.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._released.set()


@serve.deployment(num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
class JobRunner:
    async def __init__(self, families: dict[str, Any]) -> None:
        self.settings = get_settings()
        set_level(self.settings.log_level)
        store = AssetStore(self.settings)
        self.jobs = JobStore(store)
        self.edits = EditPipeline(self.settings, store, ModelRegistry(store), families)
        self._running: dict[str, asyncio.Task] = {}
        self._cancel_events: dict[str, asyncio.Event] = {}
        self._slots = DispatchLimit(self.settings.jobs_max_in_flight, self.settings.jobs_min_in_flight, self.settings.jobs_sync_quiet_s)
        # Exported on Ray's metrics port, beside Serve's own and the families' batch histogram (None without Ray).
        self._item_counter, self._running_gauge = metrics.job_items(), metrics.jobs_running()
        self.owner = new_owner_id(_replica_id())
        self._leases: dict[str, JobLease] = {}  # job id -> this runner's lease on it: held, or watched until it expires
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    # ---- called by the ingress ---------------------------------------------------------------
    async def start(self, job_id: str) -> None:
        self._ensure_running(job_id)

    async def cancel(self, job_id: str) -> None:
        if job_id in self._cancel_events:
            self._cancel_events[job_id].set()

    async def ready(self) -> bool:
        self.check_health()
        return True

    def check_health(self) -> None:
        if self._poller.done():
            raise RuntimeError(f"the job poller stopped: {self._poller.exception()!r}")

    # ---- scheduling --------------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        await self._check_conditional_writes()
        while True:
            try:
                queued = await asyncio.to_thread(self.jobs.queued_ids)
                for job_id in queued:
                    self._ensure_running(job_id)
                for job_id in set(self._leases) - set(queued) - set(self._running):  # finished elsewhere: stop watching
                    del self._leases[job_id]
            except ProblemError as exc:  # S3 down: try again at the next poll
                log.warning("job queue scan failed", extra={"error": exc.detail})
            await asyncio.sleep(self.settings.jobs_poll_interval_s)

    async def _check_conditional_writes(self) -> None:
        """Leases need an endpoint that honours If-None-Match / If-Match; with more than one runner,
        an endpoint that does not would let two run the same job, so this runner stops (and its
        health check says why). One runner alone runs correctly without them."""
        while True:
            try:
                honoured = await asyncio.to_thread(conditional_writes_work, self.jobs.store)
                break
            except ProblemError as exc:  # S3 down: nothing can run anyway; ask again
                log.warning("conditional-write check failed", extra={"error": exc.detail})
                await asyncio.sleep(self.settings.jobs_poll_interval_s)
        if not honoured:
            message = "the S3 endpoint does not honour If-None-Match / If-Match on PUT, which job leases need"
            if self.settings.jobs_runner_replicas > 1:
                raise RuntimeError(f"{message}; run one JobRunner replica (jobs_runner_replicas=1) on it")
            log.warning(message + "; fine for the one runner configured")

    def _ensure_running(self, job_id: str) -> None:
        if job_id not in self._running:
            self._cancel_events[job_id] = asyncio.Event()
            self._running[job_id] = asyncio.get_running_loop().create_task(self._run_job_guarded(job_id))
            self._report_running()

    def _report_running(self) -> None:
        if self._running_gauge is not None:  # the jobs this runner holds, not those whose lease it only watches
            self._running_gauge.set(sum(1 for job_id in self._running if job_id in self._leases and self._leases[job_id].held()))

    async def _run_job_guarded(self, job_id: str) -> None:
        lease = self._leases.get(job_id)
        if lease is None:
            lease = self._leases[job_id] = JobLease(self.jobs.store, job_id, self.owner, self.settings.jobs_lease_s)
        keeper = None
        try:
            if not await asyncio.to_thread(lease.try_acquire):
                return  # another runner holds it; the next poll looks again, and takes over once it expired
            keeper = asyncio.get_running_loop().create_task(self._keep_lease(lease))
            self._report_running()
            await self._run_job(job_id, lease)
        except Exception:  # e.g. S3 unavailable: the job stays queued and the next poll resumes it
            log.exception("job interrupted; it stays queued", extra={"job_id": job_id})
        finally:
            if keeper is not None:
                keeper.cancel()
            await self._give_up_lease(lease)
            self._running.pop(job_id, None)
            self._cancel_events.pop(job_id, None)
            self._report_running()

    async def _keep_lease(self, lease: JobLease) -> None:
        """Renew ``lease`` every third of its duration until cancelled or lost (then held() is False
        and the job's loops stop on their next check)."""
        while True:
            await asyncio.sleep(lease.renew_interval_s)
            try:
                if not await asyncio.to_thread(lease.renew):
                    return
            except ProblemError as exc:  # S3 unreachable: try again; the term runs out by itself meanwhile
                log.warning("job lease renewal failed", extra={"job_id": lease.job_id, "error": exc.detail})

    async def _give_up_lease(self, lease: JobLease) -> None:
        """Release a lease this runner still holds: at once for a finished job, and for one interrupted
        by an S3 error, so that any runner may resume it at the next poll."""
        if lease.held():
            try:
                await asyncio.to_thread(lease.release)
            except ProblemError as exc:  # S3 down: it expires instead (this runner takes its own back at once)
                log.warning("job lease release failed", extra={"job_id": lease.job_id, "error": exc.detail})

    # ---- one job -----------------------------------------------------------------------------
    async def _run_job(self, job_id: str, lease: JobLease) -> None:
        try:
            request = await asyncio.to_thread(self.jobs.read_request, job_id)
        except NotFound:  # a queue marker whose job is gone: nothing to run, ever
            log.warning("queued job has no request.json; dropped from the queue", extra={"job_id": job_id})
            await asyncio.to_thread(self.jobs.dequeue, job_id)
            return
        status = await asyncio.to_thread(self.jobs.read_status, job_id) or self.jobs.initial_status(request)
        if is_terminal(status):  # finished, but the runner stopped before the webhook or dequeue
            await self._finish(job_id, request, status, lease)
            return
        if request["source"] == "fit":
            await self._run_fit_job(job_id, request, status, lease)
            return
        items = await asyncio.to_thread(self.jobs.load_items, request, self.settings.jobs_max_items)
        progress = await self._start_progress(job_id, status, len(items))
        finished = progress.finished
        owner = Principal.from_json(request.get("owner"))  # items run with the submitting key's access
        cancel = self._cancel_events[job_id]
        flusher = asyncio.get_running_loop().create_task(self._flush_status(job_id, progress, cancel, lease))
        in_flight: set[asyncio.Task] = set()
        dispatch_stopped_by_lease = False
        try:
            await self._flush_once(job_id, progress, cancel, lease)
            for index, item in enumerate(items):
                if index in finished:
                    continue
                await self._slots.acquire()
                if cancel.is_set() or not lease.held():
                    dispatch_stopped_by_lease = not cancel.is_set()
                    self._slots.release()
                    break
                task = asyncio.get_running_loop().create_task(self._run_item(job_id, index, item, progress, owner, lease))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            # Cancelled or not, items already dispatched finish; a failed record write (S3 down)
            # is re-raised only after the others are done, so no item runs twice at once on resume.
            outcomes = await asyncio.gather(*in_flight, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        finally:
            flusher.cancel()
        if dispatch_stopped_by_lease or progress.unrecorded or not lease.held():
            # Items are missing from this run: the job stays queued for whoever holds the lease next
            # (this runner too, at its next poll, if the lease was only late to renew).
            log.warning("job lease not held; the job is left to its next holder", extra={"job_id": job_id})
            return
        counts = progress.status["counts"]
        counts["cancelled"], counts["pending"] = counts["pending"], 0
        progress.set(state=final_state(counts), finished_at=utcnow(), updated_at=utcnow())
        await asyncio.to_thread(self.jobs.write_status, job_id, progress.status)
        log.info("job finished", extra={"job_id": job_id, "state": progress.status["state"], "counts": counts})
        await self._finish(job_id, request, progress.status, lease)

    async def _start_progress(self, job_id: str, status: dict[str, Any], total: int) -> JobProgress:
        """The job's progress from its stored status and item records, marked running (or resumed, when
        an earlier runner had started it)."""
        finished = await asyncio.to_thread(self.jobs.finished_items, job_id)
        progress = JobProgress(status, finished)
        if status["started_at"] is None:
            progress.set(state="running", started_at=utcnow())
        else:
            progress.set(state="running", resumed=status.get("resumed", 0) + 1)
            log.info("job resumed", extra={"job_id": job_id, "finished": len(finished), "total": total})
        return progress

    async def _run_fit_job(self, job_id: str, request: dict[str, Any], status: dict[str, Any], lease: JobLease) -> None:
        """A ``fit`` job: one Ray task trains the model (the family's ``collage.fit_tasks`` entry point,
        service/families.py), with its own CPUs/GPUs (``fit_num_cpus``, ``fit_num_gpus``), so no family
        replica's batch loop waits on it.
        While it runs the task owns status.json (progress, cancel checks); this writes the item record
        and the final status. A runner restarted mid-fit starts the training again from the beginning, and
        so does the runner that takes the job over from one that lost its lease (which cancels its task)."""
        import ray

        progress = await self._start_progress(job_id, status, 1)
        finished = progress.finished
        cancel = self._cancel_events[job_id]
        await self._flush_once(job_id, progress, cancel, lease)
        if 0 not in finished and not cancel.is_set() and lease.held():
            fit = request["fit"]
            task = ray.remote(load_fit_task(fit["family"])).options(
                num_cpus=self.settings.fit_num_cpus, num_gpus=self.settings.fit_num_gpus, max_retries=0
            )
            ref = task.remote(job_id, fit, json.loads(json.dumps(progress.status)))
            try:
                outcome = await self._await_while_held(ref, lease)
                if outcome is None:
                    ray.cancel(ref, force=True)  # its progress writes would race the new holder's run
                    log.warning("job lease lost mid-fit; the training task was cancelled", extra={"job_id": job_id})
                    return
            except Exception as exc:  # the task's worker died or the task itself broke
                log.exception("fit task failed", extra={"job_id": job_id})
                written = await asyncio.to_thread(self.jobs.read_status, job_id) or {}  # the task's last progress
                outcome = {
                    "state": "failed",
                    "fit": written.get("fit"),
                    "record": {
                        "index": 0,
                        "state": "failed",
                        "op": "fit",
                        "attempts": 1,
                        "problem": ProblemError(f"internal error: {type(exc).__name__}").to_problem(),
                    },
                }
            progress.status["fit"] = outcome.get("fit")
            record = outcome.get("record")
            if not lease.held():
                return
            if record is not None:
                record.update(completed_at=utcnow(), runner=self.owner)
                await asyncio.to_thread(self.jobs.write_item, job_id, record)
                progress.finish_item(record)
                if self._item_counter is not None:
                    self._item_counter.inc(tags={"state": record["state"]})
        counts = progress.status["counts"]
        counts["cancelled"], counts["pending"] = counts["pending"], 0
        progress.set(state=final_state(counts), finished_at=utcnow(), updated_at=utcnow())
        if not lease.held():
            return
        await asyncio.to_thread(self.jobs.write_status, job_id, progress.status)
        log.info("fit job finished", extra={"job_id": job_id, "state": progress.status["state"]})
        await self._finish(job_id, request, progress.status, lease)

    @staticmethod
    async def _await_while_held(ref: Any, lease: JobLease) -> Any:
        """The result of ``ref``, or None once ``lease`` is no longer held (checked every renewal interval)."""
        outcome = asyncio.ensure_future(ref)
        while lease.held():
            done, _ = await asyncio.wait({outcome}, timeout=lease.renew_interval_s)
            if done:
                return outcome.result()
        outcome.cancel()
        return None

    async def _run_item(
        self, job_id: str, index: int, item: dict[str, Any], progress: JobProgress, owner: Principal, lease: JobLease
    ) -> None:
        record: dict[str, Any] = {"index": index, "attempts": 0}
        try:
            try:
                body = validate(EditRequest, item, f"items[{index}]")
                while True:  # the family is busy or restarting: wait, then try again
                    record["attempts"] += 1
                    try:
                        result = await self.edits.run(body, lambda: item_seed(job_id, index), background=True, principal=owner)
                        self._slots.observe(result.sync_idle_s)
                        break
                    except (TooManyRequests, ServiceUnavailable):
                        if record["attempts"] >= self.settings.jobs_item_attempts:
                            raise
                        await asyncio.sleep(min(8.0, 0.5 * 2 ** (record["attempts"] - 1)))
                record.update(
                    state="succeeded",
                    result_id=result.result_id,
                    model=body.model,
                    op=body.op,
                    cached=result.cached,
                    seed=result.seed,
                    width=result.width,
                    height=result.height,
                    extras=result.extras,
                )
            except ProblemError as exc:
                record.update(state="failed", problem=exc.to_problem())
            except Exception as exc:  # a bug or a device failure in this item only
                log.exception("job item failed", extra={"job_id": job_id, "index": index})
                record.update(state="failed", problem=ProblemError(f"internal error: {type(exc).__name__}").to_problem())
            if isinstance(item, dict) and record["state"] == "failed":
                record.update(model=item.get("model"), op=item.get("op"))
            if not lease.held():  # the job's next holder records this item (its result is stored: a cache hit then)
                progress.unrecorded += 1
                return
            record.update(completed_at=utcnow(), runner=self.owner)
            # False when a record in this state stands already (a write of the runner that lost the lease,
            # landing after this runner's listing; or a retry of this very write): kept, and counted the same
            await asyncio.to_thread(self.jobs.write_item, job_id, record)
            progress.finish_item(record)
            if self._item_counter is not None:
                self._item_counter.inc(tags={"state": record["state"]})
        finally:
            self._slots.release()

    async def _flush_once(self, job_id: str, progress: JobProgress, cancel: asyncio.Event, lease: JobLease) -> None:
        if not cancel.is_set() and await asyncio.to_thread(self.jobs.cancel_requested, job_id):
            cancel.set()
        if progress.dirty and lease.held():
            progress.dirty = False
            progress.status["updated_at"] = utcnow()
            await asyncio.to_thread(self.jobs.write_status, job_id, json.loads(json.dumps(progress.status)))

    async def _flush_status(self, job_id: str, progress: JobProgress, cancel: asyncio.Event, lease: JobLease) -> None:
        while True:
            await asyncio.sleep(self.settings.jobs_status_flush_s)
            try:
                await self._flush_once(job_id, progress, cancel, lease)
            except ProblemError as exc:  # a missed flush is harmless; the next one writes the same counts
                log.warning("status flush failed", extra={"job_id": job_id, "error": exc.detail})

    async def _finish(self, job_id: str, request: dict[str, Any], status: dict[str, Any], lease: JobLease) -> None:
        """Deliver the webhook (once; its outcome goes into status.json), then drop the job from the queue.
        Each step only while this runner holds the lease; the runner that took it over repeats what is left."""
        webhook = status.get("webhook")
        if webhook and webhook.get("state") == "pending" and lease.held():
            body = json.dumps({k: v for k, v in status.items() if k != "webhook"}, separators=(",", ":"), default=str).encode()
            secret = self.settings.webhook_secret.get_secret_value()
            status["webhook"] = await deliver_webhook(
                webhook["url"],
                body,
                secret,
                job_id=job_id,
                attempts=self.settings.webhook_max_attempts,
                backoff_s=self.settings.webhook_backoff_s,
                backoff_max_s=self.settings.webhook_backoff_max_s,
                timeout_s=self.settings.webhook_timeout_s,
                allow_private=self.settings.webhook_allow_private,
            )
            status["updated_at"] = utcnow()
            if not lease.held():
                return
            await asyncio.to_thread(self.jobs.write_status, job_id, status)
        if lease.held():
            await asyncio.to_thread(self.jobs.dequeue, job_id)


def _replica_id() -> str | None:
    """This Serve replica's id (the suffix of its actor's name), None outside a replica."""
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # noqa: BLE001 - no replica context (a test constructing the class directly)
        return None
