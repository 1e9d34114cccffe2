"""Model registry contract: what ``models/<name>/model.json`` holds and what ``GET /v1/models`` lists."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import ModelName, Sha256Hex


class ModelManifest(BaseModel):
    """Stored next to the weights as ``models/<name>/model.json``; written last, so its presence means complete."""

    model_config = ConfigDict(extra="allow")

    name: ModelName
    family: str = Field(description="generator family, e.g. 'style'")
    format: str = Field(description="project weight format, e.g. 'stylegan2'")
    source_format: str | None = Field(default=None, description="public format the weights were converted from")
    arch: dict[str, Any] = Field(default_factory=dict, description="constructor arguments of the generator")
    resolution: int | None = None
    classes: list[str] | None = Field(default=None, description="class names of class-conditional generators")
    layers: list[str] | None = Field(default=None, description="editable layer names, when ops take a layer")
    ops: list[str] = Field(description="ops this model supports")
    random_init: bool = Field(default=False, description="true for untrained, seeded random-init demo weights")
    description: str = ""
    param_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per op, parameter values this model uses where a request leaves them out "
        "(e.g. the edge map an inpainting model was trained with); published as the schema's defaults",
    )
    weights_sha256: Sha256Hex | None = None
    weights_bytes: int | None = None
    registered_at: str | None = None


class OpInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    inputs_schema: dict[str, Any]


class ModelInfo(BaseModel):
    """A registered model as ``GET /v1/models`` lists it. The service adds one field per model
    attachment a family declares (``schemas.ops.ModelAttachment``, e.g. a style model's ``catalog``):
    an extra field here, typed in the published OpenAPI document."""

    model_config = ConfigDict(extra="allow")

    name: str
    family: str
    format: str
    resolution: int | None
    classes: list[str] | None
    layers: list[str] | None
    random_init: bool
    description: str
    weights_sha256: str | None
    ops: list[OpInfo]
    arch: dict[str, Any]
    image_size: list[int] | None = Field(
        default=None, description="[height, width] of models with a fixed, non-square size (warp, ingan, person)"
    )
    keypoint_names: list[str] | None = Field(
        default=None, description="order of the keypoints the model's ops take (warp, person: COCO-18)"
    )
    examples: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description="example image asset id -> its keypoints (and warp: parsing asset id): inputs that may then be omitted (warp, person)",
    )
    factors: list[str] | None = Field(default=None, description="factors the model separates (person: foreground, background, pose)")
    embedding_dims: dict[str, int] | None = Field(default=None, description="embedding size of each factor (person)")
    broken: str | None = Field(
        default=None,
        description="why the model's weights do not load, when a replica found they "
        "do not: its edits answer 422 model-broken until working weights are registered",
    )


class FamilyInfo(BaseModel):
    name: str
    deployed: bool
    ops: list[str]


class ModelList(BaseModel):
    families: list[FamilyInfo]
    models: list[ModelInfo]
