"""The op table: for each family, the ops it serves and their parameter and input contracts.

The ingress validates every edit against this table before anything reaches a generator, and
``GET /v1/models`` publishes it. Families register their ops here (pure pydantic, no torch), so
the ingress stays light.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pydantic import BaseModel

from schemas import style


@dataclasses.dataclass(frozen=True)
class OpSpec:
    name: str
    description: str
    params_model: type[BaseModel]
    inputs_model: type[BaseModel]
    # (inputs, params, manifest, draw_seed) -> canonical inputs dict; raises ValueError on a bad shape
    prepare: Callable[[Any, Any, dict[str, Any], Callable[[], int]], dict[str, Any]]
    # input fields that hold image asset ids, with the Pillow mode they are decoded to
    image_inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    # (decoded images, params, manifest) -> images the family can run as they are; ValueError if not
    fit_images: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]] | None = None
    # input fields holding a latent reference whose {"projection": result_id} the ingress resolves
    latent_inputs: tuple[str, ...] = ()

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "params_schema": self.params_model.model_json_schema(),
            "inputs_schema": self.inputs_model.model_json_schema(),
        }


OPS: dict[str, dict[str, OpSpec]] = {
    "style": {
        "sample": OpSpec(
            name="sample",
            description="Generate an image from a seed or a z/w latent, with truncation psi.",
            params_model=style.SampleParams,
            inputs_model=style.SampleInputs,
            prepare=style.prepare_sample,
        ),
        "project": OpSpec(
            name="project",
            description="Find the W/W+ latent whose image matches an uploaded image; returns the fit and extras.w.",
            params_model=style.ProjectParams,
            inputs_model=style.ProjectInputs,
            prepare=style.prepare_project,
            image_inputs={"image": "RGB"},
            fit_images=style.fit_project_images,
        ),
        "catalog": OpSpec(
            name="catalog",
            description="Find the model's parts: spherical k-means of layer activations over generated samples, "
            "contribution matrices per layer; stores the catalog next to the model and returns part maps of samples.",
            params_model=style.CatalogParams,
            inputs_model=style.CatalogInputs,
            prepare=style.prepare_catalog,
        ),
        "part_map": OpSpec(
            name="part_map",
            description="Colour-coded per-pixel part (cluster) map of an image of the model; extras give the colours.",
            params_model=style.PartMapParams,
            inputs_model=style.PartMapInputs,
            prepare=style.prepare_part_map,
            latent_inputs=("target",),
        ),
        "local_transfer": OpSpec(
            name="local_transfer",
            description="Editing in Style: give the target the reference's style in one part (catalog labels or a mask), "
            "by conditioned interpolation of the style coefficients of the channels that draw it.",
            params_model=style.LocalTransferParams,
            inputs_model=style.LocalTransferInputs,
            prepare=style.prepare_local_transfer,
            image_inputs={"mask": "L"},
            fit_images=style.fit_mask_images,
            latent_inputs=("target", "reference"),
        ),
    },
}


def get_op(family: str, op: str) -> OpSpec | None:
    return OPS.get(family, {}).get(op)
