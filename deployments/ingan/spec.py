"""The ``ingan`` family's op, declared once (torch-free: the ingress imports it).

The ``collage.families`` entry point ``ingan`` names this module; see ``schemas.ops.FamilySpec``.
Training is a job kind, not an op: its own ``collage.fit_tasks`` entry point.
"""

from __future__ import annotations

from typing import Any, Hashable

from schemas import ingan
from schemas.ops import FamilySpec, OpSpec


def same_targets(task: Any, params: Any) -> Hashable:
    # one group shares the (snapped) output sizes and homographies: its images are computed once
    return tuple(tuple(target) for target in task.inputs["targets"])


FAMILY = FamilySpec(
    "ingan",
    "deployments.ingan.deployment:InganDeployment",
    [
        OpSpec(
            name="retarget",
            description="InGAN: the model's image at other sizes and aspects (sides snapped to the model's size_multiple) or "
            "warped by a top-corner homography, one forward pass each; several outputs form a strip. Models come from "
            'fit jobs (POST /v1/jobs with {"fit": {...}}).',
            params_model=ingan.RetargetParams,
            inputs_model=ingan.RetargetInputs,
            prepare=ingan.prepare_retarget,
            check_pixel_budget=ingan.check_retarget_budget,
            pixel_budget=ingan.RETARGET_PIXEL_BUDGET,
            handler="run_retarget",
            group_key=same_targets,
        )
    ],
)
__getattr__ = FAMILY.module_getattr
