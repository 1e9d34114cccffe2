"""The shape of an op declaration: what each op of a family declares, once, in the family's own folder.

A family declares its ops in one torch-free module of its own (``deployments/<family>/spec.py``), as a
:class:`FamilySpec` of :class:`OpSpec`; its ``collage.families`` entry point names that module, and
``service/families.py`` reads the declarations into the op table the platform serves. The ingress
validates every edit against the op's models before anything reaches a generator, ``GET /v1/models``
and ``/openapi.json`` publish them, and the family's replica runs the op's declared handler.

Nothing here imports ``service`` or torch: the ingress imports every family's declaration.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Hashable, Iterable, Literal

from pydantic import BaseModel

from schemas.common import Limits

# What an op's successful edit makes stale in the platform's caches (OpSpec.invalidates):
# "model" = the model's registry entry (manifest, with its attachments' metadata) cached in the
# process that ran the edit, so that the next request sees what the op stored.
Invalidation = Literal["model"]


@dataclasses.dataclass(frozen=True)
class FittedImages:
    """What an op's ``fit_images`` returns when it changed a photo's frame: the images the family runs,
    and JSON-able extras saying what was done (e.g. the box of the photo a fixed-size model saw and
    its scale), so that the result can be placed back on the photo."""

    images: dict[str, Any]
    extras: dict[str, Any]

    @staticmethod
    def of(fitted: "dict[str, Any] | FittedImages") -> "FittedImages":
        """A hook's answer as FittedImages: a plain images dict has no extras."""
        return fitted if isinstance(fitted, FittedImages) else FittedImages(fitted, {})


@dataclasses.dataclass(frozen=True, kw_only=True)
class OpSpec:
    name: str
    description: str
    params_model: type[BaseModel]
    inputs_model: type[BaseModel]
    # (inputs, params, manifest, draw_seed, limits) -> canonical inputs dict; raises ValueError on a bad
    # shape or a request above the service's limits (schemas.common.Limits, which the caller passes)
    prepare: Callable[[Any, Any, dict[str, Any], Callable[[], int], Limits], dict[str, Any]]
    # The name of the method of the family's Serve deployment class that runs a group of this op on
    # the replica: ``(model, tasks, params) -> [GroupOutput]``, ``params`` being each task's
    # ``params_model`` instance. A method name, not a function object: the ingress imports this
    # declaration and must not import the torch code the handler lives in, and a handler needs the
    # replica's own state (device, stores, per-model caches); the replica resolves it with getattr
    # (tests/test_families.py checks every declared handler exists).
    handler: str
    # input fields that hold image asset ids (or lists of them), with the Pillow mode they are decoded to
    image_inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    # (decoded images, params, manifest) -> images the family can run as they are; ValueError if not.
    # A hook that moves a photo into the model's frame (crops, scales, pads it) returns FittedImages,
    # whose extras (what it did) the family replica merges into the result's extras.
    fit_images: Callable[[dict[str, Any], Any, dict[str, Any]], "dict[str, Any] | FittedImages"] | None = None
    # (canonical inputs, fitted images, params, the op's pixel budget) -> None; raises ValueError
    # naming the budget and a setting of the request that would fit when the op's generators would
    # run on more pixels (Limits.model_pixel_budget: settings model_pixel_budgets, else pixel_budget
    # below, else max_model_pixels). The platform checks it before dispatching (a 413), so one huge
    # request cannot hold a replica or run it out of memory.
    check_pixel_budget: Callable[[dict[str, Any], dict[str, Any], Any, int], None] | None = None
    # the op's own budget where settings name none, for generators whose memory per pixel is far
    # above the others' (None: max_model_pixels)
    pixel_budget: int | None = None
    # input fields holding a latent reference (or a list of them) whose {"projection": result_id}
    # the ingress resolves to the fitted latent that a fitting edit (an op with latent_keys) stored;
    # "" = the inputs themselves
    latent_inputs: tuple[str, ...] = ()
    # The fields of this op's extras that make up a fitted latent (a `project` op: style w, collage
    # z and class): what a {"projection": result_id} naming one of its results resolves to. Empty:
    # its results are not projections.
    latent_keys: tuple[str, ...] = ()
    # (task, params) -> the extra key (beyond model and op) of the tasks that can run as one tensor
    # batch, ``params`` being the task's ``params_model`` instance; None: the tasks' image shapes.
    group_key: Callable[[Any, Any], Hashable] | None = None
    # One forward pass per task of a fixed shape: with accel_compile on, its groups are padded (last
    # task repeated) to a batch bucket, so a compiled generator meets only the bucket sizes.
    bucketed: bool = False
    # The API key scope an edit of this op needs beyond edit access, and why (the 403 says it):
    # e.g. ``catalog`` needs "admin" because it replaces the model's part catalog for every client.
    required_scope: str | None = None
    scope_reason: str = ""
    invalidates: tuple[Invalidation, ...] = ()

    def __post_init__(self) -> None:
        if self.required_scope is not None and not self.scope_reason:
            raise ValueError(f"op {self.name!r}: a required_scope needs its scope_reason (the 403 gives it)")

    def info(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """The op's published contract, with the defaults of ``manifest``'s model where it has its own."""
        params_schema = self.params_model.model_json_schema()
        for name, value in self.model_defaults(manifest).items():
            params_schema["properties"][name]["default"] = value
        return {
            "name": self.name,
            "description": self.description,
            "params_schema": params_schema,
            "inputs_schema": self.inputs_model.model_json_schema(),
        }

    def model_defaults(self, manifest: dict[str, Any] | None) -> dict[str, Any]:
        """The model's own defaults for this op (its manifest's ``param_defaults``), if any."""
        return ((manifest or {}).get("param_defaults") or {}).get(self.name, {})

    def params_with_defaults(self, params: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
        """A request's params over the model's own defaults for this op."""
        return {**self.model_defaults(manifest), **params}


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetadataEdit:
    """A change clients with the ``admin`` scope may make to an attachment's metadata:
    ``PUT /v1/models/{model}/{attachment}/{name}`` with ``body``, answered with the new metadata."""

    name: str  # the route's last path segment, e.g. "labels"
    body: type[BaseModel]  # the request body
    apply: Callable[[dict[str, Any], Any], dict[str, Any]]  # (metadata, body) -> new metadata; ValueError -> 422
    summary: str  # the route's one-line summary in the OpenAPI document


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelAttachment:
    """Data a family's ops build for one model and store beside its weights: ``models/<model>/<name>.safetensors``
    (the tensors) and ``<name>.json`` (their metadata, which records the weights it was built from). While the
    model's weights are those, the registry merges the metadata into the model's manifest under ``name`` and
    ``GET /v1/models`` lists it as the model's field ``name``, typed by ``info``; new weights leave it stale
    (absent) until it is rebuilt. A checkpoint directory may ship both files."""

    name: str  # file stem, manifest key and ModelInfo field, e.g. "catalog"
    title: str  # what it is, in messages: "part catalog"
    info: type[BaseModel]  # the metadata's schema
    description: str  # the ModelInfo field's description
    how_to_build: str  # what the 404 for a model without one suggests, e.g. "run the 'catalog' op"
    edits: tuple[MetadataEdit, ...] = ()

    @property
    def data_file(self) -> str:
        return f"{self.name}.safetensors"

    @property
    def meta_file(self) -> str:
        return f"{self.name}.json"


class FamilySpec:
    """One family's declaration: its name, its Serve deployment class, its ops in declaration order, and
    the attachments its ops store beside a model's weights.

    The family's declaration module (the module its ``collage.families`` entry point names) holds it
    as ``FAMILY`` and sets ``__getattr__ = FAMILY.module_getattr``, so that the entry point's
    attribute, the deployment class's name, resolves there lazily: reading the declaration imports
    no torch, loading the deployment imports its module.
    """

    def __init__(self, name: str, deployment: str, ops: Iterable[OpSpec], attachments: Iterable[ModelAttachment] = ()) -> None:
        module, _, cls = deployment.partition(":")
        if not module or not cls:
            raise ValueError(f"family {name!r}: deployment must be 'module:Class', got {deployment!r}")
        self.name = name
        self.deployment = deployment
        self.ops: dict[str, OpSpec] = {}
        for op in ops:
            if op.name in self.ops:
                raise ValueError(f"family {name!r} declares op {op.name!r} twice")
            self.ops[op.name] = op
        self.attachments: dict[str, ModelAttachment] = {a.name: a for a in attachments}

    @property
    def deployment_class_name(self) -> str:
        return self.deployment.rpartition(":")[2]

    def op_names(self) -> list[str]:
        """Every op of the family, in declaration order (what a converted checkpoint's manifest serves)."""
        return list(self.ops)

    def load_deployment(self) -> Any:
        """The Serve deployment class (imports its module, and with it torch)."""
        module, _, cls = self.deployment.partition(":")
        return getattr(importlib.import_module(module), cls)

    def module_getattr(self, attr: str) -> Any:
        """A declaration module's ``__getattr__``: the deployment class by its name, imported on first use."""
        if attr == self.deployment_class_name:
            return self.load_deployment()
        raise AttributeError(f"family {self.name!r}'s declaration has no attribute {attr!r}")

    def __repr__(self) -> str:
        return f"FamilySpec({self.name!r}, {self.deployment!r}, ops={self.op_names()})"
