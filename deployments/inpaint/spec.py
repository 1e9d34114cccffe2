"""The ``inpaint`` family's op, declared once (torch-free: the ingress imports it).

The ``collage.families`` entry point ``inpaint`` names this module; see ``schemas.ops.FamilySpec``.
"""

from __future__ import annotations

from typing import Any, Hashable

from deployments.inpaint import strategies
from deployments.inpaint.sizes import size_bucket
from schemas import inpaint
from schemas.ops import FamilySpec, OpSpec


def padded_size_and_edge_map(task: Any, params: inpaint.InpaintParams) -> Hashable:
    # edits whose model inputs (their plan's windows, crops or scaled) pad to one size share a batch,
    # if they name one edge map (ops.complete takes one per batch)
    if not task.images["mask"].any():  # nothing to fill, nothing runs: any group will do
        return size_bucket(task.images["image"].shape), params.edge_map
    return size_bucket(strategies.plan_of(task.images, params).model_size), params.edge_map


FAMILY = FamilySpec(
    "inpaint",
    "deployments.inpaint.deployment:InpaintDeployment",
    [
        OpSpec(
            name="inpaint",
            description="EdgeConnect: complete the edges inside the hole (mask white = hole), then the image along them; "
            "optional user-drawn edges steer the structure; params.strategy runs it on crops around the holes (default), "
            "the image scaled down, or all of it; returns the image, extras.edges_asset_id (the edge map) and what ran.",
            params_model=inpaint.InpaintParams,
            inputs_model=inpaint.InpaintInputs,
            prepare=inpaint.prepare_inpaint,
            image_inputs={"image": "RGB", "mask": "L", "edges": "L"},
            fit_images=inpaint.fit_inpaint_images,
            check_pixel_budget=strategies.check_pixel_budget,
            handler="run_inpaint",
            group_key=padded_size_and_edge_map,
            bucketed=True,
        )
    ],
)
__getattr__ = FAMILY.module_getattr
