"""Schemathesis against the service's own OpenAPI schema: generated requests to every operation, valid
ones and ones the schema forbids, a bounded number each. No response may be a 5xx, and every response
must match the schema: a documented status code, content type, headers and body. Routes behind an API
key must refuse the same request without one (schemathesis' ``ignored_auth`` check)."""

from __future__ import annotations

import collections
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.ingress import api
from tests.conftest import auth_header

# per operation: about 400 requests in all. COLLAGE_FUZZ_SCALE=N sends N times as many (a longer run for
# the figures of docs/security.md; `-s` prints the requests sent and the statuses seen)
SCALE = int(os.environ.get("COLLAGE_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: 12 * SCALE, GenerationMode.NEGATIVE: 8 * SCALE}
STATUSES: collections.Counter[int] = collections.Counter()
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]

# Operations are listed from the app's schema at collection time; the requests are generated from the
# schema the running service serves (the session fixture starts it later).
LABELS = sorted(result.ok().label for result in schemathesis.openapi.from_dict(api.openapi()).get_all_operations())


@pytest.fixture(scope="module")
def served_operations(client):
    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
    assert sorted(operations) == LABELS
    yield operations
    print(f"\nfuzz: {sum(STATUSES.values())} requests, statuses {dict(sorted(STATUSES.items()))}")


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=str)
@pytest.mark.parametrize("label", LABELS)
def test_every_operation_answers_within_its_schema_and_never_5xx(service, served_operations, label, mode):
    operation = served_operations[label]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES[mode], deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def answers_within_schema(case):
        response = case.call_and_validate(base_url=service.url, headers=auth_header("admin"), checks=CHECKS, timeout=60)
        STATUSES[response.status_code] += 1

    try:
        answers_within_schema()
    except Unsatisfiable:
        if mode == GenerationMode.NEGATIVE:
            pytest.skip(f"{label} takes no parameters or body that a request could get wrong")
        raise
