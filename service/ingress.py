"""The HTTP ingress: a FastAPI app served by Ray Serve (``serve.ingress``).

Each route handler is a method of :class:`Ingress`; request/response models live in ``schemas/``.
The ingress validates everything (schemas, op table, images, shapes) before a family deployment
sees a task, resolves asset ids to S3 keys it minted itself, and stores results content-addressed.
"""

import asyncio
import base64
import binascii
import functools
import hashlib
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.assets import MEDIA_TYPE_MAX_LENGTH, AssetInfo, AssetUploadJSON, UploadSlot, UploadSlotRequest, is_media_type
from schemas.edits import EditRequest, EditResponse
from schemas.jobs import JOB_ID_PATTERN, JobItem, JobRequest, JobResultsPage, JobStatus
from schemas.models import FamilyInfo, ModelInfo, ModelList
from schemas.problems import Problem
from service import metrics
from service.admission import LoopLag
from service.auth import AccessIndex, Principal, metrics_access, requires
from service.config import get_settings
from service.edits import EditPipeline, awaited, canonical_hash, clean_errors, validate
from service.errors import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    Conflict,
    DeadlineExceeded,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unprocessable,
    UnsupportedMediaType,
)
from service.families import model_attachments, op_table
from service.images import decode_image, inspect_image
from service.jobs import JobStore, check_webhook_url, is_terminal, new_job_id, parse_manifest, utcnow
from service.json_body import JSONBodyRoute, parse_json
from service.logs import get_logger, request_id_var, set_level
from service.openapi import ATTACHMENT_EDIT_PATH
from service.openapi import install as install_openapi
from service.registry import ModelRegistry
from service.storage import AssetStore
from service.storage_gate import StorageGate, in_storage_thread

VERSION = "0.1.0"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.lower().encode()  # as ASGI spells header names
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": title}
    for status, title in [
        (400, "Bad request"),
        (401, "No valid API key (WWW-Authenticate: Bearer)"),
        (403, "The API key lacks the scope this route needs"),
        (404, "Not found"),
        (413, "Too large"),
        (415, "Unsupported media type"),
        (409, "Conflict with the current state"),
        (422, "Invalid content"),
        (429, "Rate limit or queue full, retry after Retry-After"),
        (503, "Unavailable, retry later"),
        (504, "The X-Request-Timeout deadline passed; nothing was computed"),
    ]
}
DEADLINE_HEADER = "X-Request-Timeout"

# ---- the playground: static files of a page that edits through this API (docs/playground.md) ----
PLAYGROUND_DIR = Path(__file__).resolve().parent / "playground"
_PLAYGROUND_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
# The page calls only this origin (connect-src 'self'); result images come by presigned URL from the S3
# endpoint, whose origin the page cannot know in advance, hence img-src *.
_PLAYGROUND_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src * data: blob:; connect-src 'self'; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _playground_files() -> dict[str, tuple[bytes, str]]:
    """Every file the page is made of: URL name -> (bytes, media type); nothing outside the folder is served."""
    files = {}
    for path in sorted(PLAYGROUND_DIR.rglob("*")):
        if path.is_file() and path.suffix in _PLAYGROUND_TYPES:
            files[path.relative_to(PLAYGROUND_DIR).as_posix()] = (path.read_bytes(), _PLAYGROUND_TYPES[path.suffix])
    return files


def _playground_version() -> float:
    """The newest mtime of the page's files: an edited page is served at once, without a restart."""
    return max((path.stat().st_mtime for path in PLAYGROUND_DIR.rglob("*") if path.is_file()), default=0.0)


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a route behind an API key: the given problems plus 400 (malformed), 401, 403,
    422 (also in place of FastAPI's own validation response, which is not problem+json) and 429."""
    return {s: _PROBLEM_RESPONSES[s] for s in sorted({*statuses, 400, 401, 403, 422, 429})}


log = get_logger("collage.ingress")
api = FastAPI(
    title="Collage",
    version=VERSION,
    description="Spatially controlled GAN image editing. Errors are RFC 9457 problem+json. Every route but /healthz, "
    "/readyz (and /metrics, unless configured otherwise) needs `Authorization: Bearer <API key>`; "
    f"`POST /v1/edits` honours `{DEADLINE_HEADER}: <seconds>` (past it, the edit is not computed: 504). "
    "Edits are typed per (family, op): `EditRequest` is anyOf `<Family><Op>EditRequest`.",
    generate_unique_id_function=lambda route: route.name,  # operationId = the handler's name, e.g. create_edit
)
api.router.route_class = JSONBodyRoute  # every JSON body through service/json_body.py (one parser, one depth limit)
install_openapi(api)  # typed edit variants and problem+json error responses (service/openapi.py)


# ---- errors ----------------------------------------------------------------------------------
def problem_response(exc: ProblemError) -> JSONResponse:
    return JSONResponse(
        exc.to_problem(instance=request_id_var.get()), status_code=exc.status, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE
    )


@api.exception_handler(ProblemError)
async def _on_problem(request: Request, exc: ProblemError) -> JSONResponse:
    return problem_response(exc)


@api.exception_handler(RequestValidationError)
async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = clean_errors(list(exc.errors()))
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
        too_large = PayloadTooLarge(
            f"request body exceeds the limit of {limit} bytes; upload large files with POST /v1/assets/uploads", max_bytes=limit
        )
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

# Probes and the scrape answer whatever the load: a liveness probe or a health check that got a 429 would
# take a busy, healthy replica out of service.
_UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class IngressAdmissionMiddleware:
    """429 + Retry-After at once, before the body is read, while this replica already holds
    ``ingress_max_ongoing_requests`` requests or its event loop runs more than ``ingress_max_loop_lag_ms``
    late (service/admission.py, LoopLag).

    Without it, the extras of an overload waited where nothing could answer them: in Serve's queue in
    front of the replica (its ``max_ongoing_requests``, which service/app.py now sets above this limit
    so that it never fills), and, once the ingress's CPU was the bottleneck, for the event loop itself.
    Clients saw 429s after seconds and 200s after tens of seconds, and HAProxy, whose health checks
    timed out, answered some with its own 500."""

    def __init__(self, app) -> None:
        self.app = app
        self.in_flight = 0
        self.loop_lag = LoopLag()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in _UNLIMITED_PATHS:
            return await self.app(scope, receive, send)
        settings = get_settings()
        self.loop_lag.start()
        reason = detail = None
        if self.in_flight >= settings.ingress_max_ongoing_requests:
            reason, detail = "in_flight", f"is at capacity: it holds its limit of {settings.ingress_max_ongoing_requests} requests"
        elif (lag_ms := 1e3 * self.loop_lag.lag_s()) > settings.ingress_max_loop_lag_ms:
            reason, detail = "loop_lag", f"is at capacity: its event loop runs {lag_ms:.0f} ms late"
        if reason is not None:
            metrics.INGRESS_SHED.labels(reason).inc()
            busy = TooManyRequests(f"this ingress replica {detail}; retry shortly", headers={"Retry-After": "1"})
            return await problem_response(busy)(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


api.add_middleware(IngressAdmissionMiddleware)


@functools.cache
def _declared_ops() -> frozenset[str]:
    return frozenset(name for table in op_table().values() for name in table)


def metric_op(op: str) -> str:
    """The ``op`` label of the request metrics and log line: a declared op's name, else ``"other"``. The body's
    op is the client's text until the edit is validated; as a label it would make a series of every string
    sent (and Ray's metric export refuses non-ASCII tags)."""
    return op if not op or op in _declared_ops() else "other"


class RequestContextMiddleware:
    """Request id, metrics and the one access log line of every request.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
    runs each request's app in a task of its own behind memory streams, which cost about as much
    CPU as the rest of a cached edit."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = next((v for k, v in scope.get("headers") or () if k == _REQUEST_ID_NAME), b"").decode("latin-1")
        # Ray's proxy echoes the client's X-Request-ID verbatim (or mints one), so log and report that same id.
        request_id = incoming[:128] if incoming else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Server-Timing: the ingress's own time, so a client can tell it from the network and the proxy
                timing = f"ingress;dur={1e3 * (time.perf_counter() - started):.1f}".encode()
                message = {**message, "headers": [*message.get("headers", ()), (b"server-timing", timing)]}
            await send(message)

        try:
            try:
                await self.app(scope, receive, send_and_record)
            except ProblemError as exc:  # raised by the body-limit wrapper while the route read the body
                await problem_response(exc)(scope, receive, send_and_record)
        finally:  # also after an unexpected error, which Starlette answered with a 500 and re-raised
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            op = metric_op((scope.get("state") or {}).get("op", ""))
            metrics.REQUESTS.labels(route, op, str(status)).inc()
            metrics.REQUEST_LATENCY.labels(route, op).observe(elapsed)
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "op": op,
                    "status": status,
                    "ms": round(1e3 * elapsed, 2),
                },
            )
            request_id_var.reset(token)


api.add_middleware(RequestContextMiddleware)


# ---- the deployment --------------------------------------------------------------------------
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class Ingress:
    def __init__(self, families: dict[str, Any], job_runner: Any = None) -> None:
        self.settings = get_settings()
        set_level(self.settings.log_level)
        self.store = AssetStore(self.settings)
        self.registry = ModelRegistry(self.store)
        self.families = families  # family name -> DeploymentHandle
        self.job_runner = job_runner  # DeploymentHandle of service.job_runner.JobRunner
        self.jobs = JobStore(self.store)
        self.gate = StorageGate(
            self.settings.storage_deadline_s, self.settings.storage_breaker_failures, self.settings.storage_breaker_open_s
        )  # every storage step of a request goes through it
        self.edits = EditPipeline(self.settings, self.store, self.registry, families, gate=self.gate)
        self.access = AccessIndex(self.store)
        self._seed_rng = random.SystemRandom()
        self._playground: tuple[float, dict[str, tuple[bytes, str]]] | None = None  # (version, files), read on first request

    # ---- probes and metrics ----------------------------------------------------------------
    @api.get("/healthz", tags=["ops"], summary="Process is up")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", tags=["ops"], summary="S3 reachable and every family deployment computes", responses={503: _PROBLEM_RESPONSES[503]})
    async def readyz(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        try:
            await in_storage_thread(self.store.ping)  # readiness asks S3 itself, breaker or not
            checks["storage"] = "ok"
        except ProblemError as exc:
            checks["storage"] = exc.detail
        probes = {f"family:{name}": handle for name, handle in self.families.items()}
        if self.job_runner is not None:
            probes["jobs"] = self.job_runner
        for name, handle in probes.items():
            try:
                await asyncio.wait_for(awaited(handle.ready.remote()), timeout=10)
                checks[name] = "ok"
            except Exception as exc:  # not ready, whatever the cause
                checks[name] = f"{type(exc).__name__}: {exc}"[:300]
        if any(v != "ok" for v in checks.values()):
            raise ServiceUnavailable("not ready: " + ", ".join(f"{k}={v}" for k, v in checks.items() if v != "ok"), checks=checks)
        return {"status": "ready", "checks": checks}

    @api.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics of this ingress replica (admin key unless metrics_public)",
        dependencies=[Depends(metrics_access)],
        response_class=PlainTextResponse,
        responses={s: _PROBLEM_RESPONSES[s] for s in (401, 403, 429)},
    )
    async def prometheus(self) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    # ---- the playground (static; the page itself carries no data and so needs no key) --------
    def _playground_file(self, name: str) -> Response:
        version = _playground_version()
        if self._playground is None or self._playground[0] != version:
            self._playground = (version, _playground_files())
        files = self._playground[1]
        if name not in files:
            raise NotFound(f"the playground has no file {name[:100]!r}")
        data, media_type = files[name]
        return Response(data, media_type=media_type, headers=_PLAYGROUND_HEADERS)

    @api.get("/playground", include_in_schema=False)
    async def playground(self) -> Response:
        """The page (docs/playground.md); kept out of the OpenAPI document, which describes the API it calls."""
        return self._playground_file("index.html")

    @api.get("/playground/{name:path}", include_in_schema=False)
    async def playground_asset(self, name: str) -> Response:
        return self._playground_file(name)

    # ---- models ----------------------------------------------------------------------------
    def _model_info(self, manifest: dict[str, Any]) -> ModelInfo:
        family_ops = op_table().get(manifest["family"], {})
        return ModelInfo(
            name=manifest["name"],
            family=manifest["family"],
            format=manifest["format"],
            resolution=manifest.get("resolution"),
            classes=manifest.get("classes"),
            layers=manifest.get("layers"),
            random_init=bool(manifest.get("random_init")),
            description=manifest.get("description", ""),
            weights_sha256=manifest.get("weights_sha256"),
            arch=manifest.get("arch", {}),
            ops=[family_ops[op].info(manifest) for op in manifest.get("ops", []) if op in family_ops],
            **{name: manifest.get(name) for name in model_attachments(manifest["family"])},
            image_size=manifest.get("image_size"),
            keypoint_names=manifest.get("keypoint_names"),
            examples=manifest.get("examples"),
            factors=manifest.get("factors"),
            embedding_dims=manifest.get("embedding_dims"),
            broken=manifest.get("broken"),
        )

    @api.get(
        "/v1/models",
        response_model=ModelList,
        tags=["models"],
        summary="Families, checkpoints and op parameters",
        responses=_problems(503),
        dependencies=[Depends(requires())],
    )
    async def list_models(self) -> ModelList:
        manifests = await self.gate.run(self.registry.list_manifests)
        families = [FamilyInfo(name=f, deployed=f in self.families, ops=sorted(ops)) for f, ops in sorted(op_table().items())]
        return ModelList(families=families, models=[self._model_info(m) for m in manifests])

    @api.get("/v1/models/{name}", response_model=ModelInfo, tags=["models"], responses=_problems(404), dependencies=[Depends(requires())])
    async def get_model(self, name: str) -> ModelInfo:
        if not MODEL_NAME.match(name):
            raise NotFound(f"model {name!r} is not registered")
        return self._model_info(await self.gate.run(self.registry.get_manifest, name))

    @api.put(
        ATTACHMENT_EDIT_PATH,
        response_model=dict[str, Any],
        tags=["models"],
        summary="Edit the metadata of a model attachment a family declares; admin scope",
        responses=_problems(404, 422),
        dependencies=[Depends(requires("admin"))],
    )
    async def edit_attachment(self, name: str, attachment: str, edit: str, body: dict[str, Any]) -> dict[str, Any]:
        """One route for every metadata edit families declare (e.g. ``PUT /v1/models/{name}/catalog/labels``,
        ``schemas.ops.MetadataEdit``); the published OpenAPI lists each as its own typed path (service/openapi.py)."""
        if not MODEL_NAME.match(name):
            raise NotFound(f"model {name!r} is not registered")
        declared = model_attachments().get(attachment)
        change = next((e for e in declared.edits if e.name == edit), None) if declared else None
        if change is None:
            raise NotFound(f"no model attachment has an edit {attachment}/{edit}; GET /openapi.json lists those there are")
        request = validate(change.body, body, "body")
        meta = await self.gate.run(self.registry.edit_attachment, name, attachment, lambda current: change.apply(current, request))
        return declared.info.model_validate(meta).model_dump(mode="json")

    # ---- assets ----------------------------------------------------------------------------
    def _asset_info(self, asset_id: str, key: str, head: dict[str, Any], created: bool | None = None) -> AssetInfo:
        meta = head.get("metadata") or {}
        return AssetInfo(
            asset_id=asset_id,
            size=int(head["size"]),
            content_type=head.get("content_type") or "application/octet-stream",
            kind=meta.get("kind", "image"),
            width=int(meta["width"]) if "width" in meta else None,
            height=int(meta["height"]) if "height" in meta else None,
            mode=meta.get("mode"),
            url=self.store.presign_get(key),
            url_expires_in_s=self.settings.presign_expires_s,
            created=created,
        )

    def _store_asset(self, data: bytes, content_type: str, kind: str, principal: Principal) -> AssetInfo:
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
        self.access.grant(principal, asset_id)
        head = self.store.head(key) or {"size": len(data), "content_type": content_type, "metadata": metadata}
        return self._asset_info(asset_id, key, head, created=created)

    @api.post(
        "/v1/assets",
        response_model=AssetInfo,
        status_code=201,
        tags=["assets"],
        summary="Upload an asset (multipart field 'file', or JSON with base64)",
        responses={200: {"model": AssetInfo, "description": "the same bytes were stored already"}, **_problems(400, 413, 415, 422, 503)},
        # components added by service/openapi.py. Without "required": true, which is what the handler means
        # (no body is a 415), because openapi-python-client 0.29 generates code that does not import for a
        # required body of two media types (openapi-generators/openapi-python-client#1451).
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/AssetUploadForm"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/AssetUploadJSON"}},
                }
            }
        },
    )
    async def upload_asset(self, request: Request, principal: Principal = Depends(requires("edit", "jobs"))) -> Response:
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
            if not is_media_type(declared):  # it becomes the stored object's Content-Type header
                raise Unprocessable(
                    "the file part's Content-Type is not a media type (type/subtype, printable ASCII, "
                    f"at most {MEDIA_TYPE_MAX_LENGTH} characters)"
                )
        elif content_type == "application/json":
            body = parse_json(await request.body())
            payload = validate(AssetUploadJSON, body if isinstance(body, dict) else {"_": body}, "body")
            try:
                data = base64.b64decode(payload.data_base64, validate=True)
            except (binascii.Error, ValueError):
                raise Unprocessable("data_base64 is not valid base64") from None
            kind, declared = payload.kind, payload.content_type
        else:
            raise UnsupportedMediaType(
                f"send multipart/form-data (field 'file') or application/json (data_base64), not {content_type or 'no content type'}"
            )
        info = await self.gate.run(self._store_asset, data, declared, kind, principal)
        return JSONResponse(info.model_dump(mode="json"), status_code=201 if info.created else 200)

    @api.get(
        "/v1/assets/{asset_id}",
        response_model=AssetInfo,
        tags=["assets"],
        summary="Asset or result metadata and a presigned GET URL (?redirect=true: 307 to it)",
        responses={307: {"description": "redirect to the presigned URL"}, **_problems(404)},
    )
    async def get_asset(self, asset_id: str, redirect: bool = False, principal: Principal = Depends(requires("edit", "jobs"))) -> Response:
        if not re.match(r"^[0-9a-f]{64}$", asset_id):
            raise NotFound(f"asset {asset_id!r} does not exist: asset ids are 64 lowercase hex characters")

        key, head = await self.gate.run(self.edits.find_readable, principal, asset_id)
        info = self._asset_info(asset_id, key, head)
        if redirect:
            return RedirectResponse(info.url, status_code=307)
        return JSONResponse(info.model_dump(mode="json"))

    @api.post(
        "/v1/assets/uploads",
        response_model=UploadSlot,
        status_code=201,
        tags=["assets"],
        summary="Get a presigned PUT URL for a large upload",
        responses=_problems(422),
    )
    async def create_upload(self, body: UploadSlotRequest, principal: Principal = Depends(requires("edit", "jobs"))) -> UploadSlot:
        upload_id = uuid.uuid4().hex
        slot = {"content_type": body.content_type, "kind": body.kind, "size": body.size, "owner": principal.key_id}
        await self.gate.run(self.store.put, self.store.key("uploads", upload_id + ".json"), json.dumps(slot).encode(), "application/json")
        url = self.store.presign_put(self.store.key("uploads", upload_id), body.content_type)
        return UploadSlot(
            upload_id=upload_id, url=url, headers={"Content-Type": body.content_type}, expires_in_s=self.settings.presign_expires_s
        )

    @api.post(
        "/v1/assets/uploads/{upload_id}/complete",
        response_model=AssetInfo,
        tags=["assets"],
        summary="Verify a presigned upload and turn it into a content-addressed asset",
        responses=_problems(404, 413, 422),
    )
    async def complete_upload(self, upload_id: str, principal: Principal = Depends(requires("edit", "jobs"))) -> Response:
        if not _UPLOAD_ID_RE.match(upload_id):
            raise NotFound(f"upload {upload_id!r} does not exist")

        def finish() -> AssetInfo:
            try:
                slot = json.loads(self.store.get(self.store.key("uploads", upload_id + ".json")))
            except NotFound:
                raise NotFound(f"upload {upload_id} does not exist or was completed already") from None
            if not principal.sees_everything and slot.get("owner") != principal.key_id:  # another key's slot: as if absent
                raise NotFound(f"upload {upload_id} does not exist or was completed already")
            head = self.store.head(self.store.key("uploads", upload_id))
            if head is None:
                raise NotFound(f"nothing was PUT to upload {upload_id} yet; PUT the bytes to its URL first")
            if head["size"] > self.settings.max_body_bytes:
                raise PayloadTooLarge(f"upload is {head['size']} bytes; the limit is {self.settings.max_body_bytes}")
            if slot.get("size") and head["size"] != slot["size"]:
                raise Unprocessable(f"upload is {head['size']} bytes but {slot['size']} were announced")
            data = self.store.get(self.store.key("uploads", upload_id))
            info = self._store_asset(data, slot["content_type"], slot["kind"], principal)
            self.store.delete(self.store.key("uploads", upload_id))
            self.store.delete(self.store.key("uploads", upload_id + ".json"))
            return info

        info = await self.gate.run(finish)
        return JSONResponse(info.model_dump(mode="json"), status_code=201 if info.created else 200)

    # ---- edits -----------------------------------------------------------------------------
    @api.post(
        "/v1/edits",
        response_model=EditResponse,
        tags=["edits"],
        summary="Run one edit synchronously",
        responses=_problems(400, 404, 413, 422, 503, 504),
    )
    async def create_edit(self, body: EditRequest, request: Request, principal: Principal = Depends(requires("edit"))) -> Response:
        request.state.op = body.op
        deadline = self._deadline(request.headers.get(DEADLINE_HEADER))
        result = await self.edits.run(
            body,
            lambda: self._seed_rng.randrange(2**32),
            want_image=body.output.inline,
            principal=principal,
            deadline=deadline,
            random_seed=True,
        )
        inline = None
        if body.output.inline and result.data is not None and len(result.data) <= self.settings.inline_max_bytes:
            inline = base64.b64encode(result.data).decode()
        response = EditResponse(
            result_id=result.result_id,
            model=body.model,
            op=body.op,
            cached=result.cached,
            seed=result.seed,
            width=result.width,
            height=result.height,
            content_type=result.media_type,
            url=self.store.presign_get(result.result_key) if body.output.presign else None,
            url_expires_in_s=self.settings.presign_expires_s if body.output.presign else None,
            image_base64=inline,
            extras=result.extras,
            random_init=bool(result.manifest.get("random_init")),
            timings=result.timings,
        )
        # Serialised here: returned as a model, FastAPI would dump it, validate the dump against
        # response_model again and serialise that, three passes over the extras for one response.
        return Response(response.model_dump_json(), media_type="application/json")

    def _deadline(self, header: str | None) -> float | None:
        """``X-Request-Timeout: <seconds>`` -> the time.time() after which the edit is not computed."""
        if header is None:
            return None
        try:
            timeout_s = float(header)
        except ValueError:
            timeout_s = float("nan")
        if not 0 <= timeout_s <= self.settings.max_deadline_s:  # also refuses nan and inf
            raise BadRequest(
                f"{DEADLINE_HEADER} must be a number of seconds from 0 to {self.settings.max_deadline_s:g}, not {header[:40]!r}"
            )
        if timeout_s == 0:
            raise DeadlineExceeded(f"{DEADLINE_HEADER} is 0: the deadline passed on arrival; it was not computed")
        return time.time() + timeout_s

    # ---- jobs ------------------------------------------------------------------------------
    def _read_job_status(self, job_id: str, principal: Principal) -> dict[str, Any]:
        if not re.match(JOB_ID_PATTERN, job_id):
            raise NotFound(f"job {job_id!r} does not exist: job ids are 32 lowercase hex characters")
        request_doc = self.jobs.read_request(job_id)
        if not principal.sees_everything and (request_doc.get("owner") or {}).get("id") != principal.key_id:
            raise NotFound(f"job {job_id} does not exist")  # another key's job: the same answer as a missing one
        status = self.jobs.read_status(job_id) or self.jobs.initial_status(request_doc)
        if not is_terminal(status) and self.jobs.cancel_requested(job_id):
            status["state"] = "cancelling"
        return status

    async def _poke_runner(self, method: str, job_id: str) -> None:
        """Tell the runner now; if it is down, its poll of job-queue/ picks the job up when it is back."""
        if self.job_runner is None:
            return
        try:
            await asyncio.wait_for(awaited(getattr(self.job_runner, method).remote(job_id)), timeout=5)
        except Exception as exc:  # the job is safe in S3 either way
            log.warning("job runner not reached", extra={"job_id": job_id, "call": method, "error": repr(exc)[:200]})

    @api.post(
        "/v1/jobs",
        response_model=JobStatus,
        status_code=202,
        tags=["jobs"],
        summary="Submit a batch of edits (inline list or JSON Lines manifest asset); poll GET /v1/jobs/{id}",
        responses={
            200: {"model": JobStatus, "description": "the same Idempotency-Key and body were submitted before"},
            **_problems(400, 404, 409, 413, 422, 503),
        },
    )
    async def submit_job(
        self,
        body: JobRequest,
        idempotency_key: str | None = Header(
            default=None,
            alias="Idempotency-Key",
            description="same key and body: the same job; same key, other body: 409 (scoped per API key)",
        ),
        principal: Principal = Depends(requires("jobs")),
    ) -> Response:
        if idempotency_key is not None and not re.fullmatch(r"[\x21-\x7e]{1,255}", idempotency_key):
            raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
        if body.webhook_url is not None and not self.settings.webhook_secret.get_secret_value():
            raise Unprocessable("webhooks are signed and this service has no COLLAGE_WEBHOOK_SECRET configured")
        limit = self.settings.jobs_max_items
        if body.items is not None and len(body.items) > limit:
            raise Unprocessable(f"a job holds at most {limit} edits (COLLAGE_JOBS_MAX_ITEMS); this one has {len(body.items)}")
        body_json = body.model_dump(mode="json", exclude_none=True)
        job_id = new_job_id(idempotency_key, principal.key_id)

        def create() -> tuple[dict[str, Any], bool]:  # (status, created)
            if body.webhook_url is not None:
                check_webhook_url(str(body.webhook_url), self.settings.webhook_allow_private)
            if body.manifest is not None:
                asset_id = body.manifest.asset_id
                key = self.edits.find_readable(principal, asset_id)[0]
                source, total = "manifest", len(parse_manifest(self.store.get(key), limit))
            elif body.fit is not None:
                image_id = body.fit.image
                self.edits.find_readable(principal, image_id)  # 404 now rather than a failed job later
                try:
                    taken = self.registry.get_manifest(body.fit.model_name()).get("family")
                except NotFound:
                    taken = None
                if taken not in (None, body.fit.family):
                    raise Conflict(
                        f"model {body.fit.model_name()!r} belongs to the {taken} family; a fit may only replace a "
                        f"model of the {body.fit.family} family: choose another name",
                        model=body.fit.model_name(),
                    )
                source, total = "fit", 1
            else:
                source, total = "items", len(body.items)
            request_doc = {
                "job_id": job_id,
                "source": source,
                "total": total,
                "created_at": utcnow(),
                "body_sha256": canonical_hash(body_json),
                **body_json,
            }
            if principal.key_id is not None:  # the runner runs the items as this key: its assets, its results
                request_doc["owner"] = principal.to_json()
            if self.jobs.create(job_id, request_doc):
                status = self.jobs.initial_status(request_doc)
                self.jobs.write_status(job_id, status)
                self.jobs.enqueue(job_id)
                return status, True
            existing = self.jobs.read_request(job_id)
            if existing.get("body_sha256") != request_doc["body_sha256"]:
                raise Conflict("this Idempotency-Key was used for a job with a different body; use a new key for a new job", job_id=job_id)
            if self.jobs.read_status(job_id) is None:  # the first submit died between its writes: finish them
                self.jobs.write_status(job_id, self.jobs.initial_status(existing))
                self.jobs.enqueue(job_id)
            return self._read_job_status(job_id, principal), False

        status, created = await self.gate.run(create)
        await self._poke_runner("start", job_id)
        return JSONResponse(
            JobStatus.model_validate(status).model_dump(mode="json"),
            status_code=202 if created else 200,
            headers={"Location": f"/v1/jobs/{job_id}"},
        )

    @api.get(
        "/v1/jobs/{job_id}",
        response_model=JobStatus,
        tags=["jobs"],
        summary="State, counts, first errors, webhook delivery",
        responses=_problems(404),
    )
    async def get_job(self, job_id: str, principal: Principal = Depends(requires("jobs"))) -> JobStatus:
        return JobStatus.model_validate(await self.gate.run(self._read_job_status, job_id, principal))

    @api.get(
        "/v1/jobs/{job_id}/results",
        response_model=JobResultsPage,
        tags=["jobs"],
        summary="Page through the items in order: finished ones with result or problem, the rest pending or cancelled",
        responses=_problems(404),
    )
    async def get_job_results(
        self,
        job_id: str,
        cursor: int = Query(default=0, ge=0, description="first item index"),
        limit: int = Query(default=100, ge=1, le=1000, description="items per page"),
        principal: Principal = Depends(requires("jobs")),
    ) -> JobResultsPage:
        def page() -> JobResultsPage:
            status = self._read_job_status(job_id, principal)
            total = status["counts"]["total"]
            records = self.jobs.item_records(job_id, cursor, limit) if cursor < total else {}
            unfinished = "cancelled" if status["state"] == "cancelled" else "pending"
            items = []
            for index in range(cursor, min(total, cursor + limit)):
                record = records.get(index) or {"index": index, "state": unfinished}
                item = JobItem.model_validate(record)
                if item.state == "succeeded" and item.result_id:
                    item.url = self.store.presign_get(self.store.result_key(item.result_id))
                items.append(item)
            next_cursor = cursor + limit if cursor + limit < total else None
            return JobResultsPage(job_id=job_id, state=status["state"], total=total, items=items, next_cursor=next_cursor)

        return await self.gate.run(page)

    @api.delete(
        "/v1/jobs/{job_id}",
        response_model=JobStatus,
        status_code=202,
        tags=["jobs"],
        summary="Cancel: items in flight finish, the rest are marked cancelled",
        responses=_problems(404, 409),
    )
    async def cancel_job(self, job_id: str, principal: Principal = Depends(requires("jobs"))) -> JobStatus:
        def request_cancel() -> None:
            status = self._read_job_status(job_id, principal)
            if is_terminal(status):
                raise Conflict(f"job {job_id} already finished ({status['state']}); nothing to cancel", state=status["state"])
            self.jobs.request_cancel(job_id)

        await self.gate.run(request_cancel)
        await self._poke_runner("cancel", job_id)
        return JobStatus.model_validate(await self.gate.run(self._read_job_status, job_id, principal))
