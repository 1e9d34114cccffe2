"""Who is calling, what they may do, and which stored objects are theirs.

API keys
    Clients send ``Authorization: Bearer <token>``. Settings hold only each token's SHA-256
    (``api_keys``: id, sha256, scopes, optional rate), so a leaked config or Secret does not leak a
    token; ``collage keys new`` mints a token and prints the entry. Scopes: ``edit`` (assets and
    synchronous edits), ``jobs`` (assets and batch jobs), ``admin`` (model writes: catalog labels
    and the ``catalog`` op; reads every key's objects; /metrics when it is not public). A missing or
    unknown token is a 401, a missing scope a 403, both problem+json with ``WWW-Authenticate``.
    ``auth = disabled`` turns all of this off (every caller is the one local developer); only
    ``collage serve`` / ``collage demo`` set it, for their loopback run.

Ownership (:class:`AccessIndex`)
    Asset and result ids are content hashes, so the same bytes or the same edit have one id
    whoever sent them. Who may read an id is therefore recorded per key, as an empty marker object
    ``owners/<key id>/<id>`` written when the key uploads the asset or gets the result (computed or
    from the cache). Any other key (without admin) gets the same 404 as for an id that does not
    exist. Jobs record their owner in ``request.json``; Idempotency-Keys are scoped per key.

Rate limits (:class:`RateLimiter`)
    A key's ``rate_limit_per_s`` (or the key's own) and ``rate_limit_burst`` are its budget across
    the whole service. Each of the ``ingress_replicas`` ingress replicas holds a token bucket per key
    with its share of it: ``rate / ingress_replicas`` refilled continuously, ``burst /
    ingress_replicas`` deep (at least one token). An empty bucket is a 429 with the Retry-After
    that refills one token of this replica's share.

    Why a share, not one shared budget (a Ray actor holding the buckets, or Redis): Serve's proxy
    (HAProxy, or Ray's own proxy) spreads requests over the ingress replicas per request, so a key's
    traffic reaches each replica about evenly and N shares add up to the limit. A shared store puts
    a round trip (or a leasing protocol, whose unspent leases hold back tokens) on every request and
    a new process to keep alive, and when it is down the replicas must fall back to a share anyway.
    The share can only err on the strict side: the sum over replicas is never above the limit (a
    replica that is down, or traffic skewed to one replica, admits less than the limit, never more).
    ``ingress_replicas`` is the one setting from which both the Ingress's ``num_replicas`` and the
    share come (service/app.py ``ingress_options``; the chart sets it for both).
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations (Request), and
# Serve pickles the nested ones by value, keeping only the globals their code names, not their strings.
import dataclasses
import hashlib
import math
import secrets
import threading
import time
from typing import Any, Callable

from fastapi import Request, Security
from fastapi.security import HTTPBearer

from service.config import API_SCOPES, ApiKeyEntry, Settings, get_settings
from service.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from service.storage import AssetStore

TOKEN_PREFIX = "clg_"
OWNERS = "owners"
PUBLIC = "_public"  # owner of the example inputs shipped with checkpoints: readable by every key (key ids start alphanumeric)

# Declares the scheme in the OpenAPI document (Swagger's "Authorize" button, schemathesis); the
# header itself is parsed by KeyRing, so that a malformed one gets a message saying what is wrong.
bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="ApiKey", description="an API key: `collage keys new --scopes edit,jobs` prints one"
)


def new_token() -> str:
    """A fresh bearer token: 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_headers(settings: Settings | None = None) -> dict[str, str]:
    """Headers the project's own clients (CLI, demo, load tests) send: the ``client_token`` setting, if any."""
    token = (settings or get_settings()).client_token.get_secret_value()
    return {"Authorization": f"Bearer {token}"} if token else {}


def key_entry(key_id: str, token: str, scopes: list[str], rate_limit_per_s: float | None = None) -> ApiKeyEntry:
    """The ``api_keys`` entry of ``token`` (what goes into settings; the token itself never does)."""
    return ApiKeyEntry(id=key_id, sha256=token_sha256(token), scopes=scopes, rate_limit_per_s=rate_limit_per_s)


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller of one request. ``key_id`` None: auth is disabled (the local developer)."""

    key_id: str | None
    scopes: frozenset[str]
    rate_limit_per_s: float = 0.0

    @property
    def sees_everything(self) -> bool:
        """Reads any key's assets, results and jobs: admins, and everyone while auth is disabled."""
        return self.key_id is None or "admin" in self.scopes

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str, action: str) -> None:
        if not self.has(scope):
            raise Forbidden(f"{action} needs the {scope!r} scope; key {self.key_id!r} has {sorted(self.scopes)}", required_scope=scope)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.key_id, "scopes": sorted(self.scopes)}

    @classmethod
    def from_json(cls, document: dict[str, Any] | None) -> "Principal":
        """The owner a job recorded; a job without one was submitted while auth was disabled."""
        if not document or document.get("id") is None:
            return LOCAL_DEVELOPER
        return cls(document["id"], frozenset(document.get("scopes") or ()))


LOCAL_DEVELOPER = Principal(None, frozenset(API_SCOPES))


class KeyRing:
    """The configured keys, looked up by the SHA-256 of the presented token."""

    def __init__(self, settings: Settings) -> None:
        self.required = settings.auth == "required"
        self.default_rate = settings.rate_limit_per_s
        self._by_hash = {entry.sha256: entry for entry in settings.api_keys}

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.required:
            return dataclasses.replace(LOCAL_DEVELOPER, rate_limit_per_s=self.default_rate)
        if not authorization:
            raise Unauthorized("this route needs an API key: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        entry = self._by_hash.get(token_sha256(token))
        if entry is None:
            raise Unauthorized(
                "the bearer token is not a valid API key", headers={"WWW-Authenticate": 'Bearer realm="collage", error="invalid_token"'}
            )
        rate = self.default_rate if entry.rate_limit_per_s is None else entry.rate_limit_per_s
        return Principal(entry.id, frozenset(entry.scopes), rate)


class RateLimiter:
    """Token buckets per key id, each this replica's share (``1 / replicas``) of the key's rate and
    burst (see the module docstring); thread-safe, in process memory."""

    def __init__(self, burst: int, clock: Callable[[], float] = time.monotonic, replicas: int = 1) -> None:
        self.burst = burst
        self.replicas = max(1, replicas)
        self.depth = max(1.0, burst / self.replicas)  # this replica's share of the burst; one token at least, or none would pass
        self.clock = clock
        self._buckets: dict[str | None, tuple[float, float]] = {}  # key id -> (tokens, time of that count)
        self._lock = threading.Lock()

    def take(self, key_id: str | None, rate_per_s: float) -> float:
        """Spend one token of ``key_id``'s bucket: 0.0 when it had one, else seconds until it will.
        ``rate_per_s`` is the key's rate across all replicas; this bucket refills at its share."""
        if rate_per_s <= 0:
            return 0.0
        share_per_s = rate_per_s / self.replicas
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key_id, (self.depth, now))
            tokens = min(self.depth, tokens + (now - then) * share_per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / share_per_s

    def check(self, principal: Principal) -> None:
        wait_s = self.take(principal.key_id, principal.rate_limit_per_s)
        if wait_s > 0:
            raise TooManyRequests(
                f"rate limit of {principal.rate_limit_per_s:g} requests/s for this key reached; retry after {wait_s:.2f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )


class _ProcessAuth:
    """The key ring and rate limiter of this process, rebuilt when the settings object changes."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self.keys: KeyRing | None = None
        self.limiter: RateLimiter | None = None
        self._lock = threading.Lock()

    def current(self) -> tuple[Settings, KeyRing, RateLimiter]:
        settings = get_settings()
        with self._lock:
            if settings is not self._settings:
                self._settings, self.keys = settings, KeyRing(settings)
                self.limiter = RateLimiter(settings.rate_limit_burst, replicas=settings.ingress_replicas)
            return settings, self.keys, self.limiter


_PROCESS_AUTH = _ProcessAuth()


def requires(*any_of: str) -> Callable[..., Any]:
    """A FastAPI dependency: the caller's Principal, after its token, one of ``any_of`` scopes (none
    given: any valid key) and its rate limit are checked. The route's handler receives the Principal."""

    async def authorize(request: Request, _declared: Any = Security(bearer_scheme)) -> Principal:
        _, keys, limiter = _PROCESS_AUTH.current()
        principal = keys.authenticate(request.headers.get("authorization"))
        if any_of and not any(principal.has(scope) for scope in any_of):
            raise Forbidden(
                f"{request.method} {request.url.path} needs one of the scopes {list(any_of)}; key "
                f"{principal.key_id!r} has {sorted(principal.scopes)}",
                required_scope=list(any_of),
            )
        limiter.check(principal)
        request.state.principal = principal
        return principal

    return authorize


async def metrics_access(request: Request) -> None:
    """``/metrics``: open while ``metrics_public`` (so the OpenAPI document declares no security for it),
    else an admin key."""
    settings, _, _ = _PROCESS_AUTH.current()
    if not settings.metrics_public:
        await requires("admin")(request)


class AccessIndex:
    """Which key may read which asset or result id.

    A result records the key that computed it in its own metadata (``owner``), written in the same
    PUT as the image, so computing an edit costs no extra write. Every other grant is a marker
    object ``owners/<key id>/<id>``: an upload, a cached result another key computed first, an asset
    a family stored beside a result.
    """

    OWNER_METADATA = "owner"

    def __init__(self, store: AssetStore) -> None:
        self.store = store

    def _marker(self, key_id: str, object_id: str) -> str:
        return self.store.key(OWNERS, key_id, self.store._check_hex_id("asset", object_id))

    def grant(self, principal: Principal, object_id: str) -> None:
        if principal.key_id is not None:
            self.store.put(self._marker(principal.key_id, object_id), b"", "application/octet-stream")

    def grant_public(self, object_id: str) -> None:
        self.store.put(self._marker(PUBLIC, object_id), b"", "application/octet-stream")

    @classmethod
    def owns(cls, principal: Principal, head: dict[str, Any] | None) -> bool:
        """Whether the object of this HEAD (or None) was written by ``principal`` (its ``owner`` metadata)."""
        return (
            head is not None and principal.key_id is not None and (head.get("metadata") or {}).get(cls.OWNER_METADATA) == principal.key_id
        )

    def can_read(self, principal: Principal, object_id: str, head: dict[str, Any]) -> bool:
        """``head``: the object's HEAD (callers find the object first; its metadata names a result's owner)."""
        return (
            principal.sees_everything
            or self.owns(principal, head)
            or self.store.exists(self._marker(principal.key_id, object_id))
            or self.store.exists(self._marker(PUBLIC, object_id))
        )

    def check(self, principal: Principal, object_id: str, missing: str, head: dict[str, Any]) -> None:
        """Raise the NotFound an unknown id gets (``missing``) unless ``principal`` may read ``object_id``."""
        if not self.can_read(principal, object_id, head):
            raise NotFound(missing)
