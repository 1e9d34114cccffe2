"""Body geometry from COCO-18 keypoints: the 7 body ROIs, the coarse pose mask and the 54-dim pose vector.

Everything here is computed from keypoints alone (no parsing): the person family needs only an
image and its keypoints. Keypoints are pixel (x, y), shape (n, 18, 2), with ``visible`` (n, 18) bool;
the torso (neck, shoulders, hips) is always visible (schemas/warp.py ``check_keypoints``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deployments.shapes import assert_shape
from schemas.warp import KEYPOINT_NAMES, SKELETON

NUM_KEYPOINTS = len(KEYPOINT_NAMES)
POSE_VECTOR_DIM = 3 * NUM_KEYPOINTS  # (x / W, y / H, visible) per joint: the paper's 54-dim pose input
_K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# The paper's seven body regions of interest, each the box around its joints; the margin (a fraction of
# the torso length, neck to hip centre) covers the flesh and cloth around the joints.
BODY_ROIS: dict[str, tuple[tuple[str, ...], float]] = {
    "head": (("nose", "neck", "r_eye", "l_eye", "r_ear", "l_ear"), 0.30),
    "upper_body": (("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip"), 0.15),
    "lower_body": (("r_hip", "l_hip", "r_knee", "l_knee"), 0.25),
    "right_arm": (("r_shoulder", "r_elbow", "r_wrist"), 0.18),
    "left_arm": (("l_shoulder", "l_elbow", "l_wrist"), 0.18),
    "right_leg": (("r_hip", "r_knee", "r_ankle"), 0.20),
    "left_leg": (("l_hip", "l_knee", "l_ankle"), 0.20),
}
NUM_ROIS = len(BODY_ROIS)
# (7, 18) membership of each joint in each ROI, and each ROI's margin.
_ROI_MEMBERS = torch.tensor([[name in joints for name in KEYPOINT_NAMES] for joints, _ in BODY_ROIS.values()])
_ROI_MARGINS = torch.tensor([margin for _, margin in BODY_ROIS.values()])

# Bones of the coarse pose mask: the skeleton, the torso's outline and diagonals (which fill it).
_MASK_BONES = SKELETON + ((2, 8), (5, 11), (8, 11), (2, 5), (2, 11), (5, 8))
MASK_RADIUS = 0.22  # capsule radius around each bone, fraction of the torso length
MASK_TORSO_RADIUS = 0.40  # the neck-to-hip-centre capsule, wider: the torso's middle and loose clothes


def torso_length(keypoints: torch.Tensor) -> torch.Tensor:
    """(n, 18, 2) -> (n,) distance from the neck to the hip centre, at least 1 px: the person's scale."""
    hip_centre = (keypoints[:, _K["r_hip"]] + keypoints[:, _K["l_hip"]]) / 2
    return (keypoints[:, _K["neck"]] - hip_centre).norm(dim=-1).clamp_min(1.0)


def roi_boxes(keypoints: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (boxes (n, 7, 4) pixel x0, y0, x1, y1; present (n, 7) bool). A ROI with no visible joint is
    absent (its box is a dummy at the neck); one visible joint gives a square of twice the margin."""
    assert_shape(keypoints, (None, NUM_KEYPOINTS, 2), "keypoints")
    n = keypoints.shape[0]
    assert_shape(visible, (n, NUM_KEYPOINTS), "visible")
    members = _ROI_MEMBERS.to(keypoints.device)[None] & visible[:, None, :]  # (n, 7, 18)
    points = keypoints[:, None].expand(n, NUM_ROIS, NUM_KEYPOINTS, 2)
    big = torch.finfo(keypoints.dtype).max
    low = torch.where(members[..., None], points, torch.full_like(points, big)).amin(2)
    high = torch.where(members[..., None], points, torch.full_like(points, -big)).amax(2)
    present = members.any(2)
    neck = keypoints[:, _K["neck"]][:, None].expand(n, NUM_ROIS, 2)
    low, high = torch.where(present[..., None], low, neck), torch.where(present[..., None], high, neck)
    margin = (_ROI_MARGINS.to(keypoints.device)[None] * torso_length(keypoints)[:, None])[..., None]
    return torch.cat([low - margin, high + margin], dim=-1), present


def crop_rois(features: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], size: int) -> torch.Tensor:
    """Resample each box of the image (in image pixels) out of ``features`` (n, C, h, w), which may be
    a downscaled map of the image: -> (n, 7, C, size, size). Outside the map reads zeros."""
    n, channels = features.shape[:2]
    height, width = image_size
    x0, y0, x1, y1 = boxes.reshape(-1, 4).unbind(-1)
    # Normalised coordinates (align_corners=False): pixel centres at (p + 0.5) / side * 2 - 1.
    centre_x, centre_y = (x0 + x1 + 1) / width - 1, (y0 + y1 + 1) / height - 1
    half_w, half_h = (x1 - x0 + 1) / width, (y1 - y0 + 1) / height
    theta = torch.zeros(n * NUM_ROIS, 2, 3, device=features.device, dtype=features.dtype)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = half_w, centre_x, half_h, centre_y
    grid = F.affine_grid(theta, [n * NUM_ROIS, channels, size, size], align_corners=False)
    repeated = features[:, None].expand(n, NUM_ROIS, *features.shape[1:]).reshape(n * NUM_ROIS, *features.shape[1:])
    crops = F.grid_sample(repeated, grid, align_corners=False, padding_mode="zeros")
    return crops.view(n, NUM_ROIS, channels, size, size)


def roi_masks(boxes: torch.Tensor, present: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 7, 4) boxes -> (n, 7, H, W) float: 1 inside each present ROI's box (where its embedding is painted)."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[None, None, :, None]
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None, None, None, :]
    x0, y0, x1, y1 = (b[..., None, None] for b in boxes.unbind(-1))
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return (inside & present[..., None, None]).to(boxes.dtype)


def pose_mask(keypoints: torch.Tensor, visible: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The coarse person mask of the paper: capsules around the bones between visible joints, their
    radius proportional to the torso length -> (n, 1, H, W) float in {0, 1}."""
    n = keypoints.shape[0]
    ys = torch.arange(height, device=keypoints.device, dtype=keypoints.dtype)[None, :, None]
    xs = torch.arange(width, device=keypoints.device, dtype=keypoints.dtype)[None, None, :]
    scale = torso_length(keypoints)
    mask = torch.zeros(n, height, width, dtype=torch.bool, device=keypoints.device)

    def capsule(a: torch.Tensor, b: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        ax, ay, bx, by = (t[:, None, None] for t in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
        dx, dy = bx - ax, by - ay
        t = (((xs - ax) * dx + (ys - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp(0, 1)
        return (xs - ax - t * dx) ** 2 + (ys - ay - t * dy) ** 2 <= radius[:, None, None] ** 2

    for a, b in _MASK_BONES:
        both = (visible[:, a] & visible[:, b])[:, None, None]
        mask |= capsule(keypoints[:, a], keypoints[:, b], MASK_RADIUS * scale) & both
    hip_centre = (keypoints[:, _K["r_hip"]] + keypoints[:, _K["l_hip"]]) / 2
    mask |= capsule(keypoints[:, _K["neck"]], hip_centre, MASK_TORSO_RADIUS * scale)
    return mask[:, None].to(keypoints.dtype)


def pose_vector(keypoints: torch.Tensor, visible: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 18, 2) pixels + (n, 18) -> (n, 54): x / W, y / H and visibility per joint; invisible joints read (0, 0, 0)."""
    v = visible.to(keypoints.dtype)
    xy = keypoints / torch.tensor([width, height], dtype=keypoints.dtype, device=keypoints.device)
    return torch.cat([xy * v[..., None], v[..., None]], dim=-1).flatten(1)


def keypoints_from_vector(vector: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 54) (as :func:`pose_vector`, visibility as a probability) -> (keypoints (n, 18, 2) pixels
    inside the image, visible (n, 18) bool). The torso joints count as visible whatever the vector says."""
    values = vector.view(-1, NUM_KEYPOINTS, 3)
    scale = torch.tensor([width - 1, height - 1], dtype=vector.dtype, device=vector.device)
    keypoints = (values[..., :2] * torch.tensor([width, height], dtype=vector.dtype, device=vector.device)).clamp(min=0)
    keypoints = torch.minimum(keypoints, scale)
    visible = values[..., 2] > 0.5
    for name in ("neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip"):
        visible[:, _K[name]] = True
    return keypoints, visible
