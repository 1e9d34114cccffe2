"""The one JSON parser of request bodies: every JSON entry point of the API, one nesting limit.

FastAPI parses a route's JSON body itself and turns any failure other than a syntax error into
a bare 400 — including the ingress's own 413 for a chunked body over the size limit, raised
while the body is read. :class:`JSONBodyRoute` therefore reads and parses the body first, here,
and hands FastAPI the parsed value; routes that read their body by hand (``POST /v1/assets`` with
``application/json``) call :func:`parse_json` too.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from fastapi import Request
from fastapi.routing import APIRoute

from service.errors import BadRequest

# Deep enough for every request the API defines (an edit in a job item nests about 6 levels:
# body, items, item, inputs, keypoints, point); far below where Python's parser would recurse
# out of stack (~1,000 levels, a RecursionError rather than a decode error).
MAX_JSON_DEPTH = 64


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Request bytes -> the JSON value; 400 problem for bad syntax, bad encoding or nesting past ``max_depth``."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequest(f"request body is not valid JSON: {exc}"[:300]) from None
    if _depth_exceeds(value, max_depth):
        raise _too_deep(max_depth)
    return value


def _refuse_constant(name: str) -> Any:
    """Python's json reads NaN, Infinity and -Infinity; JSON (RFC 8259) has no such numbers."""
    raise ValueError(f"{name} is not a JSON number")


def _too_deep(max_depth: int) -> BadRequest:
    return BadRequest(f"request body nests JSON deeper than {max_depth} levels", max_depth=max_depth)


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether arrays/objects nest deeper than ``max_depth`` (iterative: no recursion on client data)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


class JSONBodyRoute(APIRoute):
    """A FastAPI route whose JSON body is parsed by :func:`parse_json` before FastAPI sees it."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def parse_first(request: Request):
            if request.method in ("POST", "PUT", "PATCH") and _is_json(request):
                raw = await request.body()  # a body over the size limit raises the 413 here, not inside FastAPI
                if raw:
                    request._json = parse_json(raw)  # Starlette's Request.json() returns it as parsed
            return await handler(request)

        return parse_first
