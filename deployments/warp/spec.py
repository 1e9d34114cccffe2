"""The ``warp`` family's op, declared once (torch-free: the ingress imports it).

The ``collage.families`` entry point ``warp`` names this module; see ``schemas.ops.FamilySpec``.
"""

from __future__ import annotations

from typing import Any, Hashable

from schemas import warp
from schemas.ops import FamilySpec, OpSpec


def one_batch(task: Any, params: Any) -> Hashable:
    return ()  # one model, one image size: every request of a batch shares a tensor batch


FAMILY = FamilySpec(
    "warp",
    "deployments.warp.deployment:WarpDeployment",
    [
        OpSpec(
            name="pose_transfer",
            description="Soft-Gated Warping-GAN: the person of the image (with its keypoints and LIP parsing) in the target "
            "pose; returns the image and extras.parsing_asset_id (the predicted target parsing, colour-coded).",
            params_model=warp.PoseTransferParams,
            inputs_model=warp.PoseTransferInputs,
            prepare=warp.prepare_pose_transfer,
            image_inputs={"image": "RGB", "parsing": "L"},
            fit_images=warp.fit_pose_transfer_images,
            handler="run_pose_transfer",
            group_key=one_batch,
            bucketed=True,
        )
    ],
)
__getattr__ = FAMILY.module_getattr
