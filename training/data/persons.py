"""Procedural persons: an articulated 2D figure driven by COCO-18 keypoints, with a LIP parsing map,
and the same person in any other pose — the ground truth that pose transfer needs.

No person data set (DeepFashion, Market-1501) can be downloaded here, so the pose-guided families
(``warp``: Soft-Gated Warping-GAN; ``person``: disentangled person generation) train on these.

    people = sample_identities(8, generator)                  # appearance, proportions, background
    condition = render_people(people, sample_poses(8, generator), height=128, width=64)
    target = render_people(people, sample_poses(8, generator), height=128, width=64)   # same people
    condition.images     # (8, 3, 128, 64) float32 in [0, 1]
    condition.parsing    # (8, 128, 64) int64, LIP classes (LIP_CLASSES)
    condition.keypoints  # (8, 18, 2) float32 pixel (x, y), COCO-18 order (COCO18)
    condition.visible    # (8, 18) bool

A pose is a set of joint angles (:class:`Pose`); forward kinematics with the person's proportions
gives the keypoints, and :func:`render_keypoints` draws a person from any keypoints (a client's
target pose too). Limbs are capsules (segments with a radius), the torso a quad around shoulders and
hips, the head an ellipse; they are painted back to front — the far arm and leg behind the torso
when the person turns — at ``supersample`` × the resolution, then pooled: colours averaged, the
parsing class of a pixel the one covering most of its sub-samples.

CLI, a preview of condition/target pairs with skeletons and parsing maps:

    python -m training.data.persons --out docs/img --n 8 --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import TypeVar

import torch

from schemas.warp import KEYPOINT_NAMES, LIP_CLASSES, LIP_PALETTE, SKELETON, TORSO

COCO18: tuple[str, ...] = KEYPOINT_NAMES
K = {name: i for i, name in enumerate(COCO18)}
L = {name: i for i, name in enumerate(LIP_CLASSES)}
TORSO_KEYPOINTS = tuple(K[name] for name in TORSO)

# Bone lengths as fractions of the person's height (top of head to soles).
_BONE = {
    "head": 0.13,
    "neck_to_nose": 0.12,
    "shoulder": 0.105,
    "upper_arm": 0.17,
    "forearm": 0.15,
    "torso": 0.30,
    "hip": 0.065,
    "thigh": 0.22,
    "shin": 0.21,
}
# Limb radii, same unit.
_RADIUS = {"arm": 0.030, "leg": 0.040, "neck": 0.030, "hand": 0.028, "shoe": 0.032, "eye": 0.011}

_SKIN = torch.tensor([[0.99, 0.87, 0.78], [0.92, 0.74, 0.60], [0.80, 0.60, 0.45], [0.62, 0.43, 0.30], [0.40, 0.27, 0.18]])
_HAIR = torch.tensor([[0.07, 0.06, 0.06], [0.24, 0.14, 0.08], [0.45, 0.29, 0.15], [0.85, 0.71, 0.42], [0.62, 0.62, 0.62]])

TOP_PATTERNS = ("solid", "stripes", "checks")
BOTTOMS = ("trousers", "skirt", "dress")  # dress: the top's colour and pattern down to the knees, parsed as one dress
BACKGROUNDS = ("gradient", "stripes", "tiles")


@dataclasses.dataclass
class Identity:
    """What stays the same across poses: appearance, proportions and the scene. Tensors of batch n."""

    skin: torch.Tensor  # (n, 3) RGB in [0, 1]
    hair: torch.Tensor  # (n, 3)
    long_hair: torch.Tensor  # (n,) bool: hair down to the shoulders, behind the head
    top: torch.Tensor  # (n, 3) main colour of the upper clothes
    top_second: torch.Tensor  # (n, 3) second colour of a striped or checked top
    top_pattern: torch.Tensor  # (n,) long index into TOP_PATTERNS
    pattern_period: torch.Tensor  # (n,) stripe/check period, fraction of the person's height
    long_sleeves: torch.Tensor  # (n,) bool
    bottom_kind: torch.Tensor  # (n,) long index into BOTTOMS
    bottom: torch.Tensor  # (n, 3) trousers or skirt colour
    shoes: torch.Tensor  # (n, 3)
    background: torch.Tensor  # (n, 2, 3) two colours of the background
    background_kind: torch.Tensor  # (n,) long index into BACKGROUNDS
    height: torch.Tensor  # (n,) the person's height as a fraction of the image height
    build: torch.Tensor  # (n,) width factor of shoulders, hips and limbs (1 = average)

    def __len__(self) -> int:
        return self.skin.shape[0]


@dataclasses.dataclass
class Pose:
    """Joint angles (radians) and placement, tensors of batch n. Limb angles are measured from
    straight down, positive away from the body's midline; flexions bend the lower limb back."""

    centre_x: torch.Tensor  # (n,) hip centre x, fraction of the image width
    centre_y: torch.Tensor  # (n,) hip centre y, fraction of the image height
    yaw: torch.Tensor  # (n,) turn in [-1, 1]: 0 faces the camera, +1 profile facing image right, -1 image left
    lean: torch.Tensor  # (n,) torso tilt from upright
    head_tilt: torch.Tensor  # (n,) head tilt relative to the torso
    r_arm: torch.Tensor  # (n,) right upper arm abduction
    r_elbow: torch.Tensor  # (n,) right elbow flexion
    l_arm: torch.Tensor
    l_elbow: torch.Tensor
    r_leg: torch.Tensor  # (n,) right thigh abduction (seen from the front)
    r_swing: torch.Tensor  # (n,) right thigh swing forward (+) / back (-) (seen in profile)
    r_knee: torch.Tensor  # (n,) right knee flexion (seen in profile)
    l_leg: torch.Tensor
    l_swing: torch.Tensor
    l_knee: torch.Tensor

    def __len__(self) -> int:
        return self.yaw.shape[0]


@dataclasses.dataclass
class PersonBatch:
    images: torch.Tensor  # (n, 3, H, W) float32 in [0, 1]
    parsing: torch.Tensor  # (n, H, W) int64 LIP class per pixel
    keypoints: torch.Tensor  # (n, 18, 2) float32 pixel (x, y) in COCO18 order; invisible ones still hold their position
    visible: torch.Tensor  # (n, 18) bool: inside the image and not hidden by the turn of the head


Batch = TypeVar("Batch", Identity, Pose, PersonBatch)


def rows(batch: Batch, index: slice) -> Batch:
    """Rows ``index`` of every tensor of an Identity, Pose or PersonBatch."""
    return type(batch)(*(getattr(batch, f.name)[index] for f in dataclasses.fields(batch)))


def concat(batches: list[Batch]) -> Batch:
    """Identities, poses or person batches of one kind, one after another."""
    return type(batches[0])(*(torch.cat([getattr(b, f.name) for b in batches]) for f in dataclasses.fields(batches[0])))


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _mix(anchors: torch.Tensor, generator: torch.Generator, n: int, jitter: float) -> torch.Tensor:
    """Colours between two random anchors, jittered: (n, 3)."""
    a, b = anchors[torch.randint(len(anchors), (n,), generator=generator)], anchors[torch.randint(len(anchors), (n,), generator=generator)]
    colour = torch.lerp(a, b, torch.rand(n, 1, generator=generator)) + jitter * torch.randn(n, 3, generator=generator)
    return colour.clamp(0, 1)


def _saturated(generator: torch.Generator, n: int) -> torch.Tensor:
    """Clothing colours: a random hue at random saturation and value, (n, 3)."""
    hue = torch.rand(n, 1, generator=generator)
    saturation, value = _uniform(generator, n, 0.25, 0.9)[:, None], _uniform(generator, n, 0.3, 0.95)[:, None]
    channel = (hue * 6 + torch.tensor([0.0, 4.0, 2.0])) % 6  # HSV -> RGB, one formula per channel
    rgb = value * (1 - saturation * (1 - (channel - 3).abs().sub(1).clamp(0, 1)).clamp(0, 1))
    return rgb.clamp(0, 1)


def sample_identities(n: int, generator: torch.Generator) -> Identity:
    """``n`` random people (appearance, proportions, background)."""
    return Identity(
        skin=_mix(_SKIN, generator, n, 0.03),
        hair=_mix(_HAIR, generator, n, 0.03),
        long_hair=torch.rand(n, generator=generator) < 0.4,
        top=_saturated(generator, n),
        top_second=_saturated(generator, n),
        top_pattern=torch.randint(len(TOP_PATTERNS), (n,), generator=generator),
        pattern_period=_uniform(generator, n, 0.035, 0.07),
        long_sleeves=torch.rand(n, generator=generator) < 0.5,
        bottom_kind=torch.multinomial(torch.tensor([0.6, 0.25, 0.15]), n, replacement=True, generator=generator),
        bottom=_saturated(generator, n) * 0.8,
        shoes=_saturated(generator, n) * 0.5,
        background=torch.stack([_saturated(generator, n) * 0.35 + 0.55, _saturated(generator, n) * 0.35 + 0.45], dim=1),
        background_kind=torch.randint(len(BACKGROUNDS), (n,), generator=generator),
        height=_uniform(generator, n, 0.80, 0.92),
        build=_uniform(generator, n, 0.85, 1.2),
    )


def sample_poses(n: int, generator: torch.Generator) -> Pose:
    """``n`` random plausible poses: standing, walking, arms from hanging to raised, turned up to profile."""
    u = lambda low, high: _uniform(generator, n, low, high)  # noqa: E731 - one draw per call, in this order
    yaw = torch.where(torch.rand(n, generator=generator) < 0.35, u(-1.0, 1.0), u(-0.3, 0.3))
    return Pose(
        centre_x=u(0.42, 0.58),
        centre_y=u(0.52, 0.56),
        yaw=yaw,
        lean=u(-0.12, 0.12),
        head_tilt=u(-0.2, 0.2),
        # squared draws: arms hang and elbows stay straight more often than not
        r_arm=0.1 + 2.4 * u(0, 1) ** 2,
        r_elbow=1.6 * u(0, 1) ** 2,
        l_arm=0.1 + 2.4 * u(0, 1) ** 2,
        l_elbow=1.6 * u(0, 1) ** 2,
        r_leg=u(-0.05, 0.35),
        r_swing=u(-0.5, 0.5),
        r_knee=u(0.0, 1.0),
        l_leg=u(-0.05, 0.35),
        l_swing=u(-0.5, 0.5),
        l_knee=u(0.0, 1.0),
    )


def _direction(angle: torch.Tensor, outward: float) -> torch.Tensor:
    """Unit vectors (n, 2) at ``angle`` from straight down, rotated toward image ``outward`` (-1 left, +1 right)."""
    return torch.stack([outward * torch.sin(angle), torch.cos(angle)], dim=-1)


def pose_keypoints(people: Identity, poses: Pose, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kinematics: (keypoints (n, 18, 2) pixel (x, y), visible (n, 18) bool) of each person in each pose."""
    assert len(people) == len(poses), f"{len(people)} people for {len(poses)} poses"
    n = len(people)
    size = (people.height * height)[:, None]  # person height in pixels, (n, 1)
    turn = poses.yaw * (math.pi / 2)
    facing = torch.cos(turn).abs()[:, None]  # 1 facing the camera, 0 in profile: widths shrink
    side = torch.sin(turn)[:, None]  # profile direction: +1 facing image right
    width_of = lambda fraction: fraction * size * people.build[:, None] * (0.3 + 0.7 * facing)  # noqa: E731
    hip_centre = torch.stack([poses.centre_x * width, poses.centre_y * height], dim=-1)
    up = -_direction(poses.lean, 1.0)
    neck = hip_centre + up * size * _BONE["torso"]
    across = torch.stack([-up[:, 1], up[:, 0]], dim=-1)  # unit vector toward image right, perpendicular to the torso
    head_up = -_direction(poses.lean + poses.head_tilt, 1.0)
    nose = neck + head_up * size * _BONE["neck_to_nose"] + torch.cat([side * size * 0.045, torch.zeros_like(side)], dim=-1)
    points = torch.zeros(n, 18, 2)
    points[:, K["neck"]], points[:, K["nose"]] = neck, nose
    # COCO's right is the person's: on the image's left while they face the camera.
    for prefix, outward in (("r", -1.0), ("l", 1.0)):
        shoulder = neck + across * outward * width_of(_BONE["shoulder"])
        hip = hip_centre + across * outward * width_of(_BONE["hip"])
        arm, elbow_flex = getattr(poses, f"{prefix}_arm"), getattr(poses, f"{prefix}_elbow")
        elbow = shoulder + _direction(arm + poses.lean * outward, outward) * size * _BONE["upper_arm"]
        wrist = elbow + _direction(arm - elbow_flex + poses.lean * outward, outward) * size * _BONE["forearm"]
        # A thigh's angle in the image mixes abduction (seen from the front) and swing (seen in profile).
        leg, swing, knee_flex = getattr(poses, f"{prefix}_leg"), getattr(poses, f"{prefix}_swing"), getattr(poses, f"{prefix}_knee")
        thigh_angle = leg * facing[:, 0] * outward + swing * side[:, 0]
        shin_angle = thigh_angle - knee_flex * side[:, 0]
        knee = hip + _direction(thigh_angle, 1.0) * size * _BONE["thigh"]
        ankle = knee + _direction(shin_angle, 1.0) * size * _BONE["shin"]
        for name, value in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist), ("hip", hip), ("knee", knee), ("ankle", ankle)):
            points[:, K[f"{prefix}_{name}"]] = value
        eye = (
            nose
            + head_up * size * 0.025
            + across * outward * size * 0.028 * facing
            + torch.cat([side * size * 0.01, torch.zeros_like(side)], -1)
        )
        ear = nose - torch.cat([side * size * 0.05, torch.zeros_like(side)], -1) + across * outward * size * 0.055 * facing
        points[:, K[f"{prefix}_eye"]], points[:, K[f"{prefix}_ear"]] = eye, ear
    return points, visibility(points, head_turn(points, size[:, 0]), height, width)


def head_turn(keypoints: torch.Tensor, person_height: torch.Tensor) -> torch.Tensor:
    """How far each head is turned, read from the keypoints: (n,) in [-1, 1], + toward image right.
    The nose sits 0.05 person heights beside the ears' midpoint in profile (see pose_keypoints)."""
    ears_mid = (keypoints[:, K["l_ear"], 0] + keypoints[:, K["r_ear"], 0]) / 2
    return ((keypoints[:, K["nose"], 0] - ears_mid) / (person_height * 0.05)).clamp(-1, 1)


def visibility(keypoints: torch.Tensor, turn: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(n, 18) bool: inside the image, and not behind the head — turning toward image right hides the
    left ear (|turn| > 0.3), then the left eye (> 0.6); the other way round for the right."""
    x, y = keypoints[..., 0], keypoints[..., 1]
    visible = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    visible[:, K["l_eye"]] &= turn <= 0.6
    visible[:, K["r_eye"]] &= turn >= -0.6
    visible[:, K["l_ear"]] &= turn <= 0.3
    visible[:, K["r_ear"]] &= turn >= -0.3
    return visible


class _Canvas:
    """Colours and parsing classes at supersampled resolution, painted layer by layer (back to front)."""

    def __init__(self, people: Identity, height: int, width: int, supersample: int) -> None:
        self.n, self.scale = len(people), supersample
        ys = (torch.arange(height * supersample) + 0.5) / supersample - 0.5
        xs = (torch.arange(width * supersample) + 0.5) / supersample - 0.5
        self.y, self.x = ys[None, :, None], xs[None, None, :]  # pixel coordinates of the sub-samples, (1, Hs, 1) / (1, 1, Ws)
        kind, colours = people.background_kind[:, None, None], people.background
        fraction = (self.y / (height - 1)).expand(self.n, -1, width * supersample)
        stripes = (torch.sin(self.x * (2 * math.pi / (width / 3))) > 0).float().expand_as(fraction)
        tiles = ((torch.sin(self.x * (2 * math.pi / (width / 2))) * torch.sin(self.y * (2 * math.pi / (width / 2)))) > 0).float()
        weight = torch.where(kind == 0, fraction, torch.where(kind == 1, 0.3 * stripes, 0.3 * tiles))
        floor = (fraction > 0.9).float() * 0.15  # a darker floor band
        self.rgb = torch.lerp(colours[:, 0, :, None, None], colours[:, 1, :, None, None], weight[:, None]) * (1 - floor[:, None])
        self.label = torch.zeros(self.n, height * supersample, width * supersample, dtype=torch.long)

    def paint(self, mask: torch.Tensor, colour: torch.Tensor, label: int | torch.Tensor) -> None:
        """mask (n, Hs, Ws) bool; colour (n, 3) or (n, 3, Hs, Ws); label an int or (n,) long."""
        if colour.dim() == 2:
            colour = colour[:, :, None, None]
        self.rgb = torch.where(mask[:, None], colour, self.rgb)
        label = torch.as_tensor(label).reshape(-1, 1, 1) if torch.is_tensor(label) else torch.tensor(label)
        self.label = torch.where(mask, label, self.label)

    def capsule(self, a: torch.Tensor, b: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
        """Sub-samples within ``radius`` (n,) of the segments a-b ((n, 2) each): (n, Hs, Ws) bool."""
        ax, ay, bx, by = (t[:, None, None] for t in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
        dx, dy = bx - ax, by - ay
        t = (((self.x - ax) * dx + (self.y - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp(0, 1)
        return (self.x - ax - t * dx) ** 2 + (self.y - ay - t * dy) ** 2 <= radius[:, None, None] ** 2

    def quad(self, corners: torch.Tensor) -> torch.Tensor:
        """Sub-samples inside the convex quad with corners (n, 4, 2) in either winding order: (n, Hs, Ws) bool."""
        signs = []
        for i in range(4):
            a, b = corners[:, i], corners[:, (i + 1) % 4]
            signs.append(
                (b[:, 0, None, None] - a[:, 0, None, None]) * (self.y - a[:, 1, None, None])
                - (b[:, 1, None, None] - a[:, 1, None, None]) * (self.x - a[:, 0, None, None])
            )
        stacked = torch.stack(signs)
        return (stacked >= 0).all(0) | (stacked <= 0).all(0)

    def ellipse(self, centre: torch.Tensor, radius_x: torch.Tensor, radius_y: torch.Tensor) -> torch.Tensor:
        return (
            ((self.x - centre[:, 0, None, None]) / radius_x[:, None, None]) ** 2
            + ((self.y - centre[:, 1, None, None]) / radius_y[:, None, None]) ** 2
        ) <= 1

    def pooled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (n, 3, H, W), parsing (n, H, W)): mean colour and majority class of each pixel's sub-samples."""
        k = self.scale
        images = torch.nn.functional.avg_pool2d(self.rgb, k)
        votes = torch.nn.functional.one_hot(self.label, len(LIP_CLASSES)).permute(0, 3, 1, 2).float()
        parsing = torch.nn.functional.avg_pool2d(votes, k).argmax(1)
        return images.clamp(0, 1), parsing


def render_keypoints(people: Identity, keypoints: torch.Tensor, height: int, width: int, supersample: int = 2) -> PersonBatch:
    """Draw each person with its keypoints (n, 18, 2) pixel (x, y); visibility is recomputed from the
    image bounds and the head's turn (read from where the nose sits between the ears)."""
    assert keypoints.shape == (len(people), 18, 2), f"keypoints must be (n, 18, 2), got {tuple(keypoints.shape)}"
    p = keypoints.float()
    n = len(people)
    canvas = _Canvas(people, height, width, supersample)
    size = people.height * height
    build = size * people.build
    neck, nose = p[:, K["neck"]], p[:, K["nose"]]
    hip_centre = (p[:, K["r_hip"]] + p[:, K["l_hip"]]) / 2
    turn = head_turn(p, size)
    facing = 1 - turn.abs()
    # The far side of a turned person goes behind the torso: the left when they face image right.
    far_left = turn > 0.25
    far_right = turn < -0.25

    is_dress = people.bottom_kind == BOTTOMS.index("dress")
    stripes = torch.sin(canvas.y * (2 * math.pi) / (people.pattern_period * size)[:, None, None]) > 0
    checks = stripes ^ (torch.sin(canvas.x * (2 * math.pi) / (people.pattern_period * size)[:, None, None]) > 0)
    pattern = torch.where(
        people.top_pattern[:, None, None] == 1, stripes, torch.where(people.top_pattern[:, None, None] == 2, checks, False)
    )
    top_rgb = torch.where(pattern[:, None], people.top_second[:, :, None, None], people.top[:, :, None, None])
    top_label = torch.where(is_dress, L["dress"], L["upper_clothes"])

    head_radius = size * _BONE["head"] / 2
    head_centre = nose + (nose - neck) * 0.1
    hair_centre = head_centre - torch.stack([turn * head_radius * 0.35, head_radius * 0.15], dim=-1)
    if people.long_hair.any():
        back_hair = canvas.ellipse(
            head_centre + torch.stack([torch.zeros(n), head_radius * 0.9], -1), head_radius * 1.15, head_radius * 1.8
        )
        canvas.paint(back_hair & people.long_hair[:, None, None], people.hair, L["hair"])

    def limb(prefix: str) -> None:
        leg_class = L["left_leg"] if prefix == "l" else L["right_leg"]
        shoe_class = L["left_shoe"] if prefix == "l" else L["right_shoe"]
        hip, knee, ankle = p[:, K[f"{prefix}_hip"]], p[:, K[f"{prefix}_knee"]], p[:, K[f"{prefix}_ankle"]]
        leg_radius = _RADIUS["leg"] * build
        trousers = people.bottom_kind == BOTTOMS.index("trousers")
        leg_colour = torch.where(trousers[:, None], people.bottom, people.skin)
        leg_label = torch.where(trousers, L["pants"], leg_class)
        canvas.paint(canvas.capsule(hip, knee, leg_radius) | canvas.capsule(knee, ankle, leg_radius * 0.85), leg_colour, leg_label)
        foot = ankle + torch.stack([turn * size * 0.05, torch.full((n,), 0.0)], -1) + torch.stack([torch.zeros(n), size * 0.015], -1)
        canvas.paint(canvas.capsule(ankle, foot, _RADIUS["shoe"] * build), people.shoes, shoe_class)

    def arm(prefix: str) -> None:
        arm_class = L["left_arm"] if prefix == "l" else L["right_arm"]
        shoulder, elbow, wrist = p[:, K[f"{prefix}_shoulder"]], p[:, K[f"{prefix}_elbow"]], p[:, K[f"{prefix}_wrist"]]
        radius = _RADIUS["arm"] * build
        upper, lower = canvas.capsule(shoulder, elbow, radius), canvas.capsule(elbow, wrist, radius * 0.9)
        sleeve_end = torch.where(people.long_sleeves[:, None], wrist, shoulder + (elbow - shoulder) * 0.55)
        sleeve = canvas.capsule(shoulder, sleeve_end, radius * 1.1)
        canvas.paint(upper | lower, people.skin, arm_class)
        canvas.paint(sleeve, top_rgb, top_label)
        canvas.paint(canvas.capsule(wrist, wrist, _RADIUS["hand"] * build), people.skin, arm_class)

    def torso() -> None:
        pad = torch.stack([0.02 * build, torch.zeros(n)], -1)
        corners = torch.stack([p[:, K["r_shoulder"]] - pad, p[:, K["l_shoulder"]] + pad, p[:, K["l_hip"]] + pad, p[:, K["r_hip"]] - pad], 1)
        # A capsule down the spine keeps a body in profile, where the shoulder-hip quad collapses to a line;
        # it ends above the hips so that its round end does not bulge below them.
        body = canvas.quad(corners) | canvas.capsule(
            neck + (hip_centre - neck) * 0.08, neck + (hip_centre - neck) * 0.75, (0.075 + 0.02 * facing) * build
        )
        body |= canvas.capsule(p[:, K["r_shoulder"]], p[:, K["l_shoulder"]], 0.035 * build)
        canvas.paint(body, top_rgb, top_label)
        skirt_kind = people.bottom_kind != BOTTOMS.index("trousers")
        knee_y = (p[:, K["r_knee"], 1] + p[:, K["l_knee"], 1]) / 2
        hem = hip_centre[:, 1] + (knee_y - hip_centre[:, 1]) * 0.85
        flare = (0.10 + 0.04 * facing) * build
        skirt = canvas.quad(
            torch.stack(
                [
                    p[:, K["r_hip"]] - pad,
                    p[:, K["l_hip"]] + pad,
                    torch.stack([hip_centre[:, 0] + flare, hem], -1),
                    torch.stack([hip_centre[:, 0] - flare, hem], -1),
                ],
                1,
            )
        )
        skirt_rgb = torch.where(is_dress[:, None, None, None], top_rgb, people.bottom[:, :, None, None])
        canvas.paint(skirt & skirt_kind[:, None, None], skirt_rgb, torch.where(is_dress, L["dress"], L["skirt"]))

    for prefix, far in (("l", far_left), ("r", far_right)):  # far legs first: a nearer one covers them
        _masked(canvas, far, lambda prefix=prefix: limb(prefix))
    for prefix, far in (("l", far_left), ("r", far_right)):
        _masked(canvas, ~far, lambda prefix=prefix: limb(prefix))
    for prefix, far in (("l", far_left), ("r", far_right)):
        _masked(canvas, far, lambda prefix=prefix: arm(prefix))
    torso()
    canvas.paint(canvas.capsule(neck, head_centre, _RADIUS["neck"] * build), people.skin, L["face"])
    canvas.paint(canvas.ellipse(head_centre, head_radius * (0.8 + 0.1 * facing), head_radius), people.skin, L["face"])
    hair_cap = canvas.ellipse(hair_centre, head_radius * (0.88 + 0.1 * facing), head_radius * 0.95) & (
        canvas.y < head_centre[:, 1, None, None] - head_radius[:, None, None] * 0.15
    )
    canvas.paint(hair_cap, people.hair, L["hair"])
    for prefix, far in (("l", far_left), ("r", far_right)):
        _masked(canvas, ~far, lambda prefix=prefix: arm(prefix))
    eye_visible = torch.stack([turn >= -0.6, turn <= 0.6], 1)  # r_eye, l_eye, as in visibility()
    for j, name in enumerate(("r_eye", "l_eye")):
        eye = canvas.capsule(p[:, K[name]], p[:, K[name]], _RADIUS["eye"] * size) & eye_visible[:, j, None, None]
        canvas.paint(eye, torch.full((n, 3), 0.08), L["face"])
    images, parsing = canvas.pooled()
    return PersonBatch(images, parsing, p, visibility(p, turn, height, width))


def _masked(canvas: _Canvas, which: torch.Tensor, draw) -> None:
    """Run ``draw`` (which paints on ``canvas``) for the batch members where ``which`` (n,) is true only."""
    if not which.any():
        return
    rgb, label = canvas.rgb, canvas.label
    draw()
    keep = which[:, None, None]
    canvas.rgb = torch.where(keep[:, None], canvas.rgb, rgb)
    canvas.label = torch.where(keep, canvas.label, label)


def render_people(people: Identity, poses: Pose, height: int = 128, width: int = 64, supersample: int = 2) -> PersonBatch:
    """Each person in each pose (same batch index): image, parsing, keypoints and visibility."""
    keypoints, _ = pose_keypoints(people, poses, height, width)
    return render_keypoints(people, keypoints, height, width, supersample)


def render_pose_pairs(
    n: int, height: int = 128, width: int = 64, *, seed: int | None = None, generator: torch.Generator | None = None, supersample: int = 2
) -> tuple[PersonBatch, PersonBatch]:
    """``n`` people, each rendered in two random poses: (condition, target), the target being the
    ground truth of transferring the condition image to the target keypoints."""
    if (seed is None) == (generator is None):
        raise ValueError("give exactly one of seed or generator")
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    people = sample_identities(n, generator)
    first, second = sample_poses(n, generator), sample_poses(n, generator)
    return render_people(people, first, height, width, supersample), render_people(people, second, height, width, supersample)


PARSING_COLOURS = torch.tensor(LIP_PALETTE, dtype=torch.float32) / 255  # parsing previews, one colour per LIP class


def colour_parsing(parsing: torch.Tensor) -> torch.Tensor:
    """(n, H, W) LIP classes -> (n, 3, H, W) colours in [0, 1]."""
    return PARSING_COLOURS[parsing].permute(0, 3, 1, 2)


def draw_skeleton(images: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Copies of images (n, 3, H, W) with the visible bones and joints drawn in (for previews)."""
    import numpy as np
    from PIL import Image, ImageDraw

    out = []
    for image, points, seen in zip(images, keypoints.tolist(), visible.tolist()):
        canvas = Image.fromarray((image.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy())
        pen = ImageDraw.Draw(canvas)
        for a, b in SKELETON:
            if seen[a] and seen[b]:
                pen.line([tuple(points[a]), tuple(points[b])], fill=(255, 255, 255), width=1)
        for (x, y), s in zip(points, seen):
            if s:
                pen.point((x, y), fill=(255, 0, 0))
        out.append(torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def main(argv: list[str] | None = None) -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description="Preview procedural persons: rows of condition | skeleton | parsing | target | ...")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument("--n", type=int, default=8, help="people")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    condition, target = render_pose_pairs(args.n, args.height, args.width, seed=args.seed)
    columns = [
        condition.images,
        draw_skeleton(condition.images, condition.keypoints, condition.visible),
        colour_parsing(condition.parsing),
        target.images,
        draw_skeleton(target.images, target.keypoints, target.visible),
        colour_parsing(target.parsing),
    ]
    gap = 2
    h, w = args.height, args.width
    sheet = torch.ones(3, args.n * (h + gap) + gap, len(columns) * (w + gap) + gap)
    for row in range(args.n):
        for col, images in enumerate(columns):
            top, left = gap + row * (h + gap), gap + col * (w + gap)
            sheet[:, top : top + h, left : left + w] = images[row]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "persons.png"
    pixels = (sheet.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    image = Image.fromarray(pixels)
    image.resize((image.width * 2, image.height * 2), Image.NEAREST).save(path)
    print(f"wrote {path}: rows of condition | keypoints | parsing | target | keypoints | parsing")


if __name__ == "__main__":
    main()
