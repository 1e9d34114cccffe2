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
- **Model attachments** (``schemas.ops.ModelAttachment``, e.g. a style model's part catalog). One
  handler serves every metadata edit families declare, at ``ATTACHMENT_EDIT_PATH``; the document
  lists each declared edit as its own path (``PUT /v1/models/{name}/catalog/labels``) with its typed
  body and response, and ``ModelInfo`` gets one typed field per attachment.
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
from service.families import model_attachments, op_table

REF = "#/components/schemas/"
PROBLEM_REF = {"$ref": REF + "Problem"}
INTERNAL_ERROR = "Unexpected error; the request id (`instance`) identifies it in the service logs"
ATTACHMENT_EDIT_PATH = "/v1/models/{name}/{attachment}/{edit}"  # the one route of every attachment edit
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


def _add_component(schemas: dict[str, Any], model: Any) -> dict[str, str]:
    """Put ``model``'s JSON schema (and those it refers to) among the components; its $ref."""
    schema = model.model_json_schema(ref_template=REF + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": REF + model.__name__}


def _typed_attachments(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The generic attachment-edit route as one typed path per declared edit; a typed ModelInfo field per attachment."""
    paths = schema.get("paths", {})
    generic = paths.pop(ATTACHMENT_EDIT_PATH, {}).get("put")
    for attachment in model_attachments().values():
        info_ref = _add_component(schemas, attachment.info)
        schemas["ModelInfo"]["properties"][attachment.name] = {
            "anyOf": [info_ref, {"type": "null"}],
            "default": None,
            "description": attachment.description,
        }
        for edit in attachment.edits if generic else ():
            operation = {**generic, "summary": edit.summary, "operationId": f"edit_{attachment.name}_{edit.name}"}
            operation.pop("description", None)
            operation["parameters"] = [p for p in generic.get("parameters", []) if p.get("name") == "name"]
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _add_component(schemas, edit.body)}}}
            ok = {"description": "the attachment's new metadata", "content": {"application/json": {"schema": info_ref}}}
            operation["responses"] = {**generic.get("responses", {}), "200": ok}
            paths[ATTACHMENT_EDIT_PATH.replace("{attachment}", attachment.name).replace("{edit}", edit.name)] = {"put": operation}


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
    _typed_attachments(schema, schemas)
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
