"""The hot path's two S3 requests, HEAD and PUT, and its presigned GET URL, without botocore's per-request machinery.

An edit needs at most a HEAD (the cache lookup) and a PUT (the result). Through boto3 each costs
about 1 CPU-ms: parameter validation, the event hooks, request building and signing, response
parsing (loadtests/serving_cost.py, docs/performance.md, "Serving cost"). Here the same request is an AWS SigV4
signature (the algorithm of the AWS "Signature Version 4" documentation: canonical request,
string to sign, HMAC-derived key) over a keep-alive HTTP/1.1 connection per thread. The connection
is a socket of its own (:class:`KeptConnection`), not ``http.client``: for a HEAD or a PUT,
``http.client`` spent most of its 0.25–0.35 CPU-ms in building the request header by header and in
parsing the answer's headers with the ``email`` package; one ``sendall`` and a split of the header
block cost a fraction of that (docs/performance.md, "Serving cost").

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
import os
import socket
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
    def _connection(self) -> "KeptConnection":
        conn = getattr(self._local, "conn", None)
        if conn is None:
            context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None) if self.secure else None
            conn = KeptConnection(self.host, self.port, context, self.connect_timeout_s, self.read_timeout_s)
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

    def _scope(self, stamp: str) -> str:
        """The credential scope of a request made at ``stamp`` (YYYYMMDDTHHMMSSZ)."""
        return f"{stamp[:8]}/{self.region}/s3/aws4_request"

    def _signature(self, secret: str, stamp: str, canonical_request: str) -> str:
        """The hex SigV4 signature of a canonical request made at ``stamp``: the string to sign and its
        HMAC under the day's key, shared by signed headers and presigned URLs."""
        digest = hashlib.sha256(canonical_request.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{self._scope(stamp)}\n{digest}"
        return hmac.new(self._signing_key(secret, stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()

    def signed_headers(
        self, method: str, path: str, headers: dict[str, str], payload_sha256: str, now: dt.datetime | None = None
    ) -> dict[str, str]:
        """``headers`` plus host, x-amz-date, x-amz-content-sha256, the session token and Authorization."""
        creds = self.credentials()
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        all_headers = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
        all_headers.update({"host": self.host_header, "x-amz-date": stamp, "x-amz-content-sha256": payload_sha256})
        if getattr(creds, "token", None):
            all_headers["x-amz-security-token"] = creds.token
        names = sorted(all_headers)
        canonical = "\n".join([method, path, "", *(f"{n}:{all_headers[n]}" for n in names), "", ";".join(names), payload_sha256])
        scope, signature = self._scope(stamp), self._signature(creds.secret_key, stamp, canonical)
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return all_headers

    def path(self, key: str) -> str:
        return self.base_path + "/" + urllib.parse.quote(key, safe=_UNRESERVED + "/")

    def presigned_get(self, key: str, expires_s: int, query: dict[str, str] | None = None, now: dt.datetime | None = None) -> str | None:
        """A GET URL of ``key`` signed in its query string (SigV4 query authentication: only the host
        header signed, the payload unsigned), as botocore's ``generate_presigned_url`` builds it;
        ``query``: response overrides such as ``response-content-disposition``, signed with the rest.
        None when no credentials resolve (boto3 then says why). Every edit's answer carries one, and
        botocore's took 0.17 CPU-ms of event hooks, endpoint rules and request objects per URL (0.016 here)."""
        try:
            creds = self.credentials()
            access_key, secret_key = creds.access_key, creds.secret_key
        except AttributeError:
            return None
        stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        scope = self._scope(stamp)
        params = {
            **(query or {}),
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"{access_key}/{scope}",
            "X-Amz-Date": stamp,
            "X-Amz-Expires": str(int(expires_s)),
            "X-Amz-SignedHeaders": "host",
        }
        if getattr(creds, "token", None):
            params["X-Amz-Security-Token"] = creds.token
        # SigV4's canonical query: names and values percent-encoded (RFC 3986, "/" too), sorted by name
        canonical_query = "&".join(
            f"{urllib.parse.quote(name, safe=_UNRESERVED)}={urllib.parse.quote(value, safe=_UNRESERVED)}"
            for name, value in sorted(params.items())
        )
        path = self.path(key)
        canonical = f"GET\n{path}\n{canonical_query}\nhost:{self.host_header}\n\nhost\nUNSIGNED-PAYLOAD"
        signature = self._signature(secret_key, stamp, canonical)
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.host_header}{path}?{canonical_query}&X-Amz-Signature={signature}"

    # ---- requests -------------------------------------------------------------------------------
    def request(
        self, method: str, key: str, headers: dict[str, str], body: bytes = b"", payload_sha256: str = EMPTY_SHA256
    ) -> tuple[int, dict[str, str]] | None:
        """(status, response headers with lower-case names), or None when the request could not be completed here."""
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
                status, answer = conn.exchange(method, path, signed, body if method == "PUT" else b"")
            except (OSError, ValueError) as exc:
                self._drop()
                if not (isinstance(exc, StaleConnection) and attempt == 0):
                    return None
                continue
            if conn.closed:
                self._local.conn = None
            return status, answer
        return None

    @staticmethod
    def head_result(headers: dict[str, str]) -> dict[str, Any]:
        """A 200 HEAD's headers (lower-case names) as :meth:`AssetStore.head` returns them (boto3's fields, our names)."""
        modified = headers.get("last-modified")
        return {
            "size": int(headers.get("content-length") or 0),
            "content_type": headers.get("content-type"),
            "metadata": {name[len("x-amz-meta-") :]: value for name, value in headers.items() if name.startswith("x-amz-meta-")},
            "etag": (headers.get("etag") or "").strip('"'),
            "last_modified": email.utils.parsedate_to_datetime(modified) if modified else None,
            "checksum_sha256": headers.get("x-amz-checksum-sha256"),
        }


class StaleConnection(ConnectionError):
    """The server closed a kept-alive connection before answering: nothing of the request was answered."""


class KeptConnection:
    """One keep-alive HTTP/1.1 connection, opened on first use: a request is written with one
    ``sendall``; of the answer, the status and headers are parsed and the body read and dropped (HEAD
    and PUT answers carry none we need). Raises OSError (or ValueError for an answer it cannot read);
    :attr:`closed` once the server said ``Connection: close`` or the connection failed."""

    MAX_HEADER_BYTES = 64 * 1024  # an S3 answer's headers are a few hundred bytes
    MAX_BODY_BYTES = 1024 * 1024  # an error document at most; a bigger body is not an answer we expect

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, connect_timeout_s: float, read_timeout_s: float) -> None:
        self.host, self.port, self.context = host, port, context  # context: TLS, None for plain HTTP
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.sock: socket.socket | None = None
        self.closed = False
        self._buffer = b""  # bytes read past the last answer (none, with a well-behaved server)
        self._received = 0  # bytes of the current answer read so far

    def close(self) -> None:
        self.closed = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a request is one write; do not wait to coalesce
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_hostname=self.host)
        sock.settimeout(self.read_timeout_s)
        return sock

    def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        """Send one request, read its answer: (status, headers with lower-case names)."""
        lines = [f"{method} {path} HTTP/1.1"]
        for name, value in headers.items():
            if any(c in value for c in "\r\n\0") or any(c in name for c in "\r\n\0: "):
                raise ValueError(f"header {name!r} cannot be sent as it is")  # validated upstream; never split a request
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        reused = self.sock is not None
        if self.sock is None:
            self.sock = self._open()
        self._received = 0
        try:
            self.sock.sendall(request)
            return self._answer(method, reused)
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.close()
            if reused and not self._received:  # closed by the server while idle: it never saw this request
                raise StaleConnection("the server closed the kept-alive connection") from exc
            raise
        except BaseException:
            self.close()
            raise

    def _recv(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        self._received += len(chunk)
        return chunk

    def _answer(self, method: str, reused: bool) -> tuple[int, dict[str, str]]:
        data = self._buffer
        self._buffer = b""
        while (end := data.find(b"\r\n\r\n")) < 0:
            if len(data) > self.MAX_HEADER_BYTES:
                raise ValueError("the answer's headers are too large")
            chunk = self._recv()
            if not chunk:
                if reused and not data:
                    raise StaleConnection("the server closed the kept-alive connection")
                raise ConnectionError("the server closed the connection mid-answer")
            data += chunk
        head, rest = data[:end].decode("latin-1"), data[end + 4 :]
        status_line, *header_lines = head.split("\r\n")
        version, _, status_text = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not status_text[:3].isdigit():
            raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
        status = int(status_text[:3])
        answer: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"not a header line: {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            answer[name] = f"{answer[name]}, {value}" if name in answer else value
        keep_alive = "close" not in answer.get("connection", "").lower() and version == "HTTP/1.1"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            pass  # no body
        elif "chunked" in answer.get("transfer-encoding", "").lower():
            rest = self._skip_chunked(rest)
        elif "content-length" in answer:
            rest = self._skip(rest, int(answer["content-length"]))
        else:  # a body that ends when the connection does
            while self._recv():
                pass
            keep_alive, rest = False, b""
        self._buffer = rest
        if not keep_alive:
            self.close()
        return status, answer

    def _skip(self, data: bytes, length: int) -> bytes:
        """Read past ``length`` body bytes, ``data`` holding the first of them; -> the bytes after."""
        if length > self.MAX_BODY_BYTES:
            raise ValueError(f"an answer body of {length} bytes")
        while len(data) < length:
            chunk = self._recv()
            if not chunk:
                raise ConnectionError("the server closed the connection mid-body")
            data += chunk
        return data[length:]

    def _skip_chunked(self, data: bytes) -> bytes:
        """Read past a chunked body (RFC 9112 §7.1), trailers included; -> the bytes after."""
        total = 0
        while True:
            while (line_end := data.find(b"\r\n")) < 0:
                chunk = self._recv()
                if not chunk:
                    raise ConnectionError("the server closed the connection mid-body")
                data += chunk
            size = int(data[:line_end].split(b";")[0].strip() or b"x", 16)
            total += size
            if total > self.MAX_BODY_BYTES:
                raise ValueError("an answer body over 1 MiB")
            data = data[line_end + 2 :]
            if size == 0:
                while (end := data.find(b"\r\n")) != 0:  # trailer lines, then the empty line
                    if end > 0:
                        data = data[end + 2 :]
                        continue
                    chunk = self._recv()
                    if not chunk:
                        raise ConnectionError("the server closed the connection mid-body")
                    data += chunk
                return data[2:]
            data = self._skip(data, size + 2)
