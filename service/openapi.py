"""The published OpenAPI document: FastAPI's, plus the typed edit contract and problem+json errors.

FastAPI describes the routes from the models the handlers are declared with. Two things it cannot
see are added here, once, when ``/openapi.json`` is first asked for (nothing of it runs per request):

- **Typed edits.** The handlers parse an edit as :class:`schemas.edits.EditRequest` (free-form
  ``params`` and ``inputs``, validated against the op once the model's family is known). The
  ``EditRequest`` component is replaced by ``anyOf`` one variant per (family, op) with typed params
  and inputs (:mod:`schemas.typed_edits`); ``POST /v1/edits`` and the ``items`` of ``POST /v1/jobs``
  refer to it. A failed job item's ``problem`` refers to ``Problem``.
- **Errors.** Every error response of every operation (each 4xx/5xx it documents, plus 500, which any
  route can answer) has the one content type the service sends, ``application/problem+json``, with
  the ``Problem`` schema.
- **Bodies the handlers read themselves** (``POST /v1/assets``: multipart or JSON) refer to the
  ``AssetUploadForm`` and ``AssetUploadJSON`` components added here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schemas.assets import ASSET_UPLOAD_FORM_SCHEMA, AssetUploadJSON
from schemas.problems import Problem
from schemas.typed_edits import typed_components
from service.errors import PROBLEM_MEDIA_TYPE
from service.families import op_table

REF = "#/components/schemas/"
PROBLEM_REF = {"$ref": REF + "Problem"}
INTERNAL_ERROR = "Unexpected error; the request id (`instance`) identifies it in the service logs"
_REPLACED = {"EditRequest"}  # FastAPI's free-form EditRequest gives way to the typed union


def _shape(schema: dict[str, Any]) -> tuple[Any, ...]:
    return schema.get("title"), schema.get("type"), sorted(schema.get("properties", {})), sorted(schema.get("required", []))


def _merge_components(schemas: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    """Add ``extra`` to the components. A name FastAPI has already (``OutputOptions``) is the same model and
    keeps FastAPI's rendering of it; two different models of one name would be a bug, caught here."""
    for name, schema in extra.items():
        if name in schemas and name not in _REPLACED:
            if _shape(schemas[name]) != _shape(schema):
                raise RuntimeError(f"OpenAPI component {name!r} names two different models: rename one of them")
            continue
        schemas[name] = schema


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


def _problem_responses(paths: dict[str, Any]) -> None:
    for path_item in paths.values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.setdefault("500", {"description": INTERNAL_ERROR})
            for status, response in responses.items():
                if _is_error(status):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": dict(PROBLEM_REF)}}
            operation["responses"] = dict(sorted(responses.items()))


def _typed_job_items(schemas: dict[str, Any]) -> None:
    items = schemas["JobRequest"]["properties"]["items"]
    for option in items["anyOf"]:
        if option.get("type") == "array":
            option["items"] = {"$ref": REF + "EditRequest"}


def _typed_item_problems(schemas: dict[str, Any]) -> None:
    """A failed job item's ``problem`` is the problem object its edit would have answered."""
    item_error = schemas["ItemError"]["properties"]
    item_error["problem"] = {**PROBLEM_REF, "description": item_error["problem"].get("description", "")}
    problem = schemas["JobItem"]["properties"]["problem"]
    problem["anyOf"] = [dict(PROBLEM_REF) if option.get("type") == "object" else option for option in problem["anyOf"]]


def customise(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's OpenAPI document -> the published one (in place; also returned)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    _merge_components(schemas, typed_components(op_table(), REF))
    # models that bodies the handlers parse themselves (and the problem+json responses) refer to
    schemas.setdefault("Problem", Problem.model_json_schema(ref_template=REF + "{model}"))
    schemas.setdefault("AssetUploadJSON", AssetUploadJSON.model_json_schema(ref_template=REF + "{model}"))
    schemas.setdefault("AssetUploadForm", ASSET_UPLOAD_FORM_SCHEMA)
    _typed_job_items(schemas)
    _typed_item_problems(schemas)
    _problem_responses(schema.get("paths", {}))
    return schema


def install(app: FastAPI) -> None:
    """Serve the customised document as ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)  # FastAPI caches it in app.openapi_schema: only the finished one may stay
            app.openapi_schema = None
            app.openapi_schema = customise(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
