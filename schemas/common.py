"""Shared field types of the API contract."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex digest (64 lowercase hex chars)")]
ModelName = Annotated[
    str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$", description="registered model name, e.g. 'style-demo-random'")
]
STRIP_GAP = 4  # white pixels between the images of a strip (several outputs of one edit side by side)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="random seed (uint32)")]


class StrictModel(BaseModel):
    """Request models reject unknown fields, so a typo is a 422, not a silently ignored knob."""

    model_config = ConfigDict(extra="forbid")
