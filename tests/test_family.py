"""The family base's batch handler, without Ray: grouping by (model, op, shape), per-group failures, timings."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from service.errors import Unprocessable
from service.family import FamilyDeployment, GroupOutput
from service.tasks import EditOutput, EditTask


class RecordingFamily(FamilyDeployment):
    family = "fake"

    def __init__(self) -> None:  # no storage, no metrics: the batch logic only
        self.groups: list[tuple[str, str, list[int]]] = []
        self._batch_hist = None
        self.log = __import__("logging").getLogger("test")

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


def task(i: int, model: str, op: str, height: int) -> EditTask:
    return EditTask(model=model, op=op, params={}, inputs={"i": i}, images={"x": np.zeros((height, 4), np.uint8)},
                    submitted_at=time.time())


def test_mixed_batch_runs_one_tensor_batch_per_model_op_shape_and_keeps_order():
    family = RecordingFamily()
    tasks = [task(0, "a", "sample", 8), task(1, "b", "sample", 8), task(2, "a", "sample", 8),
             task(3, "a", "sample", 16), task(4, "a", "other", 8), task(5, "b", "sample", 8)]
    results = asyncio.run(FamilyDeployment.handle_batch.__wrapped__(family, tasks))
    assert sorted(family.groups) == sorted([("a", "sample", [0, 2]), ("b", "sample", [1, 5]), ("a", "sample", [3]), ("a", "other", [4])])
    assert all(isinstance(r, EditOutput) for r in results)
    assert [r.height for r in results] == [8, 8, 8, 16, 8, 8]
    # each result is its own task's image, whatever group it ran in
    from PIL import Image
    import io

    assert [int(np.asarray(Image.open(io.BytesIO(r.png)))[0, 0, 0]) for r in results] == [0, 1, 2, 3, 4, 5]
    assert [r.group_size for r in results] == [2, 2, 2, 1, 1, 2] and {r.batch_size for r in results} == {6}


def test_a_failing_group_fails_only_its_own_tasks():
    family = RecordingFamily()
    tasks = [task(0, "a", "sample", 8), task(1, "a", "explode", 8), task(2, "broken", "sample", 8)]
    results = asyncio.run(FamilyDeployment.handle_batch.__wrapped__(family, tasks))
    assert isinstance(results[0], EditOutput)
    assert isinstance(results[1], RuntimeError) and "ZeroDivisionError" in str(results[1])
    assert isinstance(results[2], Unprocessable) and results[2].status == 422
