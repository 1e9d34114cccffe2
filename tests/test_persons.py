"""Procedural persons (training/data/persons.py): keypoints, parsing and the same person in another pose."""

from __future__ import annotations

import math

import pytest
import torch

from training.data import persons
from training.data.persons import BOTTOMS, COCO18, LIP_CLASSES, K, L


def _pose(n: int, **angles: float) -> persons.Pose:
    """A standing pose facing the camera, with some angles overridden."""
    values = {f.name: 0.0 for f in persons.dataclasses.fields(persons.Pose)}
    values.update(centre_x=0.5, centre_y=0.54, r_arm=0.3, l_arm=0.3, r_leg=0.1, l_leg=0.1)
    values.update(angles)
    return persons.Pose(**{name: torch.full((n,), float(value)) for name, value in values.items()})


def _people(n: int, seed: int = 0, **fixed) -> persons.Identity:
    people = persons.sample_identities(n, torch.Generator().manual_seed(seed))
    for name, value in fixed.items():
        setattr(people, name, torch.as_tensor(value).expand_as(getattr(people, name)).clone())
    return people


def _far_from_the_person(parsing: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: background pixels at least 2 px from any person pixel (edge pixels mix colours)."""
    person = (parsing != 0).float()[None, None]
    return torch.nn.functional.max_pool2d(person, 5, stride=1, padding=2)[0, 0] == 0


def test_shapes_ranges_and_determinism():
    condition, target = persons.render_pose_pairs(6, 128, 64, seed=3)
    again, _ = persons.render_pose_pairs(6, 128, 64, seed=3)
    assert condition.images.shape == (6, 3, 128, 64) and condition.images.dtype == torch.float32
    assert 0 <= condition.images.min() and condition.images.max() <= 1
    assert condition.parsing.shape == (6, 128, 64) and condition.parsing.dtype == torch.int64
    assert 0 <= condition.parsing.min() and condition.parsing.max() < len(LIP_CLASSES)
    assert condition.keypoints.shape == (6, 18, 2) and condition.visible.shape == (6, 18) and len(COCO18) == 18
    assert torch.equal(condition.images, again.images) and torch.equal(condition.parsing, again.parsing)
    assert not torch.equal(condition.keypoints, target.keypoints), "two poses per person"
    wide = persons.render_people(_people(2), _pose(2), 128, 128)
    assert wide.images.shape == (2, 3, 128, 128), "128 x 128 as well as 128 x 64"


def test_the_torso_is_always_visible_in_sampled_poses():
    condition, target = persons.render_pose_pairs(64, 128, 64, seed=5)
    for batch in (condition, target):
        assert batch.visible[:, list(persons.TORSO_KEYPOINTS)].all()
        assert batch.visible[:, K["nose"]].all()


def test_the_same_person_in_another_pose_keeps_clothes_and_background():
    people = _people(4, top_pattern=0, bottom_kind=BOTTOMS.index("trousers"))
    first = persons.render_people(people, _pose(4))
    second = persons.render_people(people, _pose(4, r_arm=2.2, l_arm=1.2, l_elbow=1.0, centre_x=0.45, r_swing=0.3))
    for i in range(4):
        for label in (L["upper_clothes"], L["pants"]):
            a = first.images[i][:, first.parsing[i] == label].median(dim=1).values
            b = second.images[i][:, second.parsing[i] == label].median(dim=1).values
            assert torch.allclose(a, b, atol=1e-6), f"person {i}: {LIP_CLASSES[label]} colour changes with the pose"
        background = _far_from_the_person(first.parsing[i]) & _far_from_the_person(second.parsing[i])
        assert background.float().mean() > 0.3
        assert torch.allclose(first.images[i][:, background], second.images[i][:, background]), "the scene stays"
    other = persons.render_people(_people(4, seed=9, top_pattern=0), _pose(4))
    assert not torch.allclose(first.images, other.images), "other people look different"


def test_parsing_follows_the_keypoints():
    people = _people(3, bottom_kind=BOTTOMS.index("trousers"), long_sleeves=True)
    down = persons.render_people(people, _pose(3))
    raised = persons.render_people(people, _pose(3, r_arm=math.pi - 0.1))
    for batch in (down, raised):
        for i in range(3):
            x, y = batch.keypoints[i, K["r_wrist"]].round().long().tolist()
            assert batch.parsing[i, y, x] in (L["right_arm"], L["upper_clothes"]), "a wrist is on its arm"
            hx, hy = ((batch.keypoints[i, K["r_hip"]] + batch.keypoints[i, K["l_hip"]]) / 2).round().long().tolist()
            assert batch.parsing[i, hy, hx] in (L["upper_clothes"], L["pants"])
            nx, ny = batch.keypoints[i, K["nose"]].round().long().tolist()
            assert batch.parsing[i, ny, nx] == L["face"]
    shoulder_y = raised.keypoints[:, K["r_shoulder"], 1]
    assert (raised.keypoints[:, K["r_wrist"], 1] < shoulder_y - 10).all(), "a raised arm ends above the shoulder"
    above = [(raised.parsing[i, : int(shoulder_y[i]) - 4] == L["upper_clothes"]).sum() for i in range(3)]
    assert all(a > 20 for a in above), "the long sleeve goes up with the arm"


def test_skirts_dresses_and_trousers_parse_as_such():
    for kind, label in (("trousers", "pants"), ("skirt", "skirt"), ("dress", "dress")):
        batch = persons.render_people(_people(2, bottom_kind=BOTTOMS.index(kind)), _pose(2))
        assert (batch.parsing == L[label]).flatten(1).sum(1).gt(30).all(), kind
    dress = persons.render_people(_people(2, bottom_kind=BOTTOMS.index("dress")), _pose(2))
    assert not (dress.parsing == L["upper_clothes"]).any(), "a dress is one garment"


def test_turning_hides_the_far_eye_and_ear_and_leaving_the_image_hides_a_joint():
    people = _people(1)
    front = persons.render_people(people, _pose(1))
    assert front.visible.all()
    right = persons.render_people(people, _pose(1, yaw=1.0))
    assert not right.visible[0, K["l_eye"]] and not right.visible[0, K["l_ear"]] and right.visible[0, K["r_ear"]]
    left = persons.render_people(people, _pose(1, yaw=-1.0))
    assert not left.visible[0, K["r_eye"]] and not left.visible[0, K["r_ear"]] and left.visible[0, K["l_eye"]]
    off = persons.render_people(people, _pose(1, centre_x=0.08, r_arm=1.57))
    assert off.keypoints[0, K["r_wrist"], 0] < 0 and not off.visible[0, K["r_wrist"]] and off.visible[0, K["neck"]]


def test_rendering_given_keypoints_matches_rendering_the_pose():
    people, pose = _people(2), _pose(2, r_arm=1.0, yaw=0.4)
    keypoints, visible = persons.pose_keypoints(people, pose, 128, 64)
    direct = persons.render_keypoints(people, keypoints, 128, 64)
    assert torch.equal(direct.images, persons.render_people(people, pose).images)
    assert torch.equal(direct.visible, visible)
    with pytest.raises(AssertionError, match=r"\(n, 18, 2\)"):
        persons.render_keypoints(people, keypoints[:, :17], 128, 64)


def test_preview_cli_writes_a_sheet(tmp_path):
    persons.main(["--out", str(tmp_path), "--n", "2"])
    from PIL import Image

    assert Image.open(tmp_path / "persons.png").size == (2 * (6 * 66 + 2), 2 * (2 * 130 + 2))
