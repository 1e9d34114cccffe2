"""Op contracts of the ``style`` family (StyleGAN2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from schemas.common import Seed, Sha256Hex, StrictModel


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


class ProjectParams(StrictModel):
    steps: int = Field(default=100, ge=1, le=1000, description="optimisation steps (more: closer fit, slower)")
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0, description="Adam step size on the latent")
    latent_space: Literal["w", "w+"] = Field(default="w+", description="one w for all layers, or one per layer")
    resize: bool = Field(default=False, description="resize the image to the model resolution instead of rejecting other sizes")


class ProjectInputs(StrictModel):
    image: Sha256Hex = Field(description="asset id of the RGB image to project (model resolution, square)")


def prepare_project(inputs: ProjectInputs, params: ProjectParams, manifest: dict[str, Any], draw_seed) -> dict[str, Any]:
    return {"image": inputs.image}


def fit_project_images(images: dict[str, Any], params: ProjectParams, manifest: dict[str, Any]) -> dict[str, Any]:
    """The image must be the model's size; with ``resize`` it is resized (Lanczos) to it."""
    import numpy as np
    from PIL import Image

    resolution = int(manifest["resolution"])
    image = images["image"]
    height, width = image.shape[:2]
    if (height, width) != (resolution, resolution):
        if not params.resize:
            raise ValueError(
                f"inputs.image is {width}x{height} but model {manifest['name']!r} works at {resolution}x{resolution}; "
                f"crop/resize it, or set params.resize=true"
            )
        image = np.asarray(Image.fromarray(image).resize((resolution, resolution), Image.LANCZOS))
    return {**images, "image": image}
