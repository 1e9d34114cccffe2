"""RFC 9457 problem details, as every error response carries them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the problem type")
    title: str = Field(description="short summary of the problem type")
    status: int = Field(description="HTTP status code")
    detail: str = Field(description="what went wrong and how to fix it")
    instance: str | None = Field(default=None, description="request id of the failing request")
    errors: list[dict[str, Any]] | None = Field(default=None, description="per-field validation errors, when any")
