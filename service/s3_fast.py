"""The hot path's two S3 requests, HEAD and PUT, without botocore's per-request machinery.

An edit needs at most a HEAD (the cache lookup) and a PUT (the result). Through boto3 each costs
about 1 CPU-ms: parameter validation, the event hooks, request building and signing, response
parsing (loadtests/serving_cost.py, docs/performance.md, "Serving cost"). Here the same request is an AWS SigV4
signature (the algorithm of the AWS "Signature Version 4" documentation: canonical request,
string to sign, HMAC-derived key) over a keep-alive ``http.client`` connection per thread.

Only the outcomes the caller expects are answered here: HEAD 200/404, PUT 200 and, for a
conditional PUT, 412. Anything else (an error status, a redirect, a dropped connection, a timeout)
returns None and :class:`~service.storage.AssetStore` repeats the request through boto3, whose
retries, error translation and checksum fallback then apply unchanged. Used for endpoints given by
URL; ``s3_fast_path=false`` turns it off.

Addressing: the signer is given the URL under which the bucket's objects live, as the boto3 client
of the same store builds it (``http://host/bucket`` path-style, ``http://bucket.host`` virtual-hosted;
:meth:`~service.storage.AssetStore` reads it off a presigned URL of that client), so the fast path
follows whatever style ``Settings.resolved_addressing_style`` chose and never decides one itself.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import os
import ssl
import threading
import urllib.parse
from typing import Any, Callable

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNRESERVED = "-_.~"  # with letters and digits: what SigV4 leaves unescaped in a path


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SignedS3:
    """SigV4-signed requests to one bucket of one endpoint; thread-safe (a connection per thread)."""

    def __init__(
        self, objects_url: str, region: str, credentials: Callable[[], Any], connect_timeout_s: float, read_timeout_s: float
    ) -> None:
        """``objects_url``: the URL an object key is appended to (after a ``/``), bucket included in its host
        (virtual-hosted style) or in its path (path style)."""
        parts = urllib.parse.urlsplit(objects_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"not a bucket URL for signed requests: {objects_url!r}")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.host_header = parts.netloc
        self.base_path = parts.path.rstrip("/")  # already escaped, as the SDK sent it
        self.region = region
        self.credentials = credentials  # -> botocore frozen credentials (access_key, secret_key, token)
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self._local = threading.local()
        self._keys: dict[tuple[str, str], bytes] = {}  # (secret, date) -> signing key

    # ---- connections ----------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.secure:
                context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout_s, context=context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout_s)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- signing --------------------------------------------------------------------------------
    def _signing_key(self, secret: str, date: str) -> bytes:
        key = self._keys.get((secret, date))
        if key is None:
            key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret).encode(), date), self.region), "s3"), "aws4_request")
            self._keys = {(secret, date): key}  # one day's key is all that is ever needed
        return key

    def signed_headers(
        self, method: str, path: str, headers: dict[str, str], payload_sha256: str, now: dt.datetime | None = None
    ) -> dict[str, str]:
        """``headers`` plus host, x-amz-date, x-amz-content-sha256, the session token and Authorization."""
        creds = self.credentials()
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        date = stamp[:8]
        all_headers = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        all_headers.update({"host": self.host_header, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
        if getattr(creds, "token", None):
            all_headers["x-amz-security-token"] = creds.token
        names = sorted(all_headers)
        canonical = "\n".join([method, path, "", *(f"{n}:{all_headers[n]}" for n in names), "", ";".join(names), payload_sha256])
        scope = f"{date}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(creds.secret_key, date), to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return all_headers

    def path(self, key: str) -> str:
        return self.base_path + "/" + urllib.parse.quote(key, safe=_UNRESERVED + "/")

    # ---- requests -------------------------------------------------------------------------------
    def request(
        self, method: str, key: str, headers: dict[str, str], body: bytes = b"", payload_sha256: str = EMPTY_SHA256
    ) -> tuple[int, http.client.HTTPMessage] | None:
        """(status, response headers), or None when the request could not be completed here."""
        path = self.path(key)
        try:
            signed = self.signed_headers(method, path, headers, payload_sha256)
        except AttributeError:  # no credentials resolved: boto3 says why
            return None
        if method == "PUT":
            signed["content-length"] = str(len(body))
        for attempt in range(2):  # a kept-alive connection the server closed meanwhile fails once, then reconnects
            conn = self._connection()
            try:
                conn.request(method, path, body=body if method == "PUT" else None, headers=signed)
                if conn.sock is not None:
                    conn.sock.settimeout(self.read_timeout_s)
                response = conn.getresponse()
                response.read()  # HEAD and PUT answers carry no body we need; reading frees the connection
                return response.status, response.headers
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if not (stale and attempt == 0):
                    return None
        return None

    @staticmethod
    def head_result(headers: http.client.HTTPMessage) -> dict[str, Any]:
        """A 200 HEAD's headers as :meth:`AssetStore.head` returns them (boto3's fields, our names)."""
        modified = headers.get("Last-Modified")
        return {
            "size": int(headers.get("Content-Length") or 0),
            "content_type": headers.get("Content-Type"),
            "metadata": {
                name[len("x-amz-meta-") :].lower(): value for name, value in headers.items() if name.lower().startswith("x-amz-meta-")
            },
            "etag": (headers.get("ETag") or "").strip('"'),
            "last_modified": email.utils.parsedate_to_datetime(modified) if modified else None,
            "checksum_sha256": headers.get("x-amz-checksum-sha256"),
        }
