"""The edit pipeline: one edit request -> a stored, content-addressed result.

Shared by the two callers that run edits: the ingress (``POST /v1/edits``, synchronous) and the job
runner (``POST /v1/jobs``, one call per item). Both therefore validate, cache, dispatch and store
exactly alike, and a job item that names the same edit as an earlier request is not computed again.

Steps: model manifest -> op spec -> params/inputs validated -> canonical inputs (seed drawn) ->
result id = hash of the canonical request -> cached result? -> decode image inputs -> resolve
projections -> family deployment (dynamic batch) -> the result, written to S3 in one conditional PUT
(owner and small extras in its metadata; large extras in a sidecar written first).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import time
from typing import Any, Callable

from pydantic import BaseModel, ValidationError
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from schemas.common import Limits
from schemas.edits import EditRequest, Timings
from schemas.ops import FittedImages
from service import metrics
from service.admission import EditAdmission
from service.auth import LOCAL_DEVELOPER, AccessIndex, Principal
from service.coalesce import CoalescedCalls
from service.config import Settings
from service.errors import (
    DeadlineExceeded,
    ModelBroken,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unprocessable,
)
from service.families import get_op, op_table
from service.images import decode_image
from service.registry import ModelRegistry
from service.storage import AssetStore
from service.storage_gate import NoGate, StorageGate
from service.tasks import EditOutput, EditTask


def clean_errors(errors: list[dict[str, Any]], prefix: tuple = ()) -> list[dict[str, Any]]:
    """Pydantic errors reduced to what a client needs: location, message, type."""
    return [{"loc": list(prefix) + [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


def validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    """``data`` validated as the JSON it came as, strictly, with schema errors turned into one 422 problem
    naming ``where``. Strict JSON validation: no ``"7"`` for 7 or ``true`` for 1 (lax pydantic would take
    both), while arrays still fill tuples and integers floats, as JSON means them."""
    try:
        try:
            text = json.dumps(data, allow_nan=False)
        except ValueError:  # an infinity (1e309 reads as one): lax validation names the field, models refuse non-finite
            return model.model_validate(data)
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        errors = clean_errors(exc.errors(include_url=False), (where,))
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        raise Unprocessable(f"invalid {where}: {summary}", errors=errors) from None


def canonical_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the key-sorted compact JSON: equal documents, equal ids, whatever the key order."""
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def decode_image_inputs(
    image_inputs: dict[str, str], inputs: dict[str, Any], read_asset: Callable[[str], bytes], max_pixels: int
) -> dict[str, Any]:
    """Decode the image assets the canonical inputs name (``read_asset``: asset id -> bytes), each in
    its field's Pillow mode; a field holding a list of ids gives a list of arrays."""
    images: dict[str, Any] = {}
    for field, mode in image_inputs.items():
        ids = inputs.get(field)
        if ids is None:
            continue
        decoded = [decode_image(read_asset(asset_id), max_pixels, mode=mode) for asset_id in (ids if isinstance(ids, list) else [ids])]
        images[field] = decoded if isinstance(ids, list) else decoded[0]
    return images


def referenced_ids(spec: Any, inputs: dict[str, Any]) -> list[str]:
    """Asset and result ids the canonical inputs of an edit read: its image fields and its projections."""
    ids: list[str] = []
    for field in spec.image_inputs:
        value = inputs.get(field)
        ids.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    for field in spec.latent_inputs:
        refs = inputs if field == "" else inputs.get(field)
        for ref in refs if isinstance(refs, list) else [refs]:
            if isinstance(ref, dict) and isinstance(ref.get("projection"), str):
                ids.append(ref["projection"])
    return ids


def produced_ids(result_id: str, extras: dict[str, Any]) -> list[str]:
    """The result id and the assets an op stored beside it (extras ``*_asset_id``, e.g. inpaint's edge map)."""
    return [result_id] + [v for k, v in extras.items() if k.endswith("_asset_id") and isinstance(v, str)]


def build_task(
    model: str,
    manifest: dict[str, Any],
    op: str,
    params: dict[str, Any],
    inputs: dict[str, Any],
    read_asset: Callable[[str], bytes],
    limits: Limits,
    seed: int,
    background: bool = False,
) -> EditTask:
    """One edit's task built in process, as :meth:`EditPipeline.run` builds it but without S3, cache or
    projection ids: for the benchmark's raw runner and a family replica's warm-up. Raises ValueError
    (or pydantic's ValidationError) on a request the service would refuse."""
    spec = get_op(manifest["family"], op)
    if spec is None:
        raise ValueError(f"family {manifest['family']!r} has no op {op!r}")
    params_model = spec.params_model.model_validate(spec.params_with_defaults(params, manifest))
    canonical = spec.prepare(spec.inputs_model.model_validate(inputs), params_model, manifest, lambda: seed, limits)
    images = decode_image_inputs(spec.image_inputs, canonical, read_asset, limits.max_image_pixels)
    fit_extras: dict[str, Any] = {}
    if spec.fit_images is not None:
        fitted = FittedImages.of(spec.fit_images(images, params_model, manifest))
        images, fit_extras = fitted.images, fitted.extras
    if spec.check_pixel_budget is not None:
        spec.check_pixel_budget(canonical, images, params_model, limits.model_pixel_budget(manifest["family"], op, spec.pixel_budget))
    return EditTask(model, op, params_model.model_dump(mode="json"), canonical, images, time.time(), background, fit_extras=fit_extras)


@dataclasses.dataclass
class EditResult:
    result_id: str
    result_key: str
    manifest: dict[str, Any]
    cached: bool  # served from S3 without computing
    seed: int | None
    width: int
    height: int
    data: bytes | None  # the image: present when computed now, or when the caller asked for it on a cache hit
    media_type: str  # of the image (output.format)
    extras: dict[str, Any]
    timings: Timings
    sync_idle_s: float | None = None  # from the family replica: seconds since it last had a synchronous edit


@dataclasses.dataclass
class _PreparedEdit:
    """An edit validated, not in the cache, with its inputs read: what the family and the writes need."""

    family: str
    spec: Any  # the op's declaration (schemas.ops.OpSpec)
    handle: Any  # the family's DeploymentHandle
    manifest: dict[str, Any]
    params_json: dict[str, Any]
    task_inputs: dict[str, Any]
    images: dict[str, Any]
    fit_extras: dict[str, Any]  # what the op's fit_images did (schemas.ops.FittedImages)
    result_id: str
    result_key: str
    seed: int | None
    storage_s: float
    # True: the cache lookup was left for later, to run beside the dispatch (EditPipeline._compute_or_find)
    lookup_deferred: bool = False


# The encoding of results whose ids leave ``encoding`` out: those of requests made before output
# formats and output.region existed keep their ids.
WHOLE_PNG = {"format": "png"}

# Extras up to this size travel in the result's own metadata (base64 of the JSON: S3 metadata is
# ASCII and at most 2 KB in all), so most results are one object, read back by one HEAD.
INLINE_EXTRAS_MAX_CHARS = 1536
INLINE_EXTRAS_METADATA = "extras-b64"


async def awaited(response) -> Any:
    """A Serve DeploymentResponse as a coroutine, so asyncio.wait_for can bound it."""
    return await response


class EditPipeline:
    """Runs edits against the family deployments; see the module docstring for the steps.

    What differs by op comes from the op's declaration (``schemas.ops.OpSpec``, found through
    ``service.families``): the scope it needs, what it invalidates, the latent keys of its results.
    """

    def __init__(
        self,
        settings: Settings,
        store: AssetStore,
        registry: ModelRegistry,
        families: dict[str, Any],
        gate: StorageGate | NoGate | None = None,
    ) -> None:
        self.settings = settings
        self.gate = gate or NoGate()  # the ingress's: a deadline and breaker per storage step (service/storage_gate.py)
        self.store = store
        self.registry = registry
        self.families = families  # family name -> DeploymentHandle
        self.access = AccessIndex(store)
        self._calls: dict[tuple[str, str, bool], CoalescedCalls] = {}  # (family, model, background) -> its calls
        self._admission: dict[str, EditAdmission] = {}  # family -> its synchronous edits in flight here

    # ---- storage helpers -------------------------------------------------------------------
    def find_asset(self, asset_id: str) -> tuple[str, dict[str, Any]]:
        """Asset ids name uploads (``assets/``) and edit results (``results/``), both server-minted keys."""
        for key in (self.store.asset_key(asset_id), self.store.result_key(asset_id)):
            head = self.store.head(key)
            if head is not None:
                return key, head
        raise NotFound(self.MISSING.format(asset_id))

    MISSING = "asset {} does not exist; upload it with POST /v1/assets first"

    def find_readable(self, principal: Principal, asset_id: str) -> tuple[str, dict[str, Any]]:
        """``find_asset``, and the same 404 when ``principal`` may not read it (another key's object)."""
        key, head = self.find_asset(asset_id)
        self.access.check(principal, asset_id, self.MISSING.format(asset_id), head)
        return key, head

    def extras_key(self, result_id: str) -> str:
        return self.store.result_key(result_id) + ".json"

    # ---- the pipeline ----------------------------------------------------------------------
    async def run(
        self,
        body: EditRequest,
        draw_seed: Callable[[], int],
        *,
        want_image: bool = False,
        background: bool = False,
        principal: Principal = LOCAL_DEVELOPER,
        deadline: float | None = None,
        random_seed: bool = False,
    ) -> EditResult:
        """One edit. ``draw_seed`` supplies a seed where the op needs one and the request has none;
        ``random_seed``: it draws uniformly from 2**32 values (the ingress), so an edit that used one
        cannot be in the cache and is not looked up (job items' seeds are derived from the job and
        are looked up: a resumed job finds what it computed before). ``background`` (job items) lets
        synchronous edits go first in the family replica. ``principal`` must be allowed to read every
        asset or projection the edit names (else the 404 of a missing id), and is given read access to
        the result. ``deadline`` (time.time()): not computed after it.

        Storage runs in two thread-pool calls, one before the family (manifest, access, cache lookup,
        inputs) and one after (the result's writes), rather than one hop per S3 request; each within
        the gate's deadline (the first also within ``deadline``).

        Raises ProblemError (4xx for the request's own faults, 429/503 when the family is busy or down,
        504 when the deadline passed first).
        """
        started = time.perf_counter()
        # Admitted before any work where the model's family is known already (its manifest is cached): under
        # overload a refusal then costs next to nothing, and nothing waits unbounded for the storage threads.
        admission = None if background else self._admission_for(self.registry.cached_family(body.model))
        admitted = computed = False
        try:
            if admission is not None:
                admission.admit()  # 429 at once when this edit would wait longer than max_queue_wait_s
                admitted = True
            # Speculate (look up the cache while the family computes) only while this edit is the
            # family's only one here: an idle family's compute costs no other edit anything, and a busy
            # family's queue is where a hit's wasted compute would hurt.
            speculate = self.settings.speculative_dispatch and admission is not None and admission.in_flight <= 1
            prepared = await self.gate.run(self._prepare, body, draw_seed, want_image, principal, random_seed, speculate, deadline=deadline)
            if isinstance(prepared, EditResult):  # from the cache
                prepared.timings.total_ms = 1e3 * (time.perf_counter() - started)
                return prepared
            if admission is None and not background:  # the first edit of a model at this replica
                admission = self._admission_for(prepared.family)
                admission.admit()
                admitted = True
            task = EditTask(
                model=body.model,
                op=body.op,
                params=prepared.params_json,
                inputs=prepared.task_inputs,
                images=prepared.images,
                submitted_at=time.time(),
                background=background,
                deadline=deadline,
                encoding=body.output.encoding(),
                fit_extras=prepared.fit_extras,
            )
            if prepared.lookup_deferred:
                found = await self._compute_or_find(prepared, task, want_image, principal, deadline)
                if isinstance(found, EditResult):
                    found.timings.total_ms = 1e3 * (time.perf_counter() - started)
                    return found
                output = found
            else:
                output = await self.dispatch(prepared.family, prepared.handle, task)
            delivered_at = time.time()
            computed = True
        finally:
            if admitted:
                admission.finished(computed)
        metrics.BATCH_SIZE.labels(prepared.family).observe(output.batch_size)
        metrics.QUEUE_SECONDS.labels(prepared.family).observe(output.queue_ms / 1e3)
        store_s = await self.gate.run(self._store_result, prepared, body, output, principal)
        if "model" in prepared.spec.invalidates:  # the op changed what the model's manifest says (e.g. its catalog)
            self.registry.invalidate(body.model)
        return EditResult(
            prepared.result_id,
            prepared.result_key,
            prepared.manifest,
            False,
            prepared.seed,
            output.width,
            output.height,
            output.data,
            output.media_type,
            output.extras,
            Timings(
                total_ms=1e3 * (time.perf_counter() - started),
                queue_ms=output.queue_ms,
                compute_ms=output.compute_ms,
                encode_ms=output.encode_ms,
                storage_ms=1e3 * (prepared.storage_s + store_s),
                transit_ms=output.transit_ms(task.submitted_at, delivered_at),
                batch_size=output.batch_size,
                group_size=output.group_size,
            ),
            output.sync_idle_s,
        )

    async def _compute_or_find(
        self, prepared: "_PreparedEdit", task: EditTask, want_image: bool, principal: Principal, deadline: float | None
    ) -> "EditOutput | EditResult":
        """The deferred cache lookup beside the dispatch: the stored result when there is one (the
        dispatched call is then cancelled, or its output dropped if it already ran), else the
        family's output. A miss saves the lookup's round trip; on real S3 that is 10-30 ms."""
        computing = asyncio.ensure_future(self.dispatch(prepared.family, prepared.handle, task))
        # its outcome is read below, or dropped on a hit: say so, or asyncio logs it as never retrieved
        computing.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            t = time.perf_counter()
            cached = await self.gate.run(
                self._cached_result,
                prepared.result_id,
                prepared.result_key,
                prepared.manifest,
                prepared.seed,
                want_image,
                principal,
                deadline=deadline,
            )
            prepared.storage_s += time.perf_counter() - t
        except BaseException:
            computing.cancel()
            raise
        if cached is not None:
            computing.cancel()
            cached.timings.storage_ms = 1e3 * prepared.storage_s
            return cached
        metrics.CACHE.labels("miss").inc()
        return await computing

    def _admission_for(self, family: str | None) -> EditAdmission | None:
        """The admission of ``family``'s synchronous edits at this replica (None for an unknown family)."""
        if family is None:
            return None
        admission = self._admission.get(family)
        if admission is None:
            admission = self._admission[family] = EditAdmission(
                family, self.settings.max_queue_wait_s, self.settings.family_max_ongoing_requests
            )
        return admission

    def _check_access(self, principal: Principal, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every id the edit reads, found and checked: id -> (key, HEAD), kept for reading the inputs."""
        found = {}
        for object_id in ids:
            if object_id not in found:
                found[object_id] = self.find_readable(principal, object_id)
        return found

    def _prepare(
        self,
        body: EditRequest,
        draw_seed: Callable[[], int],
        want_image: bool,
        principal: Principal,
        random_seed: bool,
        speculate: bool = False,
    ) -> "_PreparedEdit | EditResult":
        """Everything before the family, in one worker thread: the cached result, or the task's parts.
        ``speculate``: an edit that reads nothing stored leaves its cache lookup to the caller
        (``lookup_deferred``), to run beside the dispatch."""
        storage_s = 0.0
        t = time.perf_counter()
        manifest = self.registry.get_manifest(body.model)
        storage_s += time.perf_counter() - t
        family = manifest["family"]
        if manifest.get("broken"):  # a replica found these weights do not load: say so without dispatching
            raise ModelBroken(
                f"model {body.model!r} cannot be loaded ({manifest['broken']}); an operator must register "
                "working weights for it (collage models upload)",
                model=body.model,
            )
        spec = get_op(family, body.op)
        if spec is None or body.op not in manifest.get("ops", []):
            raise Unprocessable(
                f"model {body.model!r} (family {family!r}) has no op {body.op!r}; its ops are {sorted(manifest.get('ops', []))}"
            )
        if spec.required_scope is not None:
            principal.require(spec.required_scope, spec.scope_reason)
        handle = self.families.get(family)
        if handle is None:
            raise ServiceUnavailable(f"family {family!r} is not deployed in this application")

        params = validate(spec.params_model, spec.params_with_defaults(body.params, manifest), "params")
        inputs = validate(spec.inputs_model, body.inputs, "inputs")
        seed_drawn = False
        limits = self.settings.limits()  # for prepare's size checks and the pixel budget below

        def draw() -> int:
            nonlocal seed_drawn
            seed_drawn = True
            return draw_seed()

        try:
            canonical_inputs = spec.prepare(inputs, params, manifest, draw, limits)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        t = time.perf_counter()
        referenced = referenced_ids(spec, canonical_inputs)  # what the edit reads from storage: assets, projections
        found = {} if principal.sees_everything else self._check_access(principal, referenced)
        storage_s += time.perf_counter() - t
        params_json = params.model_dump(mode="json")
        document = {
            "model": body.model,
            "weights": manifest.get("weights_sha256"),
            "op": body.op,
            "params": params_json,
            "inputs": canonical_inputs,
        }
        encoding = body.output.encoding()
        if encoding != WHOLE_PNG:  # another encoding (or only the changed region) is another stored object
            document["encoding"] = encoding
        result_id = canonical_hash(document)
        result_key = self.store.result_key(result_id)
        seed = canonical_inputs.get("seed")

        look_up = not (random_seed and seed_drawn)
        # An edit that reads nothing stored (no image asset, no projection: a sample from a seed or a
        # latent, even of an op that could take a projection) has nothing more to fetch before its family:
        # its lookup can run while the family already computes (run decides whether the family is idle
        # enough). Not an op that changes what the platform caches (a catalog build): on a hit it must
        # not run at all.
        lookup_deferred = look_up and speculate and not spec.invalidates and not referenced
        if look_up and not lookup_deferred:
            t = time.perf_counter()
            cached = self._cached_result(result_id, result_key, manifest, seed, want_image, principal)
            storage_s += time.perf_counter() - t
            if cached is not None:
                cached.timings.storage_ms = 1e3 * storage_s
                return cached
        if not lookup_deferred:
            metrics.CACHE.labels("miss").inc()

        t = time.perf_counter()
        images = self._load_image_inputs(spec.image_inputs, canonical_inputs, found)
        storage_s += time.perf_counter() - t
        fit_extras: dict[str, Any] = {}
        if spec.fit_images is not None:
            try:
                fitted = FittedImages.of(spec.fit_images(images, params, manifest))
            except ValueError as exc:
                raise Unprocessable(str(exc)) from None
            images, fit_extras = fitted.images, fitted.extras
        if spec.check_pixel_budget is not None:
            budget = limits.model_pixel_budget(family, body.op, spec.pixel_budget)
            try:
                spec.check_pixel_budget(canonical_inputs, images, params, budget)
            except ValueError as exc:  # before dispatch: an edit over budget never reaches a replica
                raise PayloadTooLarge(str(exc), budget_pixels=budget) from None
        task_inputs = canonical_inputs
        if spec.latent_inputs:
            t = time.perf_counter()
            task_inputs = self._resolve_projections(body.model, family, spec.latent_inputs, canonical_inputs, found)
            storage_s += time.perf_counter() - t
        return _PreparedEdit(
            family,
            spec,
            handle,
            manifest,
            params_json,
            task_inputs,
            images,
            fit_extras,
            result_id,
            result_key,
            seed,
            storage_s,
            lookup_deferred,
        )

    def _cached_result(
        self, result_id: str, result_key: str, manifest: dict[str, Any], seed: int | None, want_image: bool, principal: Principal
    ) -> EditResult | None:
        head = self.store.head(result_key)
        if head is None:
            return None
        metrics.CACHE.labels("hit").inc()
        meta = head.get("metadata") or {}
        extras = self.read_extras(result_id, head)
        data = self.store.get(result_key) if want_image else None
        if principal.key_id is not None and not self.access.owns(principal, head):  # computed by another key first
            for object_id in produced_ids(result_id, extras):
                self.access.grant(principal, object_id)
        return EditResult(
            result_id,
            result_key,
            manifest,
            True,
            seed,
            int(meta.get("width", 0)),
            int(meta.get("height", 0)),
            data,
            head.get("content_type") or "image/png",
            extras,
            Timings(total_ms=0.0),
        )

    def read_extras(self, result_id: str, head: dict[str, Any]) -> dict[str, Any]:
        """A stored result's extras: inline in its metadata (small ones), in its sidecar, or none."""
        meta = head.get("metadata") or {}
        where = meta.get("extras")
        if where == "inline":
            return json.loads(base64.urlsafe_b64decode(meta[INLINE_EXTRAS_METADATA]))
        if where == "sidecar":
            return json.loads(self.store.get(self.extras_key(result_id)))
        return {}

    def _store_result(self, prepared: "_PreparedEdit", body: EditRequest, output: EditOutput, principal: Principal) -> float:
        """The computed result's writes, in one worker thread; returns their seconds.

        One conditional PUT of the image, carrying the owner and small extras in its metadata. Large
        extras go to a sidecar first: the image's presence is what marks a result complete."""
        started = time.perf_counter()
        metadata = {
            "kind": "image",
            "width": str(output.width),
            "height": str(output.height),
            "mode": "RGB",
            "model": body.model,
            "op": body.op,
        }
        if principal.key_id is not None:
            metadata[self.access.OWNER_METADATA] = principal.key_id
        if output.extras:
            encoded = json.dumps(output.extras, separators=(",", ":")).encode()
            inline = base64.urlsafe_b64encode(encoded).decode()
            if len(inline) <= INLINE_EXTRAS_MAX_CHARS:
                metadata.update({"extras": "inline", INLINE_EXTRAS_METADATA: inline})
            else:
                metadata["extras"] = "sidecar"
                self.store.put(self.extras_key(prepared.result_id), encoded, "application/json")
        written = self.store.put_new(prepared.result_key, output.data, output.media_type, metadata)
        if principal.key_id is not None:
            # What the family stored beside the result, and the result itself when another request
            # (same edit, another key or a concurrent one) wrote it first, need this key's markers.
            granted = produced_ids(prepared.result_id, output.extras)[0 if not written else 1 :]
            for object_id in granted:
                self.access.grant(principal, object_id)
        return time.perf_counter() - started

    def _resolve_projections(
        self,
        model: str,
        family: str,
        fields: tuple[str, ...],
        inputs: dict[str, Any],
        found: dict[str, tuple[str, dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """Replace each {"projection": result_id} by the latent that fitting edit (a `project`) stored:
        the fields of its extras that its op declares as ``latent_keys``.

        A field may hold one reference or a list of them; "" names the inputs object itself. Keys
        the request gave next to the projection (e.g. a class) win over the fitted ones.
        """
        fitting_ops = [name for name, spec in op_table().get(family, {}).items() if spec.latent_keys]
        fitting = " or ".join(repr(name) for name in fitting_ops) or "fitting"

        def resolve(ref: Any, where: str) -> Any:
            if not isinstance(ref, dict) or "projection" not in ref:
                return ref
            result_id = ref["projection"]
            key, head = (found or {}).get(result_id, (None, None))
            if key != self.store.result_key(result_id):
                head = self.store.head(self.store.result_key(result_id))
            meta = (head or {}).get("metadata") or {}
            if head is None or meta.get("op") not in fitting_ops or not meta.get("extras"):
                raise Unprocessable(f"{where}.projection {result_id} is not the result_id of a finished {fitting} edit")
            if meta.get("model") != model:
                raise Unprocessable(f"{where}.projection {result_id} was fitted with model {meta.get('model')!r}, not {model!r}")
            extras = self.read_extras(result_id, head)
            latent_keys = get_op(family, meta["op"]).latent_keys
            return {**{k: extras[k] for k in latent_keys if k in extras}, **ref}

        resolved = dict(inputs)
        for field in fields:
            if field == "":
                resolved = resolve(resolved, "inputs")
            elif isinstance(inputs.get(field), list):
                resolved[field] = [resolve(ref, f"inputs.{field}[{i}]") for i, ref in enumerate(inputs[field])]
            else:
                resolved[field] = resolve(inputs.get(field), f"inputs.{field}")
        return resolved

    def _load_image_inputs(
        self, image_inputs: dict[str, str], inputs: dict[str, Any], found: dict[str, tuple[str, dict[str, Any]]]
    ) -> dict[str, Any]:
        def read(asset_id: str) -> bytes:
            key = found[asset_id][0] if asset_id in found else self.find_asset(asset_id)[0]
            return self.store.get(key)

        return decode_image_inputs(image_inputs, inputs, read, self.settings.max_image_pixels)

    async def dispatch(self, family: str, handle, task: EditTask) -> EditOutput:
        """Send one task to its family deployment; busy -> 429, down or too slow -> 503."""
        timeout_s = self.settings.edit_timeout_s
        if task.deadline is not None:
            remaining_s = task.deadline - time.time()
            if remaining_s <= 0:
                raise DeadlineExceeded(
                    "the request's deadline (X-Request-Timeout) passed before the edit was dispatched; it was not computed"
                )
            timeout_s = min(timeout_s, remaining_s)
        metrics.QUEUE_DEPTH.labels(family).inc()
        calls = self._calls.get((family, task.model, task.background))
        if calls is None:  # one options() per model, not per edit: it copies the handle's settings
            calls = self._calls[(family, task.model, task.background)] = CoalescedCalls(
                family,
                handle.options(method_name="run_tasks", multiplexed_model_id=task.model),
                self.settings.edit_coalesce_ms / 1e3,
                self.settings.batch_max_size,
            )
        output = calls.submit(task)
        try:
            return await asyncio.wait_for(output, timeout=timeout_s)  # a timeout cancels it: see CoalescedCalls.submit
        except asyncio.TimeoutError:
            if timeout_s < self.settings.edit_timeout_s:
                raise DeadlineExceeded(
                    "the request's deadline (X-Request-Timeout) passed while the edit waited; it was cancelled"
                ) from None
            raise ServiceUnavailable(
                f"the {family} deployment did not answer within {self.settings.edit_timeout_s:.0f} s", retry_after_s=10
            ) from None
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ProblemError):
                raise cause from None
            raise
        except RayActorError:  # the replica died with this task in flight; Serve starts a new one
            raise ServiceUnavailable(f"the {family} replica serving this edit died; retry shortly", retry_after_s=5) from None
        except BackPressureError:  # the family's max_queued_requests is reached
            raise TooManyRequests(f"the {family} deployment is at capacity; retry shortly", headers={"Retry-After": "2"}) from None
        except DeploymentUnavailableError:
            raise ServiceUnavailable(f"the {family} deployment is unavailable; retry shortly", retry_after_s=5) from None
        finally:
            metrics.QUEUE_DEPTH.labels(family).dec()
