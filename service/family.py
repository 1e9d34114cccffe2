"""Base of every family deployment: dynamic batching, grouping, multiplexed model loading, health.

A family subclass supplies ``load_model`` (manifest + weight bytes -> ready model),
``health_forward`` and one handler method per op, each a thin adapter over its pure edit ops. What
the replica needs to know of an op comes from the op's declaration in the family's folder
(``schemas.ops.OpSpec``, read through ``service.families``): the handler's method name, the group
key (which tasks can share one tensor batch), whether its groups are padded to batch buckets, and
the params model each task's ``params`` is read as (once per task, ``op_params``). Everything else —
the ``@serve.batch`` queue, per-(model, op, group key) grouping, dispatch to the handler, timings,
image encoding off the batch loop, ``@serve.multiplexed`` model cache, ``reconfigure`` of batch
settings, padding of groups to batch buckets and the warm-up of compiled generators at replica
start — lives here once.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import os
import time
from collections import defaultdict
from typing import Any, Hashable

import numpy as np
from ray import serve

from schemas.edits import DEFAULT_QUALITY, OUTPUT_MEDIA_TYPES
from service import metrics
from service.autoscaling import EDITS_METRIC
from service.config import get_settings
from service.errors import DeadlineExceeded, ModelBroken, ProblemError, Unprocessable
from service.families import get_op, op_table
from service.images import encode_image
from service.logs import get_logger, set_level
from service.registry import ModelRegistry
from service.storage import AssetStore
from service.tasks import EditOutput, EditTask

DEFAULT_BATCH = {"max_batch_size": 8, "batch_wait_timeout_s": 0.02}


def batch_buckets(max_batch_size: int) -> list[int]:
    """Group sizes a compiled generator is specialised for: the powers of two below
    ``max_batch_size``, and ``max_batch_size`` itself (8 -> [1, 2, 4, 8]; 12 -> [1, 2, 4, 8, 12])."""
    assert max_batch_size >= 1, max_batch_size
    return [1 << k for k in range(max_batch_size.bit_length()) if 1 << k < max_batch_size] + [max_batch_size]


def bucket_size(group_size: int, buckets: list[int]) -> int:
    """The smallest bucket holding ``group_size`` tasks; a group larger than every bucket keeps its size."""
    return next((size for size in buckets if size >= group_size), group_size)


@dataclasses.dataclass(frozen=True)
class WarmupRequest:
    """One edit a family replica runs at every batch bucket before it takes traffic (compile warm-up)."""

    op: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)  # the op's params; defaults fill the rest
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)  # the op's inputs; a missing seed is the task index
    assets: dict[str, bytes] = dataclasses.field(default_factory=dict)  # bytes of the image asset ids the inputs name


class GroupOutput:
    """One task's result from an op's handler (``run_group``): an image, JSON-able extras, and the box
    of the image the op changed, ``(x, y, width, height)``, when it knows one (inpaint: its hole's
    bounding box); None means the whole image. ``output.region`` returns only that box
    (:func:`changed_region`)."""

    __slots__ = ("image", "extras", "changed_box")

    def __init__(
        self, image: np.ndarray, extras: dict[str, Any] | None = None, changed_box: tuple[int, int, int, int] | None = None
    ) -> None:
        assert image.dtype == np.uint8 and image.ndim in (2, 3), f"uint8 HxW[x3] expected, got {image.dtype} {image.shape}"
        if changed_box is not None:
            x, y, width, height = changed_box
            assert width > 0 and height > 0 and 0 <= x and 0 <= y, f"changed_box {changed_box} is empty or negative"
            assert x + width <= image.shape[1] and y + height <= image.shape[0], f"changed_box {changed_box} leaves a {image.shape} image"
        self.image = image
        self.extras = extras or {}
        self.changed_box = changed_box


def changed_region(output: GroupOutput) -> GroupOutput:
    """``output.region``: the output cut to the box its op changed (the whole image when the op named
    none), with extras saying where that box lies in the whole result, so a client that composites
    itself pastes it back at ``region.x, region.y``."""
    full_height, full_width = output.image.shape[:2]
    x, y, width, height = output.changed_box or (0, 0, full_width, full_height)
    extras = {
        **output.extras,
        "region": {"x": x, "y": y, "width": width, "height": height},
        "full_size": {"width": full_width, "height": full_height},
    }
    # A view, not a copy: this runs on the replica's event loop, and the encoder reads strided arrays
    # in its own thread.
    return GroupOutput(output.image[y : y + height, x : x + width], extras, (0, 0, width, height))


def finished_output(task: EditTask, output: GroupOutput) -> GroupOutput:
    """A handler's output as the client gets it: with what the ingress's fit_images did to the photos
    in its extras (the handler's own extras win), cut to its changed region when output.region asks."""
    if task.fit_extras:
        output = GroupOutput(output.image, {**task.fit_extras, **output.extras}, output.changed_box)
    return changed_region(output) if task.encoding.get("region") else output


class PendingOutput:
    """One task's computed result whose group is still being encoded (``finish`` awaits the bytes)."""

    __slots__ = ("encoded", "position", "output", "timing")

    def __init__(
        self, encoded: "asyncio.Future[tuple[list[tuple[bytes, str]], float]]", position: int, output: GroupOutput, **timing: Any
    ) -> None:
        self.encoded, self.position, self.output, self.timing = encoded, position, output, timing

    async def finish(self) -> EditOutput:
        images, encode_s = await self.encoded
        data, media_type = images[self.position]
        return EditOutput(
            data=data,
            media_type=media_type,
            width=int(self.output.image.shape[1]),
            height=int(self.output.image.shape[0]),
            extras=self.output.extras,
            encode_ms=1e3 * encode_s,
            **self.timing,
        )


class PriorityGate:
    """Synchronous edits first: job items enter the batch queue only while none is waiting or running.

    Interactive tasks pass at once. A background task waits until no interactive task is in this
    replica and fewer than ``background_limit`` background tasks are in the queue, so a synchronous
    edit arriving during a job waits behind at most one small batch of job items and never shares a
    batch with more than that. After ``max_wait_s`` a background task goes anyway, so jobs still
    progress on a replica that is never idle.
    """

    def __init__(self, background_limit: int, max_wait_s: float) -> None:
        self.background_limit = background_limit
        self.max_wait_s = max_wait_s
        self.interactive_in = 0
        self.background_in = 0
        self.last_interactive = float("-inf")  # time.monotonic() when an interactive task last left
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # made on first use, inside the replica's event loop
            self._changed = asyncio.Condition()
        return self._changed

    def interactive_idle_s(self) -> float:
        """0 while an interactive task is in; else seconds since the last one left (inf: none yet)."""
        return 0.0 if self.interactive_in else time.monotonic() - self.last_interactive

    async def _notify(self) -> None:
        async with self._condition():
            self._condition().notify_all()

    async def run(self, background: bool, work):
        """Await ``work()`` (the batch queue) once this task may enter."""
        if not background:
            self.interactive_in += 1
            try:
                return await work()
            finally:
                self.interactive_in -= 1
                self.last_interactive = time.monotonic()
                await self._notify()
        deadline = time.monotonic() + self.max_wait_s
        changed = self._condition()
        async with changed:
            while (self.interactive_in or self.background_in >= self.background_limit) and time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(changed.wait(), timeout=deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
            self.background_in += 1
        try:
            return await work()
        finally:
            self.background_in -= 1
            await self._notify()


class FamilyDeployment(abc.ABC):
    family: str = ""
    # Ops whose group is one forward pass per task of a fixed shape (declared ``OpSpec.bucketed``; set
    # from the declarations in __init__). With accel_compile on, their groups are padded (last task
    # repeated) to a batch bucket, so a compiled generator meets a few batch sizes, each compiled by
    # the warm-up, instead of recompiling for every group size.
    bucketed_ops: frozenset[str] = frozenset()

    def __init__(self) -> None:
        import torch  # families need torch; the ingress never imports this module

        from service.acceleration import Acceleration

        self.settings = get_settings()
        self.store = AssetStore(self.settings)
        self.registry = ModelRegistry(self.store)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.acceleration = Acceleration.from_settings(self.settings)
        self.acceleration.check_device(self.device)
        self.edits_in = 0  # edits inside run_tasks now, for the autoscaler
        self.gate = PriorityGate(max(1, DEFAULT_BATCH["max_batch_size"] // 2), self.settings.jobs_max_yield_s)
        self.batch_buckets = batch_buckets(DEFAULT_BATCH["max_batch_size"])
        self.warmup_seconds: dict[str, float] = {}  # "model/op/bucket" -> seconds of its first (compiling) run
        set_level(self.settings.log_level)
        self.log = get_logger(f"collage.family.{self.family}")
        self.bucketed_ops = self.declared_bucketed_ops()
        self._batch_hist = metrics.family_batch_size()  # None if Ray cannot create it

    # ---- family-specific hooks -------------------------------------------------------------
    @abc.abstractmethod
    def load_model(self, manifest: dict[str, Any], weights: bytes) -> Any:
        """Manifest + weight bytes -> the object the op handlers receive (generator on self.device)."""

    # ---- the op declarations ---------------------------------------------------------------
    def declared_bucketed_ops(self) -> frozenset[str]:
        """The family's ops declared ``bucketed``."""
        return frozenset(name for name, spec in op_table().get(self.family, {}).items() if spec.bucketed)

    @staticmethod
    def op_params(spec: Any, task: EditTask) -> Any:
        """The task's params as an instance of its op's params model, built once per task. ``params``
        was validated by the ingress and dumped as JSON: this only gives it back its types (and the
        model's defaults to a task built by hand with fewer params)."""
        if task.typed_params is None:
            task.typed_params = spec.params_model.model_validate(task.params)
        return task.typed_params

    def group_key(self, task: EditTask) -> Hashable:
        """Extra key (beyond model and op) of tasks that can run as one tensor batch: the op's declared
        ``group_key``, else the tasks' image shapes."""
        spec = get_op(self.family, task.op)
        if spec is not None and spec.group_key is not None:
            return spec.group_key(task, self.op_params(spec, task))
        return tuple(sorted((name, image.shape) for name, image in task.images.items()))

    def run_group(self, model: Any, op: str, tasks: list[EditTask]) -> list[GroupOutput]:
        """Tasks of one (model, op, group_key) group -> one output each, computed as one tensor batch by
        the op's declared handler: ``handler(model, tasks, params)``, ``params`` the tasks' typed params."""
        spec = get_op(self.family, op)
        if spec is None:
            raise Unprocessable(f"{self.family} op {op!r} is not served by this deployment")
        handler = getattr(self, spec.handler)
        return handler(model, tasks, [self.op_params(spec, task) for task in tasks])

    @abc.abstractmethod
    def health_forward(self) -> None:
        """A tiny forward pass proving the replica can compute; raise on failure."""

    def warmup_requests(self, manifest: dict[str, Any]) -> list[WarmupRequest]:
        """Edits that compile this model's hot paths at replica start (accel_compile); none by default."""
        return []

    def run_group_accelerated(self, model: Any, op: str, tasks: list[EditTask]) -> list[GroupOutput]:
        """``run_group`` under the configured autocast precision (service/acceleration.py), with a
        compiled generator's groups padded to a batch bucket (the padding's outputs are dropped)."""
        padded = tasks
        if self.acceleration.compile and op in self.bucketed_ops:
            padded = tasks + [tasks[-1]] * (bucket_size(len(tasks), self.batch_buckets) - len(tasks))
        with self.acceleration.autocast(self.device):
            return self.run_group(model, op, padded)[: len(tasks)]

    def warmup_model_names(self) -> list[str]:
        """``accel_warmup_models``: listed names, or ``*`` = this family's registered models (by name),
        at most as many as a replica keeps loaded."""
        wanted = self.settings.accel_warmup_models.strip()
        if not wanted:
            return []
        if wanted == "*":
            names = sorted(m["name"] for m in self.registry.list_manifests() if m.get("family") == self.family)
        else:
            names = [n.strip() for n in wanted.split(",") if n.strip()]
        return names[: self.settings.max_models_per_replica]

    async def warm_up(self) -> None:
        """Run every warm-up request at every batch bucket, so compiling happens before this replica
        takes traffic (Serve calls ``reconfigure`` before the replica counts as started) and not in
        the first edits' latency. A model of another family or one that fails to load is logged and
        skipped: a replica that cannot warm one model still serves the others."""
        from service.edits import build_task

        for name in self.warmup_model_names():
            try:
                model = await self.get_model(name)
                manifest = await asyncio.to_thread(self.registry.get_manifest, name)
            except Exception as exc:
                self.log.warning("warm-up skipped a model", extra={"model": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            for request in self.warmup_requests(manifest):
                for size in self.batch_buckets:
                    key = f"{name}/{request.op}/{size}"
                    if key in self.warmup_seconds:  # a reconfigure with new buckets compiles only the new ones
                        continue
                    tasks = [
                        build_task(
                            name,
                            manifest,
                            request.op,
                            request.params,
                            request.inputs,
                            request.assets.__getitem__,
                            self.settings.limits(),
                            seed=i,
                            background=True,
                        )
                        for i in range(size)
                    ]
                    started = time.perf_counter()
                    await asyncio.to_thread(self.run_group_accelerated, model, request.op, tasks)
                    self.warmup_seconds[key] = round(time.perf_counter() - started, 3)
        if self.warmup_seconds:
            self.log.info("warm-up done", extra={"warmup_s": self.warmup_seconds, "accel": self.acceleration.describe()})

    # ---- Serve plumbing --------------------------------------------------------------------
    async def reconfigure(self, config: dict[str, Any]) -> None:
        config = {**DEFAULT_BATCH, **(config or {})}
        self.handle_batch.set_max_batch_size(int(config["max_batch_size"]))
        self.handle_batch.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))
        self.gate.background_limit = max(1, int(config["max_batch_size"]) // 2)
        self.batch_buckets = batch_buckets(int(config["max_batch_size"]))
        self.log.info("batch settings", extra={"batch": config})
        if self.acceleration.compile:
            await self.warm_up()

    def check_health(self) -> None:
        self.health_forward()

    async def resources(self) -> dict[str, Any]:
        """Peak memory of this replica process (and of its GPU, when it has one), for the benchmarks."""
        import resource

        import torch

        report: dict[str, Any] = {
            "pid": os.getpid(),
            "device": str(self.device),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "accel": self.acceleration.describe(),
            "warmup_s": dict(self.warmup_seconds),
        }
        if self.device.type == "cuda":
            report["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            report["gpu_peak_reserved_mb"] = torch.cuda.max_memory_reserved(self.device) / 2**20
        return report

    async def ready(self) -> bool:
        await asyncio.to_thread(self.health_forward)
        return True

    @serve.multiplexed(max_num_models_per_replica=get_settings().max_models_per_replica)
    async def get_model(self, model_id: str) -> Any:
        manifest = await asyncio.to_thread(self.registry.get_manifest, model_id)
        if manifest.get("family") != self.family:
            raise Unprocessable(f"model {model_id!r} belongs to family {manifest.get('family')!r}, not {self.family!r}")
        weights = await asyncio.to_thread(self.registry.load_weights, model_id)
        started = time.perf_counter()
        try:
            model = await asyncio.to_thread(lambda: self.acceleration.prepare(self.load_model(manifest, weights)))
        except ProblemError:
            raise
        except Exception as exc:  # the weights themselves (shapes, keys, format): every later try fails the same way
            reason = f"{type(exc).__name__}: {exc}"[:500]
            self.log.error("model does not load", extra={"model": model_id, "error": reason})
            await asyncio.to_thread(self.registry.mark_broken, model_id, manifest.get("weights_sha256"), reason)
            raise ModelBroken(
                f"model {model_id!r} cannot be loaded ({reason}); an operator must register working weights for it (collage models upload)",
                model=model_id,
            ) from None
        self.log.info("model loaded", extra={"model": model_id, "load_ms": round(1e3 * (time.perf_counter() - started), 1)})
        return model

    async def __call__(self, task: EditTask) -> EditOutput:
        (result,) = await self.run_tasks([task])
        if isinstance(result, BaseException):
            raise result
        return result

    async def run_tasks(self, tasks: list[EditTask]) -> "list[EditOutput | BaseException]":
        """Edits the ingress sent together as one call (service/coalesce.py): each joins the batch
        queue as a call of its own would; one result or exception per task, in order, so one
        task's failure is not its neighbours'. All tasks of a call share ``background``."""
        received_at = time.time()
        background = tasks[0].background
        self.edits_in += len(tasks)
        try:
            results = await self._run_tasks(tasks, background)
        finally:
            self.edits_in -= len(tasks)
        answered_at = time.time()
        for result in results:
            if isinstance(result, EditOutput):  # the ingress tells the Ray call's transit from the time spent here
                result.received_at, result.answered_at = received_at, answered_at
        return results

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric: edits in this replica (service/autoscaling.py scales on it)."""
        return {EDITS_METRIC: float(self.edits_in)}

    async def _run_tasks(self, tasks: list[EditTask], background: bool) -> "list[EditOutput | BaseException]":
        # Synchronous edits alone in this replica: no batch can form, so waiting batch_wait_timeout_s
        # for one only adds latency, and they run at once as one batch. (Check and the gate's count
        # happen with no await between them, so two calls arriving together do not both take this
        # path.) Job items always go through the batch queue: they come in numbers and want full
        # batches, not the lowest latency.
        idle = self.settings.batch_idle_fast_path and not background and self.gate.interactive_in == 0 and self.gate.background_in == 0
        if idle:
            results = await self.gate.run(False, lambda: self.run_batch(tasks))
        else:
            results = await asyncio.gather(*(self.gate.run(background, lambda task=task: self.handle_batch(task)) for task in tasks))
        sync_idle_s = self.gate.interactive_idle_s()  # lets the job runner back off while sync edits come in
        finished: list[EditOutput | BaseException] = []
        for result in results:
            if isinstance(result, PendingOutput):
                result = await result.finish()
            if isinstance(result, EditOutput):
                result.sync_idle_s = sync_idle_s
            finished.append(result)
        return finished

    def _timed_group(self, model: Any, op: str, tasks: list[EditTask]) -> tuple[list[GroupOutput], float]:
        """``run_group_accelerated`` and its seconds, timed in the worker thread (not the hop to it)."""
        started = time.perf_counter()
        outputs = self.run_group_accelerated(model, op, tasks)
        return outputs, time.perf_counter() - started

    def _encode_group(self, tasks: list[EditTask], outputs: list[GroupOutput]) -> tuple[list[tuple[bytes, str]], float]:
        """Each output's image in its task's encoding: [(bytes, media type)], and the seconds per image."""
        started = time.perf_counter()
        level = self.settings.png_compress_level
        encoded = [
            (
                encode_image(output.image, task.encoding["format"], task.encoding.get("quality", DEFAULT_QUALITY), level),
                OUTPUT_MEDIA_TYPES[task.encoding["format"]],
            )
            for task, output in zip(tasks, outputs)
        ]
        return encoded, (time.perf_counter() - started) / max(1, len(outputs))

    @serve.batch(**DEFAULT_BATCH)
    async def handle_batch(self, tasks: list[EditTask]) -> "list[PendingOutput | BaseException]":
        return await self.run_batch(tasks)

    async def run_batch(self, tasks: list[EditTask]) -> "list[PendingOutput | BaseException]":
        """One dynamic batch: grouped by (model, op, group_key), each group one tensor batch; returns as
        soon as the tensors are computed, with each group's encoding under way."""
        batch_started = time.time()
        if self._batch_hist is not None:
            self._batch_hist.observe(len(tasks), tags={"family": self.family})
        groups: dict[Hashable, list[int]] = defaultdict(list)
        results: list[PendingOutput | BaseException | None] = [None] * len(tasks)
        for index, task in enumerate(tasks):
            if task.deadline is not None and task.deadline <= batch_started:  # the caller gave up: compute nothing for it
                results[index] = DeadlineExceeded(
                    "the request's deadline (X-Request-Timeout) passed while it was queued; it was not computed"
                )
                continue
            try:
                key = self.group_key(task)
            except ProblemError as exc:
                results[index] = exc
                continue
            except Exception as exc:  # a task the op's declaration cannot read (a bug): fail it alone
                self.log.exception("group key failed", extra={"model": task.model, "op": task.op})
                results[index] = RuntimeError(f"{self.family}.{task.op} failed: {type(exc).__name__}: {exc}")
                continue
            groups[(task.model, task.op, key)].append(index)

        for (model_id, op, _), indices in groups.items():
            members = [tasks[i] for i in indices]
            try:
                model = await self.get_model(model_id)
                outputs, compute_s = await asyncio.to_thread(self._timed_group, model, op, members)
                assert len(outputs) == len(members), f"run_group returned {len(outputs)} outputs for {len(members)} tasks"
            except ProblemError as exc:
                for i in indices:
                    results[i] = exc
                continue
            except Exception as exc:  # a bug or a device failure: fail this group, keep the others
                self.log.exception("group failed", extra={"model": model_id, "op": op})
                for i in indices:
                    results[i] = RuntimeError(f"{self.family}.{op} failed: {type(exc).__name__}: {exc}")
                continue
            outputs = [finished_output(task, output) for task, output in zip(members, outputs)]
            # Encoding runs off the batch loop: the queue's next batch computes while this group's
            # images are encoded in another thread, and each caller awaits its own group's bytes.
            encoded = asyncio.ensure_future(asyncio.to_thread(self._encode_group, members, outputs))
            for position, (i, task) in enumerate(zip(indices, members)):
                results[i] = PendingOutput(
                    encoded,
                    position,
                    outputs[position],
                    queue_ms=max(0.0, 1e3 * (batch_started - task.submitted_at)),
                    compute_ms=1e3 * compute_s,
                    batch_size=len(tasks),
                    group_size=len(members),
                )
        return results  # type: ignore[return-value]
