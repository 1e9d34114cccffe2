"""Typed edit requests for the published OpenAPI contract: one request variant per (family, op).

At runtime ``POST /v1/edits`` (and every job item) is parsed as :class:`schemas.edits.EditRequest`,
whose ``params`` and ``inputs`` are free-form objects; the ingress then validates them against the
op of the model's family (the op table, ``service.families.op_table``) once it has looked the model up. That stays the only
validation on the serving path. This module only describes the same contract in detail for
``/openapi.json``, so that a generated client gets a typed class per op:

- ``<Family><Op>Params`` and ``<Family><Op>Inputs``: the op's ``params_model`` and ``inputs_model``
  under a name of their own (op names repeat across families with other parameters: ``style``'s
  ``sample`` is not ``collage``'s);
- ``<Family><Op>EditRequest``: ``model``, ``op`` (a const), typed ``params`` and ``inputs``, ``output``;
- ``EditRequest``: ``anyOf`` all the variants. The family is known from the model, which is a free
  string (models are registered at runtime), so no discriminator can pick the variant and several
  variants (``style``, ``collage`` and ``person`` ``sample``) accept the same JSON: ``anyOf``, not
  ``oneOf``.

Nothing here runs per request: the classes are built when the schema is first asked for. The caller
passes the op table (family -> op -> :class:`schemas.ops.OpSpec`): the families declare their ops
themselves, and ``schemas`` imports nothing that finds them.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema

from schemas.common import ModelName, StrictModel
from schemas.edits import OutputOptions
from schemas.ops import OpSpec

OpTable = Mapping[str, Mapping[str, OpSpec]]

EDIT_REQUEST_DESCRIPTION = (
    "One edit: a registered `model`, an `op` of its family, the op's `params` and `inputs`, and `output` options. "
    "There is one variant per (family, op) (`<Family><Op>EditRequest`), with typed `params` and `inputs`; the "
    "variant that applies follows from the model's family (GET /v1/models), which the service looks up before it "
    "validates `params` and `inputs` against that op."
)


def camel(name: str) -> str:
    """``local_transfer`` -> ``LocalTransfer``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def variant_name(family: str, op: str) -> str:
    return f"{camel(family)}{camel(op)}EditRequest"


def _renamed(model: type[BaseModel], name: str, description: str) -> type[BaseModel]:
    """A subclass of ``model`` named ``name``: the same fields and validators, its own schema title."""
    return type(name, (model,), {"__module__": __name__, "__doc__": model.__doc__ or description})


def _has_required_fields(model: type[BaseModel]) -> bool:
    return any(field.is_required() for field in model.model_fields.values())


def _variant(family: str, spec: OpSpec) -> type[BaseModel]:
    prefix = camel(family) + camel(spec.name)
    params = _renamed(spec.params_model, prefix + "Params", f"params of the {family} family's {spec.name} op")
    inputs = _renamed(spec.inputs_model, prefix + "Inputs", f"inputs of the {family} family's {spec.name} op")

    def member(model: type[BaseModel], what: str) -> tuple[Any, Any]:
        description = f"{what} of {family}.{spec.name}"
        if _has_required_fields(model):
            return model, Field(description=description)
        return model, Field(default_factory=dict, description=description + " (may be left out)")

    variant = create_model(
        variant_name(family, spec.name),
        __base__=StrictModel,
        __doc__=f"`{spec.name}` on a model of the `{family}` family: {spec.description}",
        model=(ModelName, Field(description=f"a registered model of the {family} family (GET /v1/models)")),
        op=(Literal[spec.name], Field(description="the op")),  # type: ignore[valid-type]
        params=member(params, "parameters"),
        inputs=member(inputs, "inputs"),
        output=(OutputOptions, Field(default_factory=OutputOptions)),
    )
    variant.__module__ = __name__
    return variant


def edit_variants(ops: OpTable) -> tuple[type[BaseModel], ...]:
    """Every (family, op) request variant, in the op table's order."""
    return tuple(_variant(family, spec) for family, family_ops in ops.items() for spec in family_ops.values())


def typed_components(ops: OpTable, ref_prefix: str = "#/components/schemas/") -> dict[str, dict[str, Any]]:
    """JSON schemas of ``EditRequest`` (anyOf the variants of ``ops``), the variants and everything they
    name, with references of the form ``<ref_prefix><Name>`` (OpenAPI components by default)."""
    variants = edit_variants(ops)
    _, top = models_json_schema([(variant, "validation") for variant in variants], ref_template=ref_prefix + "{model}")
    components: dict[str, dict[str, Any]] = dict(top.get("$defs", {}))
    missing = [v.__name__ for v in variants if v.__name__ not in components]
    if missing:  # a name pydantic had to qualify because two models share it
        raise RuntimeError(f"typed edit variants without their own schema name: {missing}")
    components["EditRequest"] = {
        "title": "EditRequest",
        "description": EDIT_REQUEST_DESCRIPTION,
        "anyOf": [{"$ref": ref_prefix + v.__name__} for v in variants],
    }
    return components
