"""Ray Serve deployment of the ``warp`` family: a thin adapter over the Warping-GAN (pose transfer).

All requests of one model share the model's fixed image size, so a dynamic batch is one tensor
batch. The predicted target parsing is stored as a colour PNG asset (content-addressed, like an
upload: ``extras.parsing_asset_id``), so a client can fetch it or send it back as an input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ray import serve

from deployments.warp.checkpoint import load_model
from deployments.warp.networks import NUM_PARSING_CLASSES, WarpConfig, WarpingGAN
from deployments.warp.pose import heatmap_sigma, keypoint_tensors, pose_heatmaps
from schemas.warp import LIP_CLASSES, LIP_PALETTE, PoseTransferParams
from service.family import FamilyDeployment, GroupOutput
from service.images import encode_png
from service.tasks import EditTask

PARSING_PALETTE = np.array(LIP_PALETTE, dtype=np.uint8)


def pose_transfer_batch(model: WarpingGAN, tasks: list[EditTask], device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Tasks (image, parsing, keypoints, target_keypoints) -> (images (n, H, W, 3) uint8, parsing labels (n, H, W) uint8)."""
    height, width = model.config.height, model.config.width
    sigma = heatmap_sigma(height)
    image = torch.stack([torch.from_numpy(np.array(t.images["image"], dtype=np.float32)) for t in tasks]).permute(0, 3, 1, 2)
    labels = torch.stack([torch.from_numpy(np.array(t.images["parsing"], dtype=np.int64)) for t in tasks])
    condition = [keypoint_tensors(t.inputs["keypoints"]) for t in tasks]
    target = [keypoint_tensors(t.inputs["target_keypoints"]) for t in tasks]
    pose = pose_heatmaps(torch.stack([c for c, _ in condition]), torch.stack([v for _, v in condition]), height, width, sigma)
    target_pose = pose_heatmaps(torch.stack([c for c, _ in target]), torch.stack([v for _, v in target]), height, width, sigma)
    with torch.inference_mode():
        out = model(
            (image / 127.5 - 1).to(device),
            F.one_hot(labels, NUM_PARSING_CLASSES).permute(0, 3, 1, 2).float().to(device),
            pose.to(device),
            target_pose.to(device),
        )
    images = ((out["image"] + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return images, out["target_parsing"].argmax(1).to(torch.uint8).cpu().numpy()


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=32, health_check_period_s=10)
class WarpDeployment(FamilyDeployment):
    family = "warp"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        # 32 px: the matchers' features are 1/16 of the image and instance norm needs more than one pixel
        self._canary = (
            WarpingGAN(
                WarpConfig(
                    height=32, width=32, parser_channels=2, parser_blocks=1, matcher_channels=2, renderer_channels=2, renderer_blocks=1
                )
            )
            .eval()
            .to(self.device)
        )

    def load_model(self, manifest: dict[str, Any], weights: bytes) -> WarpingGAN:
        return load_model(weights, manifest, device=str(self.device))

    def _store_parsing(self, labels: np.ndarray) -> dict[str, Any]:
        asset_id = self.store.put_png_asset(encode_png(PARSING_PALETTE[labels]), labels.shape[1], labels.shape[0], "RGB")
        shares = np.bincount(labels.ravel(), minlength=NUM_PARSING_CLASSES) / labels.size
        return {
            "parsing_asset_id": asset_id,
            "parsing_shares": {LIP_CLASSES[c]: round(float(s), 4) for c, s in enumerate(shares) if s >= 0.005},
        }

    def run_pose_transfer(self, model: WarpingGAN, tasks: list[EditTask], params: list[PoseTransferParams]) -> list[GroupOutput]:
        """The op handler (named by deployments/warp/spec.py)."""
        images, parsings = pose_transfer_batch(model, tasks, self.device)
        return [GroupOutput(image, self._store_parsing(labels)) for image, labels in zip(images, parsings)]

    def health_forward(self) -> None:
        zeros = torch.zeros(1, 18, 32, 32, device=self.device)
        parsing = torch.zeros(1, NUM_PARSING_CLASSES, 32, 32, device=self.device)
        parsing[:, 0] = 1
        with torch.inference_mode():
            out = self._canary(torch.zeros(1, 3, 32, 32, device=self.device), parsing, zeros, zeros)
        if not torch.isfinite(out["image"]).all():
            raise RuntimeError("warp canary forward produced non-finite values")
