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
    weights_sha256: Sha256Hex | None = None
    weights_bytes: int | None = None
    registered_at: str | None = None


class OpInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    inputs_schema: dict[str, Any]


class ModelInfo(BaseModel):
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


class FamilyInfo(BaseModel):
    name: str
    deployed: bool
    ops: list[str]


class ModelList(BaseModel):
    families: list[FamilyInfo]
    models: list[ModelInfo]
