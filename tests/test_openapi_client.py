"""The published OpenAPI contract is good enough for a real client generator.

``openapi-python-client`` (a test dependency) generates a Python client from the running service's
``/openapi.json``; through that client the test uploads an asset, makes typed edits (the generated
per-op params and inputs classes) and gets a 4xx back parsed as the ``Problem`` model. The checks
without the service look at the document itself: one typed variant per op, problem+json errors.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.typed_edits import variant_name
from service.errors import PROBLEM_MEDIA_TYPE
from service.families import op_table
from tests.conftest import TEST_TOKENS
from tests.helpers import random_png

MODEL = "style-demo-random"  # the shipped checkpoint, registered by the service at start
PACKAGE = "collage_generated_client"
GENERATOR = "openapi-python-client"


def _document() -> dict:
    from service.ingress import api

    return api.openapi()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


# ---- the document --------------------------------------------------------------------------------
def test_every_op_has_a_typed_edit_variant():
    schemas = _document()["components"]["schemas"]
    variants = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["EditRequest"]["anyOf"]}
    assert variants == {variant_name(family, op) for family, ops in op_table().items() for op in ops}
    for family, ops in op_table().items():
        for op, spec in ops.items():
            variant = schemas[variant_name(family, op)]
            assert variant["properties"]["op"]["const"] == op and variant["additionalProperties"] is False
            for part, model in (("params", spec.params_model), ("inputs", spec.inputs_model)):
                component = schemas[variant["properties"][part]["$ref"].rsplit("/", 1)[1]]
                assert set(component["properties"]) == set(model.model_json_schema()["properties"]), (family, op, part)
    # op names repeat across families with other parameters: each family's sample has its own classes
    assert schemas["StyleSampleParams"]["properties"] != schemas["CollageSampleParams"]["properties"]
    assert schemas["JobRequest"]["properties"]["items"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/EditRequest"}


def test_edit_routes_refer_to_the_typed_request():
    document = _document()
    body = document["paths"]["/v1/edits"]["post"]["requestBody"]["content"]
    assert body == {"application/json": {"schema": {"$ref": "#/components/schemas/EditRequest"}}}


def test_every_error_response_is_problem_json():
    document = _document()
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["properties"])
    assert problem["additionalProperties"] is True  # extensions (errors, checks, max_bytes, ...)
    for label, operation in _operations(document):
        errors = {status: response for status, response in operation["responses"].items() if status[0] in "45"}
        assert "500" in errors, label
        for status, response in errors.items():
            assert response["content"] == {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}, (label, status)
    schemas = document["components"]["schemas"]  # a failed job item's problem is one too
    assert schemas["ItemError"]["properties"]["problem"]["$ref"] == "#/components/schemas/Problem"
    assert {"$ref": "#/components/schemas/Problem"} in schemas["JobItem"]["properties"]["problem"]["anyOf"]


# ---- a generated client against the running service ----------------------------------------------
def _generator() -> str:
    here = Path(sys.executable).parent  # the test environment's bin/, where pip put the test extra's scripts
    found = shutil.which(GENERATOR, path=os.pathsep.join([str(here), os.environ.get("PATH", "")]))
    if found is None:
        pytest.fail(f"{GENERATOR} is not installed: pip install -e '.[test]'")
    return found


@pytest.fixture(scope="module")
def generated(client, tmp_path_factory):
    """The client package generated from the service's own /openapi.json, imported."""
    root = tmp_path_factory.mktemp("generated")
    (root / "openapi.json").write_text(json.dumps(client.get("/openapi.json").json()))
    (root / "config.yml").write_text("post_hooks: []\n")  # no ruff formatting: not needed to import it
    run = subprocess.run(
        [
            _generator(),
            "generate",
            "--path",
            str(root / "openapi.json"),
            "--output-path",
            str(root / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(root / "config.yml"),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(root))
    try:
        package = importlib.import_module(PACKAGE)
        yield package
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(package, name: str):
    return importlib.import_module(f"{package.__name__}.{name}")


def test_generated_client_uploads_and_makes_typed_edits(service, generated):
    models = _module(generated, "models")
    types = _module(generated, "types")
    upload_asset = _module(generated, "api.assets.upload_asset")
    create_edit = _module(generated, "api.edits.create_edit")
    submit_job = _module(generated, "api.jobs.submit_job")
    api = generated.AuthenticatedClient(base_url=service.url, token=TEST_TOKENS["admin"], timeout=120, raise_on_unexpected_status=True)

    # (1) an upload through the multipart variant of the body
    png = random_png(height=64, width=64, seed=24)
    form = models.AssetUploadForm(file=types.File(payload=io.BytesIO(png), file_name="face.png", mime_type="image/png"))
    uploaded = upload_asset.sync_detailed(client=api, body=form)
    assert uploaded.status_code in (200, 201), uploaded.content
    asset = uploaded.parsed
    assert isinstance(asset, models.AssetInfo) and (asset.width, asset.height, asset.kind) == (64, 64, "image")

    # (2) typed edits: style.sample with its own params and inputs classes, then style.project of the upload
    sample = models.StyleSampleEditRequest(
        model=MODEL,
        op="sample",
        params=models.StyleSampleParams(truncation=0.7),
        inputs=models.StyleSampleInputs(seed=42),
        output=models.OutputOptions(format_=models.OutputOptionsFormat.JPEG, quality=80),
    )
    edited = create_edit.sync_detailed(client=api, body=sample)
    assert edited.status_code == 200, edited.content
    result = edited.parsed
    assert isinstance(result, models.EditResponse)
    assert len(result.result_id) == 64 and (result.model, result.op, result.seed) == (MODEL, "sample", 42)
    assert (result.width, result.height, result.content_type) == (64, 64, "image/jpeg") and result.url
    assert isinstance(result.timings, models.Timings) and result.timings.total_ms > 0
    assert create_edit.sync(client=api, body=sample).result_id == result.result_id  # same request, same result

    project = models.StyleProjectEditRequest(
        model=MODEL, op="project", params=models.StyleProjectParams(steps=2), inputs=models.StyleProjectInputs(image=asset.asset_id)
    )
    fitted = create_edit.sync(client=api, body=project)
    assert isinstance(fitted, models.EditResponse) and fitted.op == "project" and "w" in fitted.extras.additional_properties

    # (3) problems come back parsed as the Problem model, extensions included
    missing = create_edit.sync_detailed(client=api, body=models.StyleSampleEditRequest(model="no-such-model", op="sample"))
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    assert isinstance(missing.parsed, models.Problem)
    assert (missing.parsed.status, missing.parsed.title) == (404, "Not Found") and "no-such-model" in missing.parsed.detail
    assert missing.parsed.type_.endswith("/not-found") and missing.parsed.instance
    invalid = create_edit.sync_detailed(
        client=api, body=models.StyleSampleEditRequest(model=MODEL, op="sample", params=models.StyleSampleParams(truncation=5.0))
    )  # the schema's maximum is 2
    assert invalid.status_code == 422 and isinstance(invalid.parsed, models.Problem)
    assert [error.additional_properties["loc"] for error in invalid.parsed.errors] == [["params", "truncation"]]

    # (4) a job's items are the same typed requests
    job = submit_job.sync_detailed(client=api, body=models.JobRequest(items=[sample]))
    assert job.status_code == 202, job.content
    assert isinstance(job.parsed, models.JobStatus) and job.parsed.counts.total == 1
