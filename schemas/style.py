"""Op contracts of the ``style`` family (StyleGAN2)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from schemas.common import Seed, StrictModel


class SampleParams(StrictModel):
    truncation: float = Field(default=1.0, ge=0.0, le=2.0, description="psi: 1 = no truncation, 0 = the mean image")


class SampleInputs(StrictModel):
    seed: Seed | None = Field(default=None, description="seed of z ~ N(0, I); drawn by the server when nothing is given")
    z: list[float] | None = Field(default=None, description="latent z, length style_dim")
    w: list[float] | None = Field(default=None, description="latent w, length style_dim (or n_latent*style_dim for W+)")

    @model_validator(mode="after")
    def _at_most_one(self) -> "SampleInputs":
        given = [name for name in ("seed", "z", "w") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of seed, z, w (got {', '.join(given)})")
        return self


def prepare_sample(inputs: SampleInputs, params: SampleParams, manifest: dict[str, Any], draw_seed) -> dict[str, Any]:
    """Canonical inputs of `sample`: a seed is drawn when nothing is given; latent lengths are checked."""
    style_dim = int(manifest["arch"]["style_dim"])
    n_latent = int(manifest.get("n_latent") or 0)
    if inputs.z is not None:
        if len(inputs.z) != style_dim:
            raise ValueError(f"inputs.z must have {style_dim} numbers for this model, got {len(inputs.z)}")
        return {"z": [float(v) for v in inputs.z]}
    if inputs.w is not None:
        allowed = {style_dim, n_latent * style_dim} - {0}
        if len(inputs.w) not in allowed:
            raise ValueError(
                f"inputs.w must have {style_dim} numbers (or {n_latent}x{style_dim} for W+), got {len(inputs.w)}"
            )
        return {"w": [float(v) for v in inputs.w]}
    return {"seed": inputs.seed if inputs.seed is not None else draw_seed()}
