"""Each op is declared once, in its family's folder (deployments/<family>/spec.py), and every rule that
differs by op comes from that declaration: the replica's handler, group key and bucketing, the
pipeline's scope check, invalidation and projection latent keys.

No service, no Ray: fakes stand for storage, the registry and the family deployment.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from pydantic import Field

from schemas.common import StrictModel
from schemas.edits import EditRequest
from schemas.ops import FamilySpec, OpSpec
from service import edits as edits_module
from service import families
from service.auth import Principal
from service.config import REPO_ROOT, Settings
from service.errors import Forbidden, Unprocessable
from service.tasks import EditOutput, EditTask


# ---- the registered families' declarations ---------------------------------------------------
def test_each_registered_op_has_a_handler_that_resolves_and_the_deployments_keep_no_op_chains():
    for family in families.family_names():
        spec = families.family_spec(family)
        cls = families.load_deployment(family).func_or_class
        assert cls.__name__ == spec.deployment_class_name == families.deployment_class_name(family)
        assert cls.family == family
        for name, op in spec.ops.items():
            assert op.name == name and callable(getattr(cls, op.handler, None)), f"{family}.{name}: no method {op.handler!r}"
            assert op.group_key is None or callable(op.group_key), f"{family}.{name}"
        # the base class dispatches by the declarations: no family names its ops in run_group/group_key
        # if-chains or a bucketed_ops list of its own
        for hook in ("run_group", "group_key", "bucketed_ops"):
            assert hook not in cls.__dict__, f"{cls.__name__} defines {hook}: declare it on the op in {spec!r}"


def test_the_op_table_is_the_families_declarations_and_the_checkpoint_manifests_serve_them():
    table = families.op_table()
    assert list(table) == families.family_names()
    for family, ops in table.items():
        assert ops == families.family_spec(family).ops
        for op in ops.values():
            assert families.get_op(family, op.name) is op
    assert families.get_op(families.family_names()[0], "no-such-op") is None
    assert families.get_op("no-such-family", "sample") is None
    # the shipped checkpoints serve only declared ops
    for manifest_path in sorted((REPO_ROOT / "checkpoints").glob("*/model.json")):
        manifest = json.loads(manifest_path.read_text())
        assert set(manifest["ops"]) <= set(table[manifest["family"]]), manifest_path


def test_the_declarations_import_no_torch():
    modules = [families.entry_points(families.FAMILIES_GROUP)[f].partition(":")[0] for f in families.family_names()]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "from service import families\nfamilies.op_table()\n"
        "assert 'torch' not in sys.modules, 'a family declaration imports torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_a_family_spec_refuses_an_op_declared_twice_and_a_scope_without_its_reason():
    op = OpSpec(name="x", description="", params_model=StrictModel, inputs_model=StrictModel, prepare=lambda *a: {}, handler="run_x")
    with pytest.raises(ValueError, match="twice"):
        FamilySpec("fam", "m:C", [op, op])
    with pytest.raises(ValueError, match="scope_reason"):
        OpSpec(
            name="x",
            description="",
            params_model=StrictModel,
            inputs_model=StrictModel,
            prepare=lambda *a: {},
            handler="run_x",
            required_scope="admin",
        )


# ---- the replica: handler, typed params, group key and bucketing from the declaration ----------
class ScaleParams(StrictModel):
    factor: float = Field(default=2.0)
    label: str = "x"


def _group_by_factor(task, params: ScaleParams):
    return (params.factor,)


FAKE = FamilySpec(
    "fake-family",
    "nowhere:FakeDeployment",
    [
        OpSpec(
            name="scale",
            description="",
            params_model=ScaleParams,
            inputs_model=StrictModel,
            prepare=lambda *a: {},
            handler="run_scale",
            group_key=_group_by_factor,
            bucketed=True,
        )
    ],
)


@pytest.fixture
def fake_family(monkeypatch):
    monkeypatch.setattr(families, "op_table", lambda: {FAKE.name: FAKE.ops})
    monkeypatch.setattr(families, "get_op", lambda family, op: FAKE.ops.get(op) if family == FAKE.name else None)
    import service.family as family_module

    monkeypatch.setattr(family_module, "get_op", families.get_op)
    monkeypatch.setattr(family_module, "op_table", families.op_table)
    return FAKE


def _replica(calls: list):
    from service.family import FamilyDeployment
    from tests.test_family import RecordingFamily

    class FakeDeployment(RecordingFamily):  # the recorder's light __init__, the base's dispatch
        family = FAKE.name
        run_group = FamilyDeployment.run_group

        def run_scale(self, model, tasks, params):
            calls.append([p.factor for p in params])
            assert all(isinstance(p, ScaleParams) for p in params), "handlers get the op's params model"
            from service.family import GroupOutput

            return [GroupOutput(np.full((2, 2, 3), int(p.factor), np.uint8)) for p in params]

    replica = FakeDeployment()
    replica.bucketed_ops = replica.declared_bucketed_ops()  # as FamilyDeployment.__init__ sets it
    assert replica.bucketed_ops == {"scale"}
    return replica


def test_the_replica_runs_the_declared_handler_grouped_by_the_declared_key_with_typed_params(fake_family):
    from tests.test_family import run_batch

    calls: list = []
    replica = _replica(calls)
    tasks = [
        EditTask(model="m", op="scale", params=params, inputs={"i": i}, images={}, submitted_at=0.0)
        for i, params in enumerate([{"factor": 3.0, "label": "a"}, {}, {"factor": 3.0, "label": "b"}])
    ]
    results = run_batch(replica, tasks)
    assert sorted(calls) == [[2.0], [3.0, 3.0]], "grouped by the declared key; the params model's default fills {}"
    assert [isinstance(r, EditOutput) for r in results] == [True] * 3
    assert [t.params for t in tasks] == [{"factor": 3.0, "label": "a"}, {}, {"factor": 3.0, "label": "b"}], (
        "the JSON params stay as they came"
    )
    assert isinstance(tasks[0].typed_params, ScaleParams)
    import pickle

    assert pickle.loads(pickle.dumps(tasks[0])).typed_params is None, "the typed params never travel"

    unknown = run_batch(
        replica, [EditTask(model="m", op="nope", params={}, inputs={"i": 0}, images={"x": np.zeros((2, 2), np.uint8)}, submitted_at=0.0)]
    )
    assert isinstance(unknown[0], Unprocessable) and "not served" in str(unknown[0])

    from service.acceleration import Acceleration

    replica.acceleration = Acceleration(compile=True)
    three = [EditTask(model="m", op="scale", params={"factor": 1.0}, inputs={}, images={}, submitted_at=0.0) for _ in range(3)]
    assert len(replica.run_group_accelerated("m", "scale", three)) == 3
    assert calls[-1] == [1.0] * 4, "a declared bucketed op is padded to the 4-bucket"


# ---- the pipeline: scope, invalidation and latent keys from the declaration --------------------
MODEL = "fake-model"


class FakeStore:
    def __init__(self, heads: dict | None = None) -> None:
        self.heads = heads or {}

    def result_key(self, result_id: str) -> str:
        return f"results/{result_id}"

    def asset_key(self, asset_id: str) -> str:
        return f"assets/{asset_id}"

    def head(self, key: str):
        return self.heads.get(key)


class FakeRegistry:
    def __init__(self, manifest: dict) -> None:
        self.manifest, self.invalidated = manifest, []

    def cached_family(self, name: str):
        return None

    def get_manifest(self, name: str) -> dict:
        return self.manifest

    def invalidate(self, name: str) -> None:
        self.invalidated.append(name)


def _pipeline_family(monkeypatch, *ops: OpSpec) -> FamilySpec:
    spec = FamilySpec("fake-family", "nowhere:FakeDeployment", ops)
    monkeypatch.setattr(edits_module, "op_table", lambda: {spec.name: spec.ops})
    monkeypatch.setattr(edits_module, "get_op", lambda family, op: spec.ops.get(op) if family == spec.name else None)
    return spec


def _op(name: str, **declared) -> OpSpec:
    return OpSpec(
        **{
            "name": name,
            "description": "",
            "params_model": ScaleParams,
            "inputs_model": StrictModel,
            "prepare": lambda inputs, params, manifest, draw, limits: {},
            "handler": "run_" + name,
            **declared,
        }
    )


def _pipeline(spec: FamilySpec, heads: dict | None = None):
    manifest = {"name": MODEL, "family": spec.name, "ops": list(spec.ops)}
    registry = FakeRegistry(manifest)
    return edits_module.EditPipeline(Settings(), FakeStore(heads), registry, {spec.name: object()}), registry


EDITOR = Principal(key_id="editor", scopes=frozenset({"edit"}))
OPERATOR = Principal(key_id="operator", scopes=frozenset({"edit", "operate"}))


def test_the_pipeline_enforces_the_scope_an_op_declares(monkeypatch):
    spec = _pipeline_family(
        monkeypatch, _op("open"), _op("guarded", required_scope="operate", scope_reason="the guarded op (it changes things for everyone)")
    )
    pipeline, _ = _pipeline(spec)
    with pytest.raises(Forbidden, match=r"the guarded op \(it changes things for everyone\) needs the 'operate' scope"):
        pipeline._prepare(EditRequest(model=MODEL, op="guarded"), lambda: 0, False, EDITOR, False)
    for principal, op in ((OPERATOR, "guarded"), (EDITOR, "open")):
        prepared = pipeline._prepare(EditRequest(model=MODEL, op=op), lambda: 0, False, principal, False)
        assert prepared.spec is spec.ops[op]


def test_the_pipeline_invalidates_what_an_op_declares(monkeypatch):
    spec = _pipeline_family(monkeypatch, _op("plain"), _op("rewrites", invalidates=("model",)))
    pipeline, registry = _pipeline(spec)

    async def dispatch(family, handle, task):
        return EditOutput(
            data=b"png",
            media_type="image/png",
            width=1,
            height=1,
            extras={},
            queue_ms=0.0,
            compute_ms=0.0,
            encode_ms=0.0,
            batch_size=1,
            group_size=1,
        )

    monkeypatch.setattr(pipeline, "dispatch", dispatch)
    monkeypatch.setattr(pipeline, "_store_result", lambda *args: 0.0)
    asyncio.run(pipeline.run(EditRequest(model=MODEL, op="plain"), lambda: 0))
    assert registry.invalidated == []
    asyncio.run(pipeline.run(EditRequest(model=MODEL, op="rewrites"), lambda: 0))
    assert registry.invalidated == [MODEL]


def test_a_projection_resolves_to_the_latent_keys_its_fitting_op_declares(monkeypatch):
    spec = _pipeline_family(monkeypatch, _op("fit", latent_keys=("a", "b")), _op("edit", latent_inputs=("base",)))
    extras = base64.urlsafe_b64encode(json.dumps({"a": [1.0], "b": {"3": 1.0}, "loss": 0.5}).encode()).decode()
    heads = {
        f"results/{name}": {"metadata": {"op": op, "model": MODEL, "extras": "inline", "extras-b64": extras}}
        for name, op in (("fitted", "fit"), ("edited", "edit"))
    }
    pipeline, _ = _pipeline(spec, heads)
    resolved = pipeline._resolve_projections(MODEL, spec.name, ("base",), {"base": {"projection": "fitted", "b": {"0": 1.0}}})
    assert resolved == {"base": {"a": [1.0], "b": {"0": 1.0}, "projection": "fitted"}}, (
        "the declared keys only, and the request's own keys win"
    )
    with pytest.raises(Unprocessable, match=r"inputs.base.projection edited is not the result_id of a finished 'fit' edit"):
        pipeline._resolve_projections(MODEL, spec.name, ("base",), {"base": {"projection": "edited"}})


# ---- speculative dispatch: the cache lookup beside the family's compute ---------------------------
class KnownFamilyRegistry(FakeRegistry):
    def cached_family(self, name: str):
        return self.manifest["family"]  # the manifest is cached: admission (and speculation) from the start


class OrderedStore(FakeStore):
    """HEADs of results that wait until the family has the edit (when asked to), and say whether it is stored."""

    def __init__(self, stored: bool, wait_for: "threading.Event | None") -> None:
        super().__init__()
        self.stored, self.wait_for, self.events = stored, wait_for, []

    def head(self, key: str):
        if self.wait_for is not None:
            assert self.wait_for.wait(5), "the lookup ran before the edit reached the family"
        self.events.append("head")
        return {"metadata": {"width": "1", "height": "1"}, "content_type": "image/png"} if self.stored else None


def _speculation(monkeypatch, stored: bool, wait: bool, busy: bool = False):
    spec = _pipeline_family(monkeypatch, _op("plain"))
    registry = KnownFamilyRegistry({"name": MODEL, "family": spec.name, "ops": list(spec.ops)})
    reached = threading.Event()
    store = OrderedStore(stored, reached if wait else None)
    pipeline = edits_module.EditPipeline(Settings(), store, registry, {spec.name: object()})
    if busy:
        pipeline._admission_for(spec.name).in_flight = 1  # another synchronous edit of the family in flight here
    outcome = {}

    async def dispatch(family, handle, task):
        store.events.append("dispatch")
        reached.set()
        try:
            await asyncio.sleep(0 if not stored else 30)  # a hit's compute is still running when the lookup answers
        except asyncio.CancelledError:
            outcome["cancelled"] = True
            raise
        return EditOutput(b"png", "image/png", 1, 1, {}, 0.0, 1.0, 0.0, 1, 1)

    monkeypatch.setattr(pipeline, "dispatch", dispatch)
    monkeypatch.setattr(pipeline, "_store_result", lambda *args: store.events.append("store") or 0.0)

    async def run():
        result = await pipeline.run(EditRequest(model=MODEL, op="plain"), lambda: 0)
        await asyncio.sleep(0.05)  # let a cancelled dispatch see its cancellation
        return result

    return asyncio.run(run()), store.events, outcome


def test_an_idle_familys_miss_computes_while_the_cache_is_looked_up(monkeypatch):
    result, events, _ = _speculation(monkeypatch, stored=False, wait=True)
    assert events == ["dispatch", "head", "store"], "the HEAD answered only once the family had the edit"
    assert result.cached is False and result.timings.compute_ms == 1.0


def test_an_idle_familys_hit_cancels_the_compute_and_returns_the_stored_result(monkeypatch):
    result, events, outcome = _speculation(monkeypatch, stored=True, wait=True)
    assert result.cached is True and events == ["dispatch", "head"], "nothing stored"
    assert outcome == {"cancelled": True}


@pytest.mark.parametrize("stored", [False, True])
def test_a_busy_family_looks_up_first_and_computes_only_a_miss(monkeypatch, stored):
    result, events, outcome = _speculation(monkeypatch, stored=stored, wait=False, busy=True)
    assert result.cached is stored
    assert events == (["head"] if stored else ["head", "dispatch", "store"]) and outcome == {}


def test_speculation_is_a_setting_and_only_for_edits_without_stored_inputs_or_side_effects(monkeypatch):
    class LatentInputs(StrictModel):  # a seed, or a projection (the result id of a fitting edit)
        seed: int | None = None
        projection: str | None = None

    projected_op = _op(
        "projected", latent_inputs=("",), inputs_model=LatentInputs, prepare=lambda inputs, *args: inputs.model_dump(exclude_none=True)
    )
    spec = _pipeline_family(monkeypatch, _op("plain"), projected_op, _op("rewrites", invalidates=("model",)))
    pipeline, _ = _pipeline(spec)
    request = EditRequest(model=MODEL, op="plain")
    assert pipeline._prepare(request, lambda: 0, False, EDITOR, False, speculate=True).lookup_deferred is True
    assert pipeline._prepare(request, lambda: 0, False, EDITOR, False, speculate=False).lookup_deferred is False
    # an op that can take a projection speculates when this edit names none: it reads nothing stored
    from_seed = pipeline._prepare(EditRequest(model=MODEL, op="projected", inputs={"seed": 3}), lambda: 0, False, EDITOR, False, True)
    assert from_seed.lookup_deferred is True
    projection = {"projection": "fitted"}
    monkeypatch.setattr(pipeline, "_check_access", lambda principal, ids: {})  # readable
    monkeypatch.setattr(pipeline, "_resolve_projections", lambda *args: {"seed": 3, **projection})
    projected = pipeline._prepare(EditRequest(model=MODEL, op="projected", inputs=projection), lambda: 0, False, EDITOR, False, True)
    assert projected.lookup_deferred is False, "an edit that reads a stored projection looks up first"
    rewrites = pipeline._prepare(EditRequest(model=MODEL, op="rewrites"), lambda: 0, False, EDITOR, False, speculate=True)
    assert rewrites.lookup_deferred is False, "an op that changes the model's manifest never runs on a hit"
    assert Settings(speculative_dispatch=False).speculative_dispatch is False
