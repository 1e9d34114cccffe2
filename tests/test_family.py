"""The family base's batch handler, without Ray: grouping by (model, op, shape), per-group failures, timings."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.errors import Unprocessable
from service.family import FamilyDeployment, GroupOutput, PendingOutput, WarmupRequest, batch_buckets, bucket_size
from service.tasks import EditOutput, EditTask


class RecordingFamily(FamilyDeployment):
    family = "fake"

    def __init__(self) -> None:  # no storage, no metrics: the batch logic only
        import torch

        from service.acceleration import Acceleration

        self.groups: list[tuple[str, str, list[int]]] = []
        from service.config import Settings
        from service.family import PriorityGate

        self.acceleration, self.device = Acceleration(), torch.device("cpu")
        self.settings, self.gate = Settings(), PriorityGate(background_limit=4, max_wait_s=1.0)
        self._batch_hist = None
        self.log = __import__("logging").getLogger("test")
        self.batch_buckets, self.warmup_seconds, self.edits_in = batch_buckets(8), {}, 0

    async def get_model(self, model_id: str) -> str:
        if model_id == "broken":
            raise Unprocessable("model broken cannot load")
        return model_id

    def load_model(self, manifest, weights):
        return None

    def run_group(self, model, op, tasks):
        self.groups.append((model, op, [t.inputs["i"] for t in tasks]))
        if op == "explode":
            raise ZeroDivisionError("bug")
        return [GroupOutput(np.full((t.images["x"].shape[0], 4, 3), t.inputs["i"], np.uint8)) for t in tasks]

    def health_forward(self) -> None:
        pass


def task(i: int, model: str, op: str, height: int, encoding: dict | None = None) -> EditTask:
    return EditTask(
        model=model,
        op=op,
        params={},
        inputs={"i": i},
        images={"x": np.zeros((height, 4), np.uint8)},
        submitted_at=time.time(),
        encoding=encoding or {"format": "png"},
    )


def run_batch(family: FamilyDeployment, tasks: list[EditTask]) -> list:
    """The batch's results with every group's encoding awaited, as each caller awaits its own."""

    async def finished():
        results = await family.run_batch(tasks)
        return [await r.finish() if isinstance(r, PendingOutput) else r for r in results]

    return asyncio.run(finished())


def test_mixed_batch_runs_one_tensor_batch_per_model_op_shape_and_keeps_order():
    family = RecordingFamily()
    tasks = [
        task(0, "a", "sample", 8),
        task(1, "b", "sample", 8),
        task(2, "a", "sample", 8),
        task(3, "a", "sample", 16),
        task(4, "a", "other", 8),
        task(5, "b", "sample", 8),
    ]
    results = run_batch(family, tasks)
    assert sorted(family.groups) == sorted([("a", "sample", [0, 2]), ("b", "sample", [1, 5]), ("a", "sample", [3]), ("a", "other", [4])])
    assert all(isinstance(r, EditOutput) for r in results)
    assert [r.height for r in results] == [8, 8, 8, 16, 8, 8]
    # each result is its own task's image, whatever group it ran in
    import io

    from PIL import Image

    assert [int(np.asarray(Image.open(io.BytesIO(r.data)))[0, 0, 0]) for r in results] == [0, 1, 2, 3, 4, 5]
    assert [r.group_size for r in results] == [2, 2, 2, 1, 1, 2] and {r.batch_size for r in results} == {6}


def test_each_task_gets_its_own_encoding_and_media_type():
    import io

    from PIL import Image

    family = RecordingFamily()
    tasks = [
        task(7, "a", "sample", 8),
        task(9, "a", "sample", 8, {"format": "webp", "quality": 80}),
        task(11, "a", "sample", 8, {"format": "jpeg", "quality": 95}),
    ]
    results = run_batch(family, tasks)
    assert family.groups == [("a", "sample", [7, 9, 11])]  # one tensor batch, three encodings
    assert [r.media_type for r in results] == ["image/png", "image/webp", "image/jpeg"]
    decoded = [Image.open(io.BytesIO(r.data)) for r in results]
    assert [d.format for d in decoded] == ["PNG", "WEBP", "JPEG"]
    assert int(np.asarray(decoded[0])[0, 0, 0]) == 7  # PNG is lossless
    for d, value in zip(decoded[1:], (9, 11)):  # the lossy ones stay within a few levels of a flat image
        assert abs(int(np.asarray(d.convert("RGB"))[0, 0, 0]) - value) <= 3


def test_the_batch_returns_before_its_images_are_encoded():
    import threading

    family = RecordingFamily()
    release = threading.Event()
    encode = family._encode_group

    def slow_encode(tasks, outputs):
        assert release.wait(10), "the test never released the encoder"
        return encode(tasks, outputs)

    family._encode_group = slow_encode

    async def scenario():
        results = await asyncio.wait_for(family.run_batch([task(1, "a", "sample", 8)]), timeout=5)  # not blocked by encoding
        assert isinstance(results[0], PendingOutput) and not results[0].encoded.done()
        release.set()
        return await results[0].finish()

    assert asyncio.run(scenario()).media_type == "image/png"


class ChangedBoxFamily(RecordingFamily):
    """Its op ``boxed`` says it changed rows 2-5, columns 1-3 of a 10 x 8 image; ``sample`` names no box."""

    def run_group(self, model, op, tasks):
        image = np.arange(10 * 8 * 3, dtype=np.uint8).reshape(10, 8, 3)  # every pixel distinct: a shifted crop would show
        return [GroupOutput(image, {"op_extra": t.inputs["i"]}, (1, 2, 3, 4) if op == "boxed" else None) for t in tasks]


def test_output_region_cuts_the_result_to_the_box_its_op_changed():
    import io

    from PIL import Image

    region = {"format": "png", "region": True}
    tasks = [task(0, "a", "boxed", 8), task(1, "a", "boxed", 8, region), task(2, "a", "sample", 8, region)]
    whole, boxed, unboxed = run_batch(ChangedBoxFamily(), tasks)
    pixels = [np.asarray(Image.open(io.BytesIO(r.data))) for r in (whole, boxed, unboxed)]
    assert (whole.width, whole.height) == (8, 10) and "region" not in whole.extras  # not asked: the whole image
    assert (boxed.width, boxed.height) == (3, 4) and np.array_equal(pixels[1], pixels[0][2:6, 1:4])
    assert boxed.extras == {"op_extra": 1, "region": {"x": 1, "y": 2, "width": 3, "height": 4}, "full_size": {"width": 8, "height": 10}}
    # an op that names no box changed the whole image: all of it, at (0, 0)
    assert np.array_equal(pixels[2], pixels[0]) and unboxed.extras["region"] == {"x": 0, "y": 0, "width": 8, "height": 10}


def test_a_changed_box_outside_the_image_is_refused():
    import pytest

    with pytest.raises(AssertionError, match="changed_box"):
        GroupOutput(np.zeros((4, 4), np.uint8), {}, (2, 0, 3, 4))


def test_a_failing_group_fails_only_its_own_tasks():
    family = RecordingFamily()
    tasks = [task(0, "a", "sample", 8), task(1, "a", "explode", 8), task(2, "broken", "sample", 8)]
    results = run_batch(family, tasks)
    assert isinstance(results[0], EditOutput)
    assert isinstance(results[1], RuntimeError) and "ZeroDivisionError" in str(results[1])
    assert isinstance(results[2], Unprocessable) and results[2].status == 422


def test_tasks_whose_deadline_passed_are_not_computed():
    from service.errors import DeadlineExceeded

    family = RecordingFamily()
    expired, live, open_ended = task(0, "a", "sample", 8), task(1, "a", "sample", 8), task(2, "a", "sample", 8)
    expired.deadline, live.deadline = time.time() - 0.001, time.time() + 60
    results = run_batch(family, [expired, live, open_ended])
    assert family.groups == [("a", "sample", [1, 2])]  # the expired task never reached the generator
    assert isinstance(results[0], DeadlineExceeded) and results[0].status == 504
    assert isinstance(results[1], EditOutput) and isinstance(results[2], EditOutput)


# ---- synchronous edits first: the replica's PriorityGate and the job runner's DispatchLimit ---------
def test_priority_gate_holds_job_items_while_a_synchronous_edit_is_in():
    from service.family import PriorityGate

    async def scenario():
        gate = PriorityGate(background_limit=2, max_wait_s=5)
        order: list[str] = []
        release_sync = asyncio.Event()

        async def sync_work():
            order.append("sync starts")
            await release_sync.wait()
            order.append("sync ends")

        async def job_work(name):
            order.append(name)

        sync = asyncio.create_task(gate.run(False, sync_work))
        await asyncio.sleep(0.01)
        assert gate.interactive_idle_s() == 0.0
        jobs = [asyncio.create_task(gate.run(True, lambda n=n: job_work(f"job {n}"))) for n in range(3)]
        await asyncio.sleep(0.05)
        assert order == ["sync starts"], "job items wait while the synchronous edit is in"
        release_sync.set()
        await asyncio.gather(sync, *jobs)
        assert order[:2] == ["sync starts", "sync ends"] and sorted(order[2:]) == ["job 0", "job 1", "job 2"]
        assert 0 < gate.interactive_idle_s() < 1

    asyncio.run(scenario())


def test_priority_gate_limits_job_items_and_gives_up_waiting_after_max_wait():
    from service.family import PriorityGate

    async def scenario():
        gate = PriorityGate(background_limit=2, max_wait_s=0.2)
        peak = 0
        hold = asyncio.Event()

        async def job_work():
            nonlocal peak
            peak = max(peak, gate.background_in)
            await asyncio.sleep(0.01)

        jobs = [asyncio.create_task(gate.run(True, job_work)) for _ in range(6)]
        await asyncio.gather(*jobs)
        assert peak == 2, "at most background_limit job items in the batch queue"

        sync = asyncio.create_task(gate.run(False, hold.wait))  # a synchronous edit that stays in
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await gate.run(True, job_work)
        assert 0.15 < time.monotonic() - started < 2, "a job item runs anyway after max_wait_s"
        hold.set()
        await sync

    asyncio.run(scenario())


def test_dispatch_limit_drops_while_sync_edits_come_in_and_recovers_when_quiet():
    from service.job_runner import DispatchLimit

    async def scenario():
        limit = DispatchLimit(high=4, low=1, quiet_s=0.2)
        assert limit.limit() == 4
        limit.observe(None)  # a cached result says nothing
        assert limit.limit() == 4
        limit.observe(0.0)  # a replica has a synchronous edit in it right now
        assert limit.limit() == 1
        await limit.acquire()
        waiter = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.05)
        assert not waiter.done(), "one in flight is the limit while sync traffic is recent"
        await asyncio.sleep(0.3)
        assert waiter.done() and limit.in_flight == 2, "quiet for quiet_s: back to the high limit"
        limit.observe(5.0)  # an old sighting does not lower it again
        assert limit.limit() == 4

    asyncio.run(scenario())


def test_an_edit_on_an_idle_replica_skips_the_batch_queue_and_a_busy_one_uses_it():
    family = RecordingFamily()
    queued: list[int] = []

    async def fake_batch_queue(task_):
        queued.append(task_.inputs["i"])
        return (await family.run_batch([task_]))[0]

    family.handle_batch = fake_batch_queue

    async def scenario():
        alone = await family(task(1, "a", "sample", 8))
        assert alone.batch_size == 1 and queued == [], "idle replica: run at once, no batch wait"
        family.gate.interactive_in += 1  # another edit is in the replica
        busy = await family(task(2, "a", "sample", 8))
        family.gate.interactive_in -= 1
        assert busy.batch_size == 1 and queued == [2], "busy replica: through the batch queue"
        job_item = task(4, "a", "sample", 8)
        job_item.background = True
        await family(job_item)
        assert queued == [2, 4], "job items use the batch queue even on an idle replica"
        family.settings = family.settings.model_copy(update={"batch_idle_fast_path": False})
        await family(task(3, "a", "sample", 8))
        assert queued == [2, 4, 3], "fast path switched off: always the batch queue"

    asyncio.run(scenario())


def test_a_call_of_several_edits_runs_them_as_one_batch_when_idle_and_queues_each_when_busy():
    family = RecordingFamily()
    queued: list[int] = []

    async def fake_batch_queue(task_):
        queued.append(task_.inputs["i"])
        return (await family.run_batch([task_]))[0]

    family.handle_batch = fake_batch_queue

    async def scenario():
        idle = await family.run_tasks([task(1, "a", "sample", 8), task(2, "a", "sample", 8), task(3, "broken", "sample", 8)])
        assert queued == [] and family.groups == [("a", "sample", [1, 2])], "idle replica: the call is one batch at once"
        assert [type(r).__name__ for r in idle] == ["EditOutput", "EditOutput", "Unprocessable"], "failures stay per task"
        assert [r.batch_size for r in idle[:2]] == [3, 3] and idle[0].sync_idle_s is not None
        assert all(r.received_at <= r.answered_at for r in idle[:2]), "each output says when its call came and went"
        family.gate.interactive_in += 1  # another edit is in the replica
        busy = await family.run_tasks([task(4, "a", "sample", 8), task(5, "a", "sample", 8)])
        family.gate.interactive_in -= 1
        assert queued == [4, 5] and [r.batch_size for r in busy] == [1, 1], "busy replica: each task joins the batch queue"
        try:
            await family(task(6, "broken", "sample", 8))
        except Unprocessable:
            pass
        else:
            raise AssertionError("a single-task call raises its task's error")

    asyncio.run(scenario())


def test_family_options_reserve_cpus_and_optionally_a_gpu_share():
    from service.app import family_options
    from service.config import Settings

    options = family_options(Settings(family_num_cpus=0.5))
    assert options["ray_actor_options"] == {"num_cpus": 0.5}
    assert options["max_ongoing_requests"] == 64, "edits queue in the replica, where batches fill"
    small = family_options(Settings(family_max_ongoing_requests=4, batch_max_size=8))
    assert small["max_ongoing_requests"] == 16, "never below two full batches, or batches never fill"
    shared = family_options(Settings(family_num_gpus=0.25))["ray_actor_options"]
    assert shared == {"num_cpus": 0.25, "num_gpus": 0.25}, "four family replicas per GPU"


# ---- compiled generators: groups padded to batch buckets, buckets compiled at replica start --------
def test_batch_buckets_are_powers_of_two_up_to_the_max_batch_size():
    assert batch_buckets(1) == [1] and batch_buckets(8) == [1, 2, 4, 8] and batch_buckets(12) == [1, 2, 4, 8, 12]
    assert [bucket_size(n, [1, 2, 4, 8]) for n in range(1, 10)] == [1, 2, 4, 4, 8, 8, 8, 8, 9]


def test_compiled_groups_are_padded_to_a_bucket_and_the_padding_is_dropped():
    from service.acceleration import Acceleration

    family = RecordingFamily()
    family.bucketed_ops = frozenset({"sample"})
    three = [task(i, "a", "sample", 8) for i in range(3)]
    assert len(family.run_group_accelerated("a", "sample", three)) == 3
    assert family.groups[-1] == ("a", "sample", [0, 1, 2]), "eager: no padding"

    family.acceleration = Acceleration(compile=True)
    outputs = family.run_group_accelerated("a", "sample", three)
    assert family.groups[-1] == ("a", "sample", [0, 1, 2, 2]), "compiled: padded to the 4-bucket with the last task"
    assert [int(o.image[0, 0, 0]) for o in outputs] == [0, 1, 2], "the padding's output is dropped"
    family.run_group_accelerated("a", "other", three)
    assert family.groups[-1] == ("a", "other", [0, 1, 2]), "ops that are not bucketed keep their size"
    family.run_group_accelerated("a", "sample", [task(i, "a", "sample", 8) for i in range(9)])
    assert len(family.groups[-1][2]) == 9, "a group beyond the largest bucket keeps its size"


class WarmingFamily(RecordingFamily):
    """Serves the real style ``sample`` op schema; records each warm-up group's seeds."""

    family = "style"
    bucketed_ops = frozenset({"sample"})

    def __init__(self, models: dict[str, dict]) -> None:
        super().__init__()
        import types

        from service.acceleration import Acceleration

        self.acceleration = Acceleration(compile=True)
        self.registry = types.SimpleNamespace(list_manifests=lambda: list(models.values()), get_manifest=models.__getitem__)
        self.loaded: list[str] = []

    async def get_model(self, model_id: str) -> str:
        if model_id == "broken":
            raise Unprocessable("model broken cannot load")
        self.loaded.append(model_id)
        return model_id

    def warmup_requests(self, manifest):
        return [WarmupRequest("sample", params={"truncation": 0.5})]

    def run_group(self, model, op, tasks):
        assert all(t.background and t.params["truncation"] == 0.5 for t in tasks)
        self.groups.append((model, op, [t.inputs["seed"] for t in tasks]))
        return [GroupOutput(np.zeros((4, 4, 3), np.uint8)) for _ in tasks]


def test_reconfigure_compiles_every_bucket_of_every_family_model_before_traffic():
    import json

    from service.config import REPO_ROOT

    style = json.loads((REPO_ROOT / "checkpoints/style-demo-random/model.json").read_text())
    models = {
        "b-style": {**style, "name": "b-style"},
        "a-style": {**style, "name": "a-style"},
        "inpaint-x": {"name": "inpaint-x", "family": "inpaint"},
        "broken": {**style, "name": "broken"},
    }
    family = WarmingFamily(models)
    asyncio.run(family.reconfigure({"max_batch_size": 4, "batch_wait_timeout_s": 0.01}))
    assert family.loaded == ["a-style", "b-style"], "'*': this family's models, by name; the broken one is skipped"
    assert family.groups == [(name, "sample", list(range(size))) for name in ("a-style", "b-style") for size in (1, 2, 4)]
    assert sorted(family.warmup_seconds) == sorted(f"{n}/sample/{s}" for n in ("a-style", "b-style") for s in (1, 2, 4))

    family.groups.clear()
    asyncio.run(family.reconfigure({"max_batch_size": 8, "batch_wait_timeout_s": 0.01}))
    assert family.groups == [(name, "sample", list(range(8))) for name in ("a-style", "b-style")], "only the new bucket compiles"

    family.settings = family.settings.model_copy(update={"accel_warmup_models": "b-style", "max_models_per_replica": 3})
    assert family.warmup_model_names() == ["b-style"]
    family.settings = family.settings.model_copy(update={"accel_warmup_models": ""})
    family.groups.clear()
    family.warmup_seconds.clear()
    asyncio.run(family.reconfigure({"max_batch_size": 2}))
    assert family.groups == [], "empty: compile on first use"


def test_an_outputs_transit_is_the_time_from_dispatch_to_delivery_outside_the_replica():
    output = EditOutput(b"png", "image/png", 1, 1, {}, 0.0, 1.0, 0.0, 1, 1, received_at=100.002, answered_at=100.010)
    assert abs(output.transit_ms(dispatched_at=100.000, delivered_at=100.013) - 5.0) < 1e-6  # 2 ms there, 3 ms back
    assert output.transit_ms(dispatched_at=100.005, delivered_at=100.010) == 0.0, "another node's clock ahead: clamped"
    assert EditOutput(b"png", "image/png", 1, 1, {}, 0.0, 1.0, 0.0, 1, 1).transit_ms(0.0, 1.0) is None
