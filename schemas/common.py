"""Shared field types of the API contract."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Mapping

from pydantic import BaseModel, ConfigDict, Field

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex digest (64 lowercase hex chars)")]
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$", description="registered model name, e.g. 'style-demo-random'")]
STRIP_GAP = 4  # white pixels between the images of a strip (several outputs of one edit side by side)
Seed = Annotated[int, Field(ge=0, le=2**32 - 1, description="random seed (uint32)")]
# One element of a latent vector (z, w): finite and bounded. Real latents stay within a few tens
# (z ~ N(0, I); w of mapped z, or fitted by `project`); 1e308 would only overflow a generator.
LATENT_BOUND = 1e4
LatentValue = Annotated[float, Field(ge=-LATENT_BOUND, le=LATENT_BOUND)]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The service's size limits that an op's ``prepare`` checks a request against. The caller (the
    edit pipeline, a replica's warm-up, the benchmark) builds them from its settings with
    ``Settings.limits()``, so the API contract imports nothing of the service."""

    max_image_pixels: int  # largest image (w*h) decoded or returned
    # Pixels an op's generators may run on for one edit (the op's check_pixel_budget): the default,
    # and per-op exceptions keyed "<family>.<op>"
    max_model_pixels: int = 2048 * 2048
    model_pixel_budgets: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def model_pixel_budget(self, family: str, op: str, declared: int | None = None) -> int:
        """The pixel budget of one edit of ``family``'s ``op``: the settings' entry for the op, else
        the budget the op declares (``OpSpec.pixel_budget``), else ``max_model_pixels``."""
        fallback = self.max_model_pixels if declared is None else declared
        return self.model_pixel_budgets.get(f"{family}.{op}", fallback)


class StrictModel(BaseModel):
    """Request models reject unknown fields, so a typo is a 422, not a silently ignored knob, and
    non-finite numbers (NaN, ±Infinity: not JSON, and 1e309 overflows to infinity) everywhere."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
