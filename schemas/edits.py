"""``POST /v1/edits``: one synchronous edit."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.common import ModelName, Sha256Hex, StrictModel


class OutputOptions(StrictModel):
    inline: bool = Field(default=False, description="also return the PNG as base64 when it is small enough")
    presign: bool = Field(default=True, description="return a presigned GET URL of the result")


class EditRequest(StrictModel):
    model: ModelName = Field(description="registered model name (GET /v1/models)")
    op: str = Field(min_length=1, max_length=64, description="op of the model's family, e.g. 'sample'")
    params: dict[str, Any] = Field(default_factory=dict, description="op parameters (schema in GET /v1/models)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="asset ids, seeds or latents (schema in GET /v1/models)")
    output: OutputOptions = Field(default_factory=OutputOptions)


class Timings(BaseModel):
    total_ms: float = Field(description="time spent in the ingress for this request")
    queue_ms: float | None = Field(default=None, description="wait from dispatch until its batch started")
    compute_ms: float | None = Field(default=None, description="generator time of the group this edit ran in")
    encode_ms: float | None = Field(default=None, description="PNG encoding time")
    storage_ms: float | None = Field(default=None, description="S3 time: cache lookup, input fetch, result write")
    batch_size: int | None = Field(default=None, description="number of edits in the dynamic batch it rode in")
    group_size: int | None = Field(default=None, description="edits of the same (model, op, shape) run as one tensor batch")


class EditResponse(BaseModel):
    result_id: Sha256Hex = Field(description="content address of the canonical request; also an asset id")
    model: str
    op: str
    cached: bool = Field(description="true when the result came from S3 without computing")
    seed: int | None = Field(default=None, description="seed used (drawn by the server when none was given)")
    width: int
    height: int
    content_type: str = "image/png"
    url: str | None = Field(default=None, description="presigned GET URL of the result PNG")
    url_expires_in_s: int | None = None
    image_base64: str | None = Field(default=None, description="the PNG, when output.inline was asked and it is small")
    extras: dict[str, Any] = Field(default_factory=dict, description="op-specific outputs (e.g. latents)")
    random_init: bool = Field(default=False, description="true when the model is an untrained random-init checkpoint")
    timings: Timings
