"""The hostile-request corpus: one request of every class of client input that once reached a 5xx (or could),
each answered with a 4xx problem+json, and none of them stores anything. Complements the image corpus
(tests/test_hostile_images.py), schemathesis (tests/test_fuzz.py) and the webhook addresses, which need the check
on and a network namespace (tests/test_webhook_ssrf_api.py); docs/security.md §5 lists the classes."""

from __future__ import annotations

import base64

import pytest

from tests.test_api import assert_problem
from tests.test_jobs_api import MODEL as COLLAGE_MODEL

DEEP = b'{"a": ' * 1_100 + b"1" + b"}" * 1_100
JSON = {"content-type": "application/json"}


def _edit(inputs: str) -> bytes:
    return ('{"model": "%s", "op": "sample", "inputs": %s}' % (COLLAGE_MODEL, inputs)).encode()


def _asset(content_type: str) -> dict:
    return {"data_base64": base64.b64encode(b"hostile").decode(), "kind": "data", "content_type": content_type}


# name -> (method, path, keyword arguments of httpx's request, status, text the detail contains)
CORPUS = {
    "assets-json-nested-1100": ("POST", "/v1/assets", {"content": DEEP, "headers": JSON}, 400, "deeper than"),
    "edits-json-nested-1100": ("POST", "/v1/edits", {"content": DEEP, "headers": JSON}, 400, "deeper than"),
    "jobs-json-nested-1100": ("POST", "/v1/jobs", {"content": DEEP, "headers": JSON}, 400, "deeper than"),
    "content-type-crlf": ("POST", "/v1/assets", {"json": _asset("image/png\r\nX-Amz-Meta-Owner: x")}, 422, "content_type"),
    "content-type-nul": ("POST", "/v1/assets", {"json": _asset("image/png\x00")}, 422, "content_type"),
    "content-type-100kb": ("POST", "/v1/assets", {"json": _asset("image/" + "x" * 100_000)}, 422, "content_type"),
    "upload-slot-content-type-crlf": ("POST", "/v1/assets/uploads", {"json": {"content_type": "a/b\r\nc: d"}}, 422, "content_type"),
    "z-nan": ("POST", "/v1/edits", {"content": _edit('{"z": [NaN], "class_id": 0}'), "headers": JSON}, 400, "NaN"),
    "z-infinity": ("POST", "/v1/edits", {"content": _edit('{"z": [-Infinity], "class_id": 0}'), "headers": JSON}, 400, "Infinity"),
    "z-1e308": ("POST", "/v1/edits", {"content": _edit('{"z": [1e308], "class_id": 0}'), "headers": JSON}, 422, "z"),
    "class-weights-1e309": (
        "POST",
        "/v1/edits",
        {"content": _edit('{"seed": 1, "class_weights": {"0": 1e309}}'), "headers": JSON},
        422,
        "class_weights",
    ),
    "seed-as-string": ("POST", "/v1/edits", {"content": _edit('{"seed": "7", "class_id": 0}'), "headers": JSON}, 422, "seed"),
    "seed-as-boolean": ("POST", "/v1/edits", {"content": _edit('{"seed": true, "class_id": 0}'), "headers": JSON}, 422, "seed"),
    "class-as-digit-string": ("POST", "/v1/edits", {"content": _edit('{"seed": 7, "class_id": "1"}'), "headers": JSON}, 422, "class"),
}


def _stored_keys() -> set[str]:
    from service.config import get_settings
    from service.storage import AssetStore

    store = AssetStore(get_settings())
    return {key for prefix in ("assets/", "results/", "jobs/", "job-queue/", "uploads/") for key in store.list_keys(prefix)}


@pytest.mark.parametrize("name", list(CORPUS))
def test_every_hostile_request_is_a_4xx_problem_and_stores_nothing(client, name):
    method, path, kwargs, status, detail = CORPUS[name]
    before = _stored_keys()
    response = client.request(method, path, **kwargs)
    assert_problem(response, status, detail)
    assert _stored_keys() == before, "a refused request stores nothing"
