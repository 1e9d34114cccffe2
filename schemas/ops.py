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
    },
}


def get_op(family: str, op: str) -> OpSpec | None:
    return OPS.get(family, {}).get(op)
