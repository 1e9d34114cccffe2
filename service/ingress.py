"""The HTTP ingress: a FastAPI app served by Ray Serve (``serve.ingress``).

Each route handler is a method of :class:`Ingress`; request/response models live in ``schemas/``.
The ingress validates everything (schemas, op table, images, shapes) before a family deployment
sees a task, resolves asset ids to S3 keys it minted itself, and stores results content-addressed.
"""

import asyncio
import base64
import binascii
import hashlib
import json
import random
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.assets import AssetInfo, AssetUploadJSON, UploadSlot, UploadSlotRequest
from schemas.edits import EditRequest, EditResponse, Timings
from schemas.models import CatalogInfo, CatalogLabels, FamilyInfo, ModelInfo, ModelList
from schemas.ops import OPS, get_op
from schemas.problems import Problem
from service import metrics
from service.config import get_settings
from service.errors import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    UnsupportedMediaType,
    Unprocessable,
)
from service.images import decode_image, inspect_image
from service.logs import get_logger, request_id_var
from service.registry import ModelRegistry
from service.storage import AssetStore
from service.tasks import EditOutput, EditTask

VERSION = "0.1.0"
REQUEST_ID_HEADER = "X-Request-ID"
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": title}
    for status, title in [(400, "Bad request"), (404, "Not found"), (413, "Too large"), (415, "Unsupported media type"),
                          (422, "Invalid content"), (429, "Queue full, retry later"), (503, "Unavailable, retry later")]
}

log = get_logger("collage.ingress")
api = FastAPI(
    title="Collage",
    version=VERSION,
    description="Spatially controlled GAN image editing. Errors are RFC 9457 problem+json.",
)


# ---- errors ----------------------------------------------------------------------------------
def problem_response(exc: ProblemError) -> JSONResponse:
    return JSONResponse(
        exc.to_problem(instance=request_id_var.get()), status_code=exc.status, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE
    )


@api.exception_handler(ProblemError)
async def _on_problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(exc)


def _clean_errors(errors: list[dict[str, Any]], prefix: tuple = ()) -> list[dict[str, Any]]:
    return [{"loc": list(prefix) + [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors]


@api.exception_handler(RequestValidationError)
async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _clean_errors(list(exc.errors()))
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(BadRequest("request body is not valid JSON", errors=errors))
    summary = "; ".join(f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors[:5])
    return problem_response(Unprocessable(f"request does not match the schema: {summary}", errors=errors))


@api.exception_handler(StarletteHTTPException)
async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    error = ProblemError(str(exc.detail))
    error.status, error.title, error.slug = exc.status_code, str(exc.detail), f"http-{exc.status_code}"
    if exc.status_code == 404:
        error.detail = f"no route {request.method} {request.url.path}; see /docs or /openapi.json"
    return problem_response(error)


@api.exception_handler(Exception)
async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error")
    error = ProblemError("internal error; the request id identifies it in the service logs")
    return problem_response(error)


# ---- middleware ------------------------------------------------------------------------------
class BodyLimitMiddleware:
    """Refuse oversize bodies before reading them: by Content-Length, then by counting chunks."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = get_settings().max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = PayloadTooLarge(f"request body exceeds the limit of {limit} bytes; upload large files with POST /v1/assets/uploads", max_bytes=limit)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await problem_response(too_large)(scope, receive, send)
        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large
            return message

        return await self.app(scope, counted_receive, send)


api.add_middleware(BodyLimitMiddleware)


@api.middleware("http")
async def _request_context(request: Request, call_next):
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    # Ray's proxy echoes the client's X-Request-ID verbatim (or mints one), so log and report that same id.
    request_id = incoming[:128] if incoming else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except ProblemError as exc:  # raised by the body-limit wrapper while the route read the body
        response = problem_response(exc)
    finally:
        request_id_var.reset(token)
    elapsed = time.perf_counter() - started
    route = getattr(request.scope.get("route"), "path", "unmatched")
    op = getattr(request.state, "op", "")
    metrics.REQUESTS.labels(route, op, str(response.status_code)).inc()
    metrics.REQUEST_LATENCY.labels(route, op).observe(elapsed)
    # Ray Serve's proxy echoes X-Request-ID (the client's, or one it minted) on every response.
    log.info(
        "request",
        extra={"request_id": request_id, "method": request.method, "route": route, "op": op,
               "status": response.status_code, "ms": round(1e3 * elapsed, 2)},
    )
    return response


# ---- helpers ---------------------------------------------------------------------------------
def _validate(model: type[BaseModel], data: dict[str, Any], where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _clean_errors(exc.errors(include_url=False), (where,))
        summary = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        raise Unprocessable(f"invalid {where}: {summary}", errors=errors) from None


def canonical_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- the deployment --------------------------------------------------------------------------
@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    def __init__(self, families: dict[str, Any]) -> None:
        self.settings = get_settings()
        self.store = AssetStore(self.settings)
        self.registry = ModelRegistry(self.store)
        self.families = families  # family name -> DeploymentHandle
        self._seed_rng = random.SystemRandom()

    # ---- probes and metrics ----------------------------------------------------------------
    @api.get("/healthz", tags=["ops"], summary="Process is up")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", tags=["ops"], summary="S3 reachable and every family deployment computes",
             responses={503: _PROBLEM_RESPONSES[503]})
    async def readyz(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        try:
            await run_in_threadpool(self.store.ping)
            checks["storage"] = "ok"
        except ProblemError as exc:
            checks["storage"] = exc.detail
        for name, handle in self.families.items():
            try:
                await asyncio.wait_for(self._await(handle.ready.remote()), timeout=10)
                checks[f"family:{name}"] = "ok"
            except Exception as exc:  # not ready, whatever the cause
                checks[f"family:{name}"] = f"{type(exc).__name__}: {exc}"[:300]
        if any(v != "ok" for v in checks.values()):
            raise ServiceUnavailable("not ready: " + ", ".join(f"{k}={v}" for k, v in checks.items() if v != "ok"), checks=checks)
        return {"status": "ready", "checks": checks}

    @api.get("/metrics", tags=["ops"], summary="Prometheus metrics of this ingress replica")
    async def prometheus(self) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    # ---- models ----------------------------------------------------------------------------
    def _model_info(self, manifest: dict[str, Any]) -> ModelInfo:
        family_ops = OPS.get(manifest["family"], {})
        return ModelInfo(
            name=manifest["name"], family=manifest["family"], format=manifest["format"],
            resolution=manifest.get("resolution"), classes=manifest.get("classes"), layers=manifest.get("layers"),
            random_init=bool(manifest.get("random_init")), description=manifest.get("description", ""),
            weights_sha256=manifest.get("weights_sha256"), arch=manifest.get("arch", {}),
            ops=[family_ops[op].info() for op in manifest.get("ops", []) if op in family_ops],
            catalog=manifest.get("catalog"),
        )

    @api.get("/v1/models", response_model=ModelList, tags=["models"], summary="Families, checkpoints and op parameters",
             responses={503: _PROBLEM_RESPONSES[503]})
    async def list_models(self) -> ModelList:
        manifests = await run_in_threadpool(self.registry.list_manifests)
        families = [FamilyInfo(name=f, deployed=f in self.families, ops=sorted(ops)) for f, ops in sorted(OPS.items())]
        return ModelList(families=families, models=[self._model_info(m) for m in manifests])

    @api.get("/v1/models/{name}", response_model=ModelInfo, tags=["models"], responses={404: _PROBLEM_RESPONSES[404]})
    async def get_model(self, name: str) -> ModelInfo:
        if not re.match(r"^[a-z0-9][a-z0-9._-]{1,62}$", name):
            raise NotFound(f"model {name!r} is not registered")
        return self._model_info(await run_in_threadpool(self.registry.get_manifest, name))

    @api.put("/v1/models/{name}/catalog/labels", response_model=CatalogInfo, tags=["models"],
             summary="Name clusters of a model's part catalog (e.g. {\"labels\": {\"3\": \"eyes\"}})",
             responses={s: _PROBLEM_RESPONSES[s] for s in (404, 422)})
    async def label_catalog(self, name: str, body: CatalogLabels) -> CatalogInfo:
        if not re.match(r"^[a-z0-9][a-z0-9._-]{1,62}$", name):
            raise NotFound(f"model {name!r} is not registered")
        return CatalogInfo.model_validate(await run_in_threadpool(self.registry.set_catalog_labels, name, body.labels))

    # ---- assets ----------------------------------------------------------------------------
    def _asset_info(self, asset_id: str, key: str, head: dict[str, Any], created: bool | None = None) -> AssetInfo:
        meta = head.get("metadata") or {}
        return AssetInfo(
            asset_id=asset_id, size=int(head["size"]), content_type=head.get("content_type") or "application/octet-stream",
            kind=meta.get("kind", "image"), width=int(meta["width"]) if "width" in meta else None,
            height=int(meta["height"]) if "height" in meta else None, mode=meta.get("mode"),
            url=self.store.presign_get(key), url_expires_in_s=self.settings.presign_expires_s, created=created,
        )

    def _find_asset(self, asset_id: str) -> tuple[str, dict[str, Any]]:
        """Asset ids name uploads (``assets/``) and edit results (``results/``), both server-minted keys."""
        for key in (self.store.asset_key(asset_id), self.store.result_key(asset_id)):
            head = self.store.head(key)
            if head is not None:
                return key, head
        raise NotFound(f"asset {asset_id} does not exist; upload it with POST /v1/assets first")

    def _store_asset(self, data: bytes, content_type: str, kind: str) -> AssetInfo:
        if not data:
            raise Unprocessable("the upload is empty")
        metadata = {"kind": kind}
        if kind == "image":
            image = inspect_image(data, self.settings.max_image_pixels)
            decode_image(data, self.settings.max_image_pixels, mode="RGB" if image.mode not in ("L", "1") else "L")
            metadata.update(width=str(image.width), height=str(image.height), mode=image.mode)
            content_type = IMAGE_MIME.get(image.format or "", content_type)
        asset_id = hashlib.sha256(data).hexdigest()
        key = self.store.asset_key(asset_id)
        created = self.store.put_if_absent(key, data, content_type=content_type, metadata=metadata)
        head = self.store.head(key) or {"size": len(data), "content_type": content_type, "metadata": metadata}
        return self._asset_info(asset_id, key, head, created=created)

    @api.post(
        "/v1/assets", response_model=AssetInfo, status_code=201, tags=["assets"],
        summary="Upload an asset (multipart field 'file', or JSON with base64)",
        responses={200: {"model": AssetInfo, "description": "the same bytes were stored already"},
                   **{s: _PROBLEM_RESPONSES[s] for s in (400, 413, 415, 422, 503)}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}, "kind": {"type": "string", "enum": ["image", "data"]}}}},
            "application/json": {"schema": AssetUploadJSON.model_json_schema()}}}},
    )
    async def upload_asset(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=4)
            except ProblemError:
                raise
            except Exception as exc:
                raise BadRequest(f"multipart body could not be parsed: {exc}") from None
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise Unprocessable("multipart upload needs a file field named 'file'")
            kind = str(form.get("kind") or "image")
            if kind not in ("image", "data"):
                raise Unprocessable("kind must be 'image' or 'data'")
            data = await upload.read()
            declared = upload.content_type or "application/octet-stream"
        elif content_type == "application/json":
            try:
                body = json.loads(await request.body())
            except ValueError:
                raise BadRequest("request body is not valid JSON") from None
            payload = _validate(AssetUploadJSON, body if isinstance(body, dict) else {"_": body}, "body")
            try:
                data = base64.b64decode(payload.data_base64, validate=True)
            except (binascii.Error, ValueError):
                raise Unprocessable("data_base64 is not valid base64") from None
            kind, declared = payload.kind, payload.content_type
        else:
            raise UnsupportedMediaType(
                f"send multipart/form-data (field 'file') or application/json (data_base64), not {content_type or 'no content type'}"
            )
        info = await run_in_threadpool(self._store_asset, data, declared, kind)
        return JSONResponse(info.model_dump(mode="json"), status_code=201 if info.created else 200)

    @api.get("/v1/assets/{asset_id}", response_model=AssetInfo, tags=["assets"],
             summary="Asset or result metadata and a presigned GET URL (?redirect=true: 307 to it)",
             responses={307: {"description": "redirect to the presigned URL"}, 404: _PROBLEM_RESPONSES[404]})
    async def get_asset(self, asset_id: str, redirect: bool = False) -> Response:
        if not re.match(r"^[0-9a-f]{64}$", asset_id):
            raise NotFound(f"asset {asset_id!r} does not exist: asset ids are 64 lowercase hex characters")
        key, head = await run_in_threadpool(self._find_asset, asset_id)
        info = self._asset_info(asset_id, key, head)
        if redirect:
            return RedirectResponse(info.url, status_code=307)
        return JSONResponse(info.model_dump(mode="json"))

    @api.post("/v1/assets/uploads", response_model=UploadSlot, status_code=201, tags=["assets"],
              summary="Get a presigned PUT URL for a large upload", responses={422: _PROBLEM_RESPONSES[422]})
    async def create_upload(self, body: UploadSlotRequest) -> UploadSlot:
        upload_id = uuid.uuid4().hex
        slot = {"content_type": body.content_type, "kind": body.kind, "size": body.size}
        await run_in_threadpool(self.store.put, self.store.key("uploads", upload_id + ".json"), json.dumps(slot).encode(), "application/json")
        url = self.store.presign_put(self.store.key("uploads", upload_id), body.content_type)
        return UploadSlot(upload_id=upload_id, url=url, headers={"Content-Type": body.content_type},
                          expires_in_s=self.settings.presign_expires_s)

    @api.post("/v1/assets/uploads/{upload_id}/complete", response_model=AssetInfo, tags=["assets"],
              summary="Verify a presigned upload and turn it into a content-addressed asset",
              responses={s: _PROBLEM_RESPONSES[s] for s in (404, 413, 422)})
    async def complete_upload(self, upload_id: str) -> Response:
        if not _UPLOAD_ID_RE.match(upload_id):
            raise NotFound(f"upload {upload_id!r} does not exist")

        def finish() -> AssetInfo:
            try:
                slot = json.loads(self.store.get(self.store.key("uploads", upload_id + ".json")))
            except NotFound:
                raise NotFound(f"upload {upload_id} does not exist or was completed already") from None
            head = self.store.head(self.store.key("uploads", upload_id))
            if head is None:
                raise NotFound(f"nothing was PUT to upload {upload_id} yet; PUT the bytes to its URL first")
            if head["size"] > self.settings.max_body_bytes:
                raise PayloadTooLarge(f"upload is {head['size']} bytes; the limit is {self.settings.max_body_bytes}")
            if slot.get("size") and head["size"] != slot["size"]:
                raise Unprocessable(f"upload is {head['size']} bytes but {slot['size']} were announced")
            data = self.store.get(self.store.key("uploads", upload_id))
            info = self._store_asset(data, slot["content_type"], slot["kind"])
            self.store.delete(self.store.key("uploads", upload_id))
            self.store.delete(self.store.key("uploads", upload_id + ".json"))
            return info

        info = await run_in_threadpool(finish)
        return JSONResponse(info.model_dump(mode="json"), status_code=201 if info.created else 200)

    # ---- edits -----------------------------------------------------------------------------
    @api.post("/v1/edits", response_model=EditResponse, tags=["edits"], summary="Run one edit synchronously",
              responses={s: _PROBLEM_RESPONSES[s] for s in (400, 404, 413, 422, 429, 503)})
    async def create_edit(self, body: EditRequest, request: Request) -> EditResponse:
        started = time.perf_counter()
        request.state.op = body.op
        storage_s = 0.0

        t = time.perf_counter()
        manifest = await run_in_threadpool(self.registry.get_manifest, body.model)
        storage_s += time.perf_counter() - t
        family = manifest["family"]
        spec = get_op(family, body.op)
        if spec is None or body.op not in manifest.get("ops", []):
            raise Unprocessable(
                f"model {body.model!r} (family {family!r}) has no op {body.op!r}; its ops are {sorted(manifest.get('ops', []))}"
            )
        handle = self.families.get(family)
        if handle is None:
            raise ServiceUnavailable(f"family {family!r} is not deployed in this application")

        params = _validate(spec.params_model, body.params, "params")
        inputs = _validate(spec.inputs_model, body.inputs, "inputs")
        try:
            canonical_inputs = spec.prepare(inputs, params, manifest, lambda: self._seed_rng.randrange(2**32))
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        params_json = params.model_dump(mode="json")
        result_id = canonical_hash(
            {"model": body.model, "weights": manifest.get("weights_sha256"), "op": body.op, "params": params_json, "inputs": canonical_inputs}
        )
        result_key = self.store.result_key(result_id)

        t = time.perf_counter()
        cached_head = await run_in_threadpool(self.store.head, result_key)
        storage_s += time.perf_counter() - t
        if cached_head is not None:
            metrics.CACHE.labels("hit").inc()
            meta = cached_head.get("metadata") or {}
            extras = json.loads(await run_in_threadpool(self.store.get, self._extras_key(result_id))) if meta.get("extras") else {}
            png = await run_in_threadpool(self.store.get, result_key) if body.output.inline else None
            return self._edit_response(body, manifest, result_id, result_key, cached=True, seed=canonical_inputs.get("seed"),
                                       width=int(meta.get("width", 0)), height=int(meta.get("height", 0)), png=png,
                                       extras=extras, timings=Timings(total_ms=1e3 * (time.perf_counter() - started), storage_ms=1e3 * storage_s))
        metrics.CACHE.labels("miss").inc()

        t = time.perf_counter()
        images = await run_in_threadpool(self._load_image_inputs, spec.image_inputs, canonical_inputs)
        storage_s += time.perf_counter() - t
        if spec.fit_images is not None:
            try:
                images = await run_in_threadpool(spec.fit_images, images, params, manifest)
            except ValueError as exc:
                raise Unprocessable(str(exc)) from None

        task_inputs = canonical_inputs
        if spec.latent_inputs:
            t = time.perf_counter()
            task_inputs = await run_in_threadpool(self._resolve_projections, body.model, spec.latent_inputs, canonical_inputs)
            storage_s += time.perf_counter() - t
        task = EditTask(model=body.model, op=body.op, params=params_json, inputs=task_inputs, images=images, submitted_at=time.time())
        output = await self._dispatch(family, handle, task)
        metrics.BATCH_SIZE.labels(family).observe(output.batch_size)
        metrics.QUEUE_SECONDS.labels(family).observe(output.queue_ms / 1e3)

        t = time.perf_counter()
        metadata = {"kind": "image", "width": str(output.width), "height": str(output.height), "mode": "RGB",
                    "model": body.model, "op": body.op}
        if output.extras:  # sidecar first: the PNG's presence is what marks a result complete
            metadata["extras"] = "sidecar"
            await run_in_threadpool(self.store.put, self._extras_key(result_id),
                                    json.dumps(output.extras, separators=(",", ":")).encode(), "application/json")
        await run_in_threadpool(self.store.put, result_key, output.png, "image/png", metadata)
        storage_s += time.perf_counter() - t
        if "catalog" in output.extras:  # the family stored a new part catalog: see it on the next request
            self.registry.invalidate(body.model)
        return self._edit_response(
            body, manifest, result_id, result_key, cached=False, seed=canonical_inputs.get("seed"), width=output.width,
            height=output.height, png=output.png, extras=output.extras,
            timings=Timings(total_ms=1e3 * (time.perf_counter() - started), queue_ms=output.queue_ms, compute_ms=output.compute_ms,
                            encode_ms=output.encode_ms, storage_ms=1e3 * storage_s, batch_size=output.batch_size,
                            group_size=output.group_size),
        )

    def _extras_key(self, result_id: str) -> str:
        return self.store.result_key(result_id) + ".json"

    # Fields of a `project` edit's extras that make up the fitted latent (style: w; collage: z and class).
    _LATENT_KEYS = ("w", "z", "class")

    def _resolve_projections(self, model: str, fields: tuple[str, ...], inputs: dict[str, Any]) -> dict[str, Any]:
        """Replace each {"projection": result_id} by the latent that `project` edit stored.

        A field may hold one reference or a list of them; "" names the inputs object itself. Keys
        the request gave next to the projection (e.g. a class) win over the fitted ones.
        """

        def resolve(ref: Any, where: str) -> Any:
            if not isinstance(ref, dict) or "projection" not in ref:
                return ref
            result_id = ref["projection"]
            head = self.store.head(self.store.result_key(result_id))
            meta = (head or {}).get("metadata") or {}
            if head is None or meta.get("op") != "project" or not meta.get("extras"):
                raise Unprocessable(f"{where}.projection {result_id} is not the result_id of a finished 'project' edit")
            if meta.get("model") != model:
                raise Unprocessable(f"{where}.projection {result_id} was fitted with model {meta.get('model')!r}, not {model!r}")
            extras = json.loads(self.store.get(self._extras_key(result_id)))
            return {**{k: extras[k] for k in self._LATENT_KEYS if k in extras}, **ref}

        resolved = dict(inputs)
        for field in fields:
            if field == "":
                resolved = resolve(resolved, "inputs")
            elif isinstance(inputs.get(field), list):
                resolved[field] = [resolve(ref, f"inputs.{field}[{i}]") for i, ref in enumerate(inputs[field])]
            else:
                resolved[field] = resolve(inputs.get(field), f"inputs.{field}")
        return resolved

    def _load_image_inputs(self, image_inputs: dict[str, str], inputs: dict[str, Any]) -> dict[str, Any]:
        """Decode the image assets the inputs name; a field holding a list of ids gives a list of arrays."""
        images: dict[str, Any] = {}
        for field, mode in image_inputs.items():
            ids = inputs.get(field)
            if ids is None:
                continue
            decoded = [decode_image(self.store.get(self._find_asset(asset_id)[0]), self.settings.max_image_pixels, mode=mode)
                       for asset_id in (ids if isinstance(ids, list) else [ids])]
            images[field] = decoded if isinstance(ids, list) else decoded[0]
        return images

    @staticmethod
    async def _await(response) -> Any:
        return await response

    async def _dispatch(self, family: str, handle, task: EditTask) -> EditOutput:
        metrics.QUEUE_DEPTH.labels(family).inc()
        response = handle.options(multiplexed_model_id=task.model).remote(task)
        try:
            return await asyncio.wait_for(self._await(response), timeout=self.settings.edit_timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise ServiceUnavailable(f"the {family} deployment did not answer within {self.settings.edit_timeout_s:.0f} s",
                                     retry_after_s=10) from None
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ProblemError):
                raise cause from None
            raise
        except BackPressureError:  # the family's max_queued_requests is reached
            raise TooManyRequests(f"the {family} deployment is at capacity; retry shortly", headers={"Retry-After": "2"}) from None
        except DeploymentUnavailableError:
            raise ServiceUnavailable(f"the {family} deployment is unavailable; retry shortly", retry_after_s=5) from None
        finally:
            metrics.QUEUE_DEPTH.labels(family).dec()

    def _edit_response(self, body: EditRequest, manifest: dict[str, Any], result_id: str, result_key: str, *, cached: bool,
                       seed: int | None, width: int, height: int, png: bytes | None, extras: dict[str, Any],
                       timings: Timings) -> EditResponse:
        inline = None
        if body.output.inline and png is not None and len(png) <= self.settings.inline_max_bytes:
            inline = base64.b64encode(png).decode()
        return EditResponse(
            result_id=result_id, model=body.model, op=body.op, cached=cached, seed=seed, width=width, height=height,
            url=self.store.presign_get(result_key) if body.output.presign else None,
            url_expires_in_s=self.settings.presign_expires_s if body.output.presign else None,
            image_base64=inline, extras=extras, random_init=bool(manifest.get("random_init")), timings=timings,
        )

