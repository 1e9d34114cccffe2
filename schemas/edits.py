"""``POST /v1/edits``: one synchronous edit."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool, model_validator

from schemas.common import ModelName, Sha256Hex, StrictModel

OUTPUT_MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
DEFAULT_QUALITY = 90  # of jpeg and webp when none is given: visually lossless for generated faces


class OutputOptions(StrictModel):
    inline: bool = Field(default=False, description="also return the image as base64 when it is small enough")
    presign: bool = Field(default=True, description="return a presigned GET URL of the result")
    format: Literal["png", "webp", "jpeg"] = Field(default="png", description="encoding of the stored result image")
    quality: int | None = Field(
        default=None, ge=1, le=100, description=f"jpeg/webp quality, 1-100 (default {DEFAULT_QUALITY}); png is lossless and takes none"
    )
    # Strict: the body is read by FastAPI's lax validation, which would take "yes" or 1 for true.
    region: StrictBool = Field(
        default=False,
        description="return only the box the op changed; extras.region gives its offset and size, extras.full_size the whole image's",
    )

    @model_validator(mode="after")
    def _quality_needs_a_lossy_format(self) -> "OutputOptions":
        if self.format == "png" and self.quality is not None:
            raise ValueError(
                "quality applies to format 'jpeg' or 'webp'; png is lossless (its compression level is a "
                "service setting, png_compress_level)"
            )
        return self

    def encoding(self) -> dict[str, Any]:
        """What the family replica encodes with, and what the result id depends on beyond the edit:
        the format, a lossy format's quality, and ``region`` only when asked (so the ids of whole
        PNG results stay what they were before either option existed)."""
        encoding: dict[str, Any] = {"format": self.format}
        if self.format != "png":
            encoding["quality"] = self.quality or DEFAULT_QUALITY
        if self.region:
            encoding["region"] = True
        return encoding


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
    encode_ms: float | None = Field(default=None, description="image encoding time (output.format)")
    storage_ms: float | None = Field(default=None, description="S3 time: cache lookup, input fetch, result write")
    transit_ms: float | None = Field(
        default=None,
        description="time on the way between the ingress and the family replica, both ways (the Ray call: routing, "
        "serialisation, delivery; from dispatch, so a wait to share a call counts); wall clocks of two processes",
    )
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
    content_type: str = Field(default="image/png", description="media type of the result image (output.format)")
    url: str | None = Field(default=None, description="presigned GET URL of the result PNG")
    url_expires_in_s: int | None = None
    image_base64: str | None = Field(default=None, description="the image, when output.inline was asked and it is small")
    extras: dict[str, Any] = Field(default_factory=dict, description="op-specific outputs (e.g. latents)")
    random_init: bool = Field(default=False, description="true when the model is an untrained random-init checkpoint")
    timings: Timings
