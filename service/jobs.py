"""Job state in S3, and the pieces of a job that are not Serve plumbing (manifest, seeds, webhooks).

Layout under the store prefix (every key server-minted; job ids are 32 hex characters)::

    jobs/<id>/request.json                 what was submitted (items inline, or the manifest asset id)
    jobs/<id>/status.json                  state, counts, first errors, webhook delivery, timestamps
    jobs/<id>/items/<index>.<state>.json   one record per finished item (state: succeeded | failed)
    jobs/<id>/cancel.json                  present once DELETE /v1/jobs/<id> was called
    jobs/<id>/lease.json                   which runner runs the job, until when (service/job_lease.py)
    job-queue/<id>                         present while the job is not finished (runner's work list)

An item record is written once (``If-None-Match: *``), after its result is stored, so "which items are finished" is one
listing, and a job resumed after a crash runs exactly the items without a record. Results are
content-addressed (``service/edits.py``), so an item that was computed but not yet recorded when
the process died is found in S3 on the re-run instead of being computed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import random
import re
import socket
import urllib.parse
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx

from schemas.jobs import TERMINAL_STATES
from service import webhooks
from service.errors import NotFound, ProblemError, Unprocessable
from service.json_body import parse_json
from service.logs import get_logger
from service.storage import AssetStore

log = get_logger("collage.jobs")

JOB_QUEUE = "job-queue"
_ITEM_KEY = re.compile(r"/items/(\d{7})\.(succeeded|failed)\.json$")
MAX_LISTED_ERRORS = 20


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat()


def new_job_id(idempotency_key: str | None, owner: str | None = None) -> str:
    """A random id, or one derived from the Idempotency-Key so that a retried submit finds its job.

    With auth, the key's id is part of the hash: two API keys using the same Idempotency-Key get
    two jobs, and neither can find (or collide with) the other's. ``owner`` None: auth disabled."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    scope = b"" if owner is None else owner.encode() + b"\x00"
    return hashlib.sha256(b"collage-job:" + scope + idempotency_key.encode()).hexdigest()[:32]


# IPv6 forms whose last 32 bits are an IPv4 address that a connection may end up at.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: a NAT64 gateway forwards to the embedded IPv4
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: a site's own translators, never a public destination
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291); some stacks still route it to the IPv4


def non_public_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a webhook may not go to ``address`` (None: a unicast global address, of itself and of any
    IPv4 address it embeds)."""
    if address.is_multicast:
        return "a multicast address"
    if address.version == 6:
        if address in _NAT64_LOCAL_USE:
            return "a local-use NAT64 address"
        if address.teredo is not None:
            return "a Teredo tunnel address"
        if address in _IPV4_COMPATIBLE and int(address) > 1:
            return "an IPv4-compatible address (deprecated)"
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64_WELL_KNOWN:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:  # mapped, 6to4 or NAT64: the embedded IPv4 decides
            reason = non_public_reason(embedded)
            return f"it embeds {embedded}: {reason}" if reason else None
    if not address.is_global:
        return "loopback, private, link-local or reserved"
    return None


def resolve_webhook_url(url: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address the webhook's host resolves to, each one checked; 422 naming the first refused.

    The service connects to one of these very addresses (:func:`deliver_webhook` pins it), so a name
    that resolves elsewhere a moment later (DNS rebinding) cannot steer the POST."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        raise Unprocessable(f"webhook host {host!r} does not resolve") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        reason = non_public_reason(address)
        if reason:
            raise Unprocessable(
                f"webhook host {host!r} resolves to {address} ({reason}), not a public address; webhooks go "
                "to public unicast hosts only (COLLAGE_WEBHOOK_ALLOW_PRIVATE allows others)"
            )
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_webhook_url(url: str, allow_private: bool) -> None:
    """Refuse (422) a webhook whose host resolves to an address that is not public unicast (loopback,
    private, link-local, cloud metadata, multicast, or an IPv6 form embedding one of those), so a
    job cannot make the service POST into its own network (SSRF). ``allow_private`` (setting
    ``webhook_allow_private``) turns the check off."""
    if not allow_private:
        resolve_webhook_url(url)


def _pinned(url: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``url`` sent to ``address``: the URL with the address as host, the Host header and TLS server
    name (SNI and certificate check) of the original host."""
    parts = urllib.parse.urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {"host": host_header}, extensions


def item_seed(job_id: str, index: int) -> int:
    """Seed of an item that names none: fixed per (job, item), so a resumed item redoes the same edit."""
    return int.from_bytes(hashlib.sha256(f"{job_id}:{index}".encode()).digest()[:4], "big")


def parse_manifest(data: bytes, max_items: int) -> list[dict[str, Any]]:
    """JSON Lines -> edit request objects; blank lines are skipped. A line that is no JSON object is a 422."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Unprocessable("the manifest is not UTF-8 text (JSON Lines: one edit request object per line)") from None
    items: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = parse_json(line.encode())
        except ProblemError as exc:  # bad syntax or nesting past the limit: the line's fault, so a 422 naming it
            raise Unprocessable(f"manifest line {number} is not JSON: {exc.detail}", line=number) from None
        if not isinstance(item, dict):
            raise Unprocessable(f"manifest line {number} is a JSON {type(item).__name__}, not an edit request object", line=number)
        items.append(item)
        if len(items) > max_items:
            raise Unprocessable(f"the manifest has more than {max_items} edits (COLLAGE_JOBS_MAX_ITEMS)")
    if not items:
        raise Unprocessable("the manifest holds no edit requests")
    return items


async def deliver_webhook(
    url: str,
    body: bytes,
    secret: str,
    *,
    job_id: str,
    attempts: int,
    backoff_s: float,
    backoff_max_s: float,
    timeout_s: float,
    allow_private: bool,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """POST ``body`` until a 2xx or ``attempts`` tries; returns the delivery record.

    Each attempt is signed anew (Standard Webhooks, ``service/webhooks.py``) with the time it is sent, under the one
    ``webhook-id`` of the job, so a receiver both rejects a replay and recognises a retry. Between attempts it waits
    :func:`service.webhooks.retry_delay` (full jitter, ``rng`` for tests)."""
    record: dict[str, Any] = {"url": url, "state": "failed", "attempts": 0, "last_status": None, "last_error": None, "delivered_at": None}
    target, headers, extensions = url, {}, {}
    if not allow_private:  # checked at submit, and again now: the name may resolve elsewhere by the time the job ends
        try:
            addresses = await asyncio.to_thread(resolve_webhook_url, url)
        except Unprocessable as exc:
            record["last_error"] = exc.detail
            log.warning("webhook refused", extra={"job_id": job_id, "url": url, "error": exc.detail})
            return record
        target, headers, extensions = _pinned(url, addresses[0])
    headers.update({"content-type": "application/json", "X-Collage-Job-Id": job_id})
    message_id = webhooks.webhook_id(job_id)
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(webhooks.retry_delay(attempt, backoff_s, backoff_max_s, rng))
            record["attempts"] = attempt + 1
            signed = {**headers, **webhooks.signed_headers(secret, message_id, body)}
            try:
                response = await client.post(target, content=body, headers=signed, extensions=extensions)
            except httpx.HTTPError as exc:
                record["last_status"], record["last_error"] = None, f"{type(exc).__name__}: {exc}"[:300]
                continue
            record["last_status"] = response.status_code
            if 200 <= response.status_code < 300:
                record.update(state="delivered", last_error=None, delivered_at=utcnow())
                return record
            record["last_error"] = f"HTTP {response.status_code}"
    log.warning("webhook not delivered", extra={"job_id": job_id, "url": url, "error": record["last_error"]})
    return record


def final_state(counts: dict[str, int]) -> str:
    if counts["cancelled"]:
        return "cancelled"
    if counts["failed"] == 0:
        return "succeeded"
    return "failed" if counts["succeeded"] == 0 else "completed_with_errors"


def is_terminal(status: dict[str, Any]) -> bool:
    return status.get("state") in TERMINAL_STATES


class JobStore:
    """Reads and writes the S3 objects of jobs (layout in the module docstring)."""

    def __init__(self, store: AssetStore) -> None:
        self.store = store

    def _key(self, job_id: str, *parts: str) -> str:
        return self.store.job_key(job_id, *parts)

    def item_key(self, job_id: str, index: int, state: str) -> str:
        return self._key(job_id, "items", f"{index:07d}.{state}.json")

    # ---- request and status ----------------------------------------------------------------
    def create(self, job_id: str, request_doc: dict[str, Any]) -> bool:
        """Store the request unless the job exists; True when this call created the job (race-safe)."""
        return self.store.put_if_absent(self._key(job_id, "request.json"), _dump(request_doc), "application/json")

    def read_request(self, job_id: str) -> dict[str, Any]:
        try:
            return json.loads(self.store.get(self._key(job_id, "request.json")))
        except NotFound:
            raise NotFound(f"job {job_id} does not exist") from None

    def read_status(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get(self._key(job_id, "status.json")))
        except NotFound:
            return None

    def write_status(self, job_id: str, status: dict[str, Any]) -> None:
        self.store.put(self._key(job_id, "status.json"), _dump(status), "application/json")

    @staticmethod
    def initial_status(request_doc: dict[str, Any]) -> dict[str, Any]:
        webhook = request_doc.get("webhook_url")
        return {
            "job_id": request_doc["job_id"],
            "state": "queued",
            "source": request_doc["source"],
            "counts": {"total": request_doc["total"], "succeeded": 0, "failed": 0, "cancelled": 0, "pending": request_doc["total"]},
            "created_at": request_doc["created_at"],
            "started_at": None,
            "updated_at": request_doc["created_at"],
            "finished_at": None,
            "resumed": 0,
            "errors": [],
            "webhook": {"url": webhook, "state": "pending", "attempts": 0} if webhook else None,
        }

    # ---- the queue of unfinished jobs --------------------------------------------------------
    def enqueue(self, job_id: str) -> None:
        self.store.put(self.store.key(JOB_QUEUE, job_id), b"", "application/octet-stream")

    def dequeue(self, job_id: str) -> None:
        self.store.delete(self.store.key(JOB_QUEUE, job_id))

    def queued_ids(self) -> list[str]:
        return [key.rsplit("/", 1)[-1] for key in self.store.list_keys(JOB_QUEUE + "/")]

    def is_queued(self, job_id: str) -> bool:
        return self.store.exists(self.store.key(JOB_QUEUE, job_id))

    # ---- cancellation ------------------------------------------------------------------------
    def request_cancel(self, job_id: str) -> None:
        self.store.put_if_absent(self._key(job_id, "cancel.json"), _dump({"requested_at": utcnow()}), "application/json")

    def cancel_requested(self, job_id: str) -> bool:
        return self.store.exists(self._key(job_id, "cancel.json"))

    # ---- items -------------------------------------------------------------------------------
    def load_items(self, request_doc: dict[str, Any], max_items: int) -> list[dict[str, Any]]:
        if request_doc["source"] == "items":
            return request_doc["items"]
        return parse_manifest(self.store.get(self.store.asset_key(request_doc["manifest"]["asset_id"])), max_items)

    def write_item(self, job_id: str, record: dict[str, Any]) -> bool:
        """Record a finished item, once: False when a record of it in that state exists already (it is
        kept as it is). Only a runner that lost its lease with the write in flight can meet one."""
        return self.store.put_new(self.item_key(job_id, record["index"], record["state"]), _dump(record), "application/json")

    def finished_items(self, job_id: str) -> dict[int, str]:
        """Index -> state of every recorded item, from one listing."""
        finished: dict[int, str] = {}
        for key in self.store.list_keys(self.store.relative(self._key(job_id, "items")) + "/"):
            match = _ITEM_KEY.search(key)
            if match:
                finished[int(match.group(1))] = match.group(2)
        return finished

    def item_records(self, job_id: str, cursor: int, limit: int) -> dict[int, dict[str, Any]]:
        """Records of the finished items with cursor <= index < cursor + limit."""
        prefix = self.store.relative(self._key(job_id, "items")) + "/"
        keys = self.store.list_page(prefix, start_after=f"{prefix}{cursor:07d}", max_keys=limit)
        records: dict[int, dict[str, Any]] = {}
        for key in keys:
            match = _ITEM_KEY.search(key)
            if match and int(match.group(1)) < cursor + limit:
                records[int(match.group(1))] = json.loads(self.store.get(self.store.prefix + key))
        return records


def _dump(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()
