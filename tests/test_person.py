"""The person family's model, ops, schemas, checkpoint, trainer and evaluation (no service)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from deployments.person import body, ops
from deployments.person.checkpoint import Example, export, load_model
from deployments.person.networks import FACTORS, DisentangledPersonGenerator, PersonConfig
from schemas import person as schema
from schemas.common import STRIP_GAP, Limits
from schemas.warp import KEYPOINT_NAMES, check_keypoints
from training.data import persons

HEIGHT, WIDTH = 32, 16
TINY = PersonConfig(
    height=HEIGHT,
    width=WIDTH,
    channels=4,
    roi_size=4,
    roi_dim=4,
    background_dim=8,
    pose_dim=8,
    pose_hidden=16,
    unet_depth=2,
    mapping_hidden=16,
    mapping_layers=1,
)
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "person-persons"


@pytest.fixture(scope="module")
def model() -> DisentangledPersonGenerator:
    torch.manual_seed(0)
    return DisentangledPersonGenerator(TINY).eval()


def people(n: int, seed: int, height: int = HEIGHT, width: int = WIDTH) -> tuple[ops.People, persons.PersonBatch]:
    generator = torch.Generator().manual_seed(seed)
    batch = persons.render_people(persons.sample_identities(n, generator), persons.sample_poses(n, generator), height, width)
    return ops.People(batch.images * 2 - 1, batch.keypoints, batch.visible), batch


# ---- body geometry ------------------------------------------------------------------------------
def test_roi_boxes_hold_their_joints_and_absent_rois_are_flagged():
    person, _ = people(6, 1)
    boxes, present = body.roi_boxes(person.keypoints, person.visible)
    assert boxes.shape == (6, body.NUM_ROIS, 4) and present.shape == (6, body.NUM_ROIS)
    names = list(body.BODY_ROIS)
    for r, (joints, _) in enumerate(body.BODY_ROIS.values()):
        for joint in joints:
            j = KEYPOINT_NAMES.index(joint)
            inside = ((person.keypoints[:, j] >= boxes[:, r, :2]) & (person.keypoints[:, j] <= boxes[:, r, 2:])).all(-1)
            assert (inside | ~person.visible[:, j]).all(), f"{joint} outside the {names[r]} box"
    assert present[:, names.index("upper_body")].all(), "the torso is always there"
    hidden = person.visible.clone()
    for joint in ("r_shoulder", "r_elbow", "r_wrist"):
        hidden[:, KEYPOINT_NAMES.index(joint)] = False
    assert not body.roi_boxes(person.keypoints, hidden)[1][:, names.index("right_arm")].any()


def test_crop_rois_reads_the_box_of_the_image_at_any_feature_scale():
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(16.0), indexing="ij")
    image = torch.stack([xs, ys])[None]  # channel 0 = x, channel 1 = y of each pixel
    boxes = torch.tensor([[[4.0, 10.0, 7.0, 13.0]] * body.NUM_ROIS])
    crops = body.crop_rois(image, boxes, (32, 16), 4)
    assert crops.shape == (1, body.NUM_ROIS, 2, 4, 4)
    assert torch.allclose(crops[0, 0, 0, 0], torch.tensor([4.0, 5.0, 6.0, 7.0]), atol=1e-4)
    assert torch.allclose(crops[0, 0, 1, :, 0], torch.tensor([10.0, 11.0, 12.0, 13.0]), atol=1e-4)
    half = torch.nn.functional.avg_pool2d(image, 2)  # the same box out of a half-resolution map
    assert torch.allclose(body.crop_rois(half, boxes, (32, 16), 2)[0, 0].mean((1, 2)), torch.tensor([5.5, 11.5]), atol=0.3)


def test_the_pose_mask_covers_the_person():
    person, batch = people(8, 2, 64, 32)
    mask = body.pose_mask(person.keypoints, person.visible, 64, 32)[:, 0]
    assert mask.shape == (8, 64, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}
    on_person = (batch.parsing > 0).float()
    assert (mask * on_person).sum() / on_person.sum() > 0.9, "the coarse mask covers nearly all of the rendered person"
    assert mask.mean() < 0.6, "and leaves most of the background out"


def test_the_pose_vector_round_trips_and_keeps_the_torso():
    person, _ = people(4, 3)
    vector = body.pose_vector(person.keypoints, person.visible, HEIGHT, WIDTH)
    assert vector.shape == (4, 54) and vector.min() >= 0 and vector.max() <= 1
    keypoints, visible = body.keypoints_from_vector(vector, HEIGHT, WIDTH)
    assert torch.equal(visible, person.visible)
    assert torch.allclose(keypoints[visible], person.keypoints[visible], atol=1e-4)
    _, none_visible = body.keypoints_from_vector(torch.zeros(1, 54), HEIGHT, WIDTH)
    assert none_visible.sum() == 5, "decoded poses always show the torso"


# ---- networks and ops ---------------------------------------------------------------------------
def test_shapes_of_every_factor_and_the_image(model):
    person, _ = people(3, 4)
    embeddings = model.encode(person.images, person.keypoints, person.visible)
    assert embeddings.foreground.shape == (3, 7 * TINY.roi_dim)
    assert embeddings.background.shape == (3, TINY.background_dim) and embeddings.pose.shape == (3, TINY.pose_dim)
    image = model.decode(embeddings.foreground, embeddings.background, person.keypoints, person.visible)
    assert image.shape == (3, 3, HEIGHT, WIDTH) and image.abs().max() <= 1
    for factor in FACTORS:
        assert model.sample_embeddings(factor, torch.randn(2, TINY.embedding_dim(factor))).shape == (2, TINY.embedding_dim(factor))
    with pytest.raises(AssertionError):
        model.encode(person.images[:, :, :16], person.keypoints, person.visible)


def test_each_encoder_reads_only_its_side_of_the_pose_mask(model):
    person, _ = people(2, 5)
    mask = body.pose_mask(person.keypoints, person.visible, HEIGHT, WIDTH)
    noise = torch.rand(person.images.shape) * 2 - 1
    outside_changed = person.images * mask + noise * (1 - mask)
    inside_changed = person.images * (1 - mask) + noise * mask
    fg = model.encode_foreground(person.images, person.keypoints, person.visible)
    bg = model.encode_background(person.images, person.keypoints, person.visible)
    # exact: the pose mask is 0/1, so an encoder's masked input is the same bits whatever the other side holds
    assert torch.equal(model.encode_foreground(outside_changed, person.keypoints, person.visible), fg)
    assert not torch.equal(model.encode_background(outside_changed, person.keypoints, person.visible), bg)
    assert torch.equal(model.encode_background(inside_changed, person.keypoints, person.visible), bg)
    assert not torch.equal(model.encode_foreground(inside_changed, person.keypoints, person.visible), fg)


def test_swapping_nothing_reproduces_the_reconstruction(model):
    person, _ = people(3, 6)
    reconstruction = ops.reconstruct(model, person).images
    # exact: reconstruct, recompose with itself and forward run the same encoders and decoder on the same batch
    with torch.no_grad():
        assert torch.equal(reconstruction, model(person.images, person.keypoints, person.visible))
    assert torch.equal(ops.recompose(model, person, person, person.keypoints, person.visible).images, reconstruction)
    other, _ = people(3, 7)
    assert not torch.equal(ops.recompose(model, person, other, person.keypoints, person.visible).images, reconstruction)
    assert torch.equal(ops.recompose(model, person, person, person.keypoints, person.visible).images, reconstruction), "deterministic"


def test_sampling_is_seeded_and_keeps_what_it_is_told(model):
    person, _ = people(2, 8)
    first = ops.sample(model, [1, 2], frozenset(), None)
    assert torch.equal(first.images, ops.sample(model, [1, 2], frozenset(), None).images)
    assert not torch.equal(first.images[0], first.images[1])
    kept = ops.sample(model, [1, 2], frozenset({"pose"}), person)
    assert torch.equal(kept.keypoints, person.keypoints) and torch.equal(kept.visible, person.visible)
    all_but_background = ops.sample(model, [3, 3], frozenset({"foreground", "pose"}), person)
    expected = model.decode(
        model.encode_foreground(person.images, person.keypoints, person.visible),
        model.sample_embeddings("background", ops.factor_noise(model, [3, 3])["background"]),
        person.keypoints,
        person.visible,
    )
    assert torch.allclose(all_but_background.images, expected)
    noise_a, noise_b = ops.factor_noise(model, [9]), ops.factor_noise(model, [9, 10])
    assert all(torch.equal(noise_a[f][0], noise_b[f][0]) for f in FACTORS), "a seed's noise does not depend on its batch"


def test_interpolation_runs_from_start_to_end_in_one_factor(model):
    person, _ = people(2, 9)
    start, end = (ops.People(person.images[i : i + 1], person.keypoints[i : i + 1], person.visible[i : i + 1]) for i in (0, 1))
    strip = ops.interpolate(model, "background", start, end, 4)
    assert strip.images.shape == (4, 3, HEIGHT, WIDTH)
    assert torch.allclose(strip.images[0], ops.reconstruct(model, start).images[0], atol=1e-6)
    assert torch.allclose(strip.images[-1], ops.recompose(model, start, end, start.keypoints, start.visible).images[0], atol=1e-6)
    poses = ops.interpolate(model, "pose", start, end, 3)
    assert poses.keypoints.shape == (3, 18, 2) and not torch.equal(poses.keypoints[0], poses.keypoints[2])


# ---- checkpoint ---------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_refusals(model, tmp_path):
    person, batch = people(1, 10)
    example = Example(
        (batch.images[0].permute(1, 2, 0) * 255).round().byte().numpy(),
        [[float(x), float(y)] if v else None for (x, y), v in zip(batch.keypoints[0].tolist(), batch.visible[0].tolist())],
    )
    manifest = export(model, tmp_path, "person-tiny", "tiny", [example])
    assert manifest["family"] == "person" and manifest["image_size"] == [HEIGHT, WIDTH] and len(manifest["examples"]) == 1
    assert manifest["embedding_dims"] == {"foreground": 28, "background": 8, "pose": 8}
    loaded = load_model((tmp_path / "weights.safetensors").read_bytes(), manifest)
    assert torch.equal(ops.reconstruct(loaded, person).images, ops.reconstruct(model, person).images)
    with pytest.raises(ValueError, match="format"):
        load_model(b"", {**manifest, "format": "warp-gan"})
    with pytest.raises(ValueError, match="unknown fields"):
        load_model((tmp_path / "weights.safetensors").read_bytes(), {**manifest, "arch": {**manifest["arch"], "depth": 3}})
    with pytest.raises(ValueError, match="do not match"):
        load_model((tmp_path / "weights.safetensors").read_bytes(), {**manifest, "arch": {**manifest["arch"], "unet_depth": 1}})


# ---- schemas ------------------------------------------------------------------------------------
def _manifest(examples: dict | None = None) -> dict:
    return {"name": "person-tiny", "image_size": [HEIGHT, WIDTH], "examples": examples or {}}


def _points() -> list:
    _, batch = people(1, 11)
    return [[float(x), float(y)] if v else None for (x, y), v in zip(batch.keypoints[0].tolist(), batch.visible[0].tolist())]


A, B, C = "a" * 64, "b" * 64, "c" * 64
LIMITS = Limits(max_image_pixels=4096 * 4096)  # the settings' default


def test_recompose_resolves_keypoints_from_examples_and_the_pose_from_its_source():
    points = _points()
    other = [[p[0], min(p[1] + 1, HEIGHT - 1)] if p else None for p in points]
    manifest = _manifest({A: {"keypoints": points}, C: {"keypoints": other}})
    prepared = schema.prepare_recompose(
        schema.RecomposeInputs(foreground=A, background=B, background_keypoints=points),
        schema.RecomposeParams(),
        manifest,
        lambda: 0,
        LIMITS,
    )
    assert prepared["pose_keypoints"] == prepared["foreground_keypoints"], "no pose given: the foreground's"
    by_example = schema.prepare_recompose(
        schema.RecomposeInputs(foreground=A, background=B, background_keypoints=points, pose=C),
        schema.RecomposeParams(),
        manifest,
        lambda: 0,
        LIMITS,
    )
    assert by_example["pose_keypoints"] == check_keypoints(other, "x", HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="background_keypoints is required"):
        schema.prepare_recompose(schema.RecomposeInputs(foreground=A, background=B), schema.RecomposeParams(), manifest, lambda: 0, LIMITS)
    with pytest.raises(ValueError, match="pose_keypoints is required"):
        schema.prepare_recompose(
            schema.RecomposeInputs(foreground=A, background=A, pose=B), schema.RecomposeParams(), manifest, lambda: 0, LIMITS
        )


@pytest.mark.parametrize(
    "change, detail",
    [
        (lambda k: k[:17], "18 entries"),
        (lambda k: [[WIDTH + 5.0, 3.0]] + k[1:], "outside"),
        (lambda k: [k[0], None] + k[2:], "torso"),
        (lambda k: [[float("inf"), 2.0]] + k[1:], "finite"),
    ],
)
def test_bad_keypoints_are_refused_with_their_field_named(change, detail):
    with pytest.raises(ValueError, match=detail) as error:  # a non-finite number: already the inputs model refuses it
        inputs = schema.RecomposeInputs(foreground=A, foreground_keypoints=change(_points()), background=B, background_keypoints=_points())
        schema.prepare_recompose(inputs, schema.RecomposeParams(), _manifest(), lambda: 0, LIMITS)
    assert "foreground_keypoints" in str(error.value)


def test_sample_and_interpolate_contracts():
    manifest = _manifest({A: {"keypoints": _points()}})
    assert schema.prepare_sample(schema.SampleInputs(), schema.SampleParams(), manifest, lambda: 42, LIMITS) == {"seed": 42, "keep": []}
    kept = schema.prepare_sample(
        schema.SampleInputs(image=A, seed=1), schema.SampleParams(keep=["pose", "foreground"]), manifest, lambda: 0, LIMITS
    )
    assert kept["keep"] == ["foreground", "pose"] and kept["seed"] == 1 and len(kept["keypoints"]) == 18
    with pytest.raises(ValueError, match="needs inputs.image"):
        schema.prepare_sample(schema.SampleInputs(), schema.SampleParams(keep=["pose"]), manifest, lambda: 0, LIMITS)
    with pytest.raises(ValueError, match="nothing of it would be used"):
        schema.prepare_sample(schema.SampleInputs(image=A), schema.SampleParams(), manifest, lambda: 0, LIMITS)
    with pytest.raises(ValidationError, match="twice"):
        schema.SampleParams(keep=["pose", "pose"])
    with pytest.raises(ValidationError, match="all three"):
        schema.SampleParams(keep=["pose", "foreground", "background"])
    with pytest.raises(ValidationError):
        schema.InterpolateParams(factor="hat")
    with pytest.raises(ValidationError):
        schema.InterpolateParams(factor="pose", steps=schema.MAX_STEPS + 1)


def test_interpolate_strips_are_bounded_by_the_limits_the_caller_passes():
    manifest = _manifest({A: {"keypoints": _points()}, B: {"keypoints": _points()}})
    inputs, params = schema.InterpolateInputs(start=A, end=B), schema.InterpolateParams(factor="pose", steps=4)
    strip = HEIGHT * (4 * WIDTH + 3 * STRIP_GAP)
    assert schema.prepare_interpolate(inputs, params, manifest, lambda: 0, Limits(strip))["start"] == A
    with pytest.raises(ValueError, match="above the service's max_image_pixels"):
        schema.prepare_interpolate(inputs, params, manifest, lambda: 0, Limits(strip - 1))


# A model small enough to train a step in a test: the sizes both trainer calls below share
TINY_PERSON = (
    "--height 32 --width 16 --channels 4 --roi-dim 4 --background-dim 8 --pose-dim 8 "
    "--mapping-samples 64 --mapping-batch 16 --critic-steps 1 --critic-hidden 16 --threads 1"
).split()


# ---- trainer, evaluation, shipped checkpoint ----------------------------------------------------
def test_the_trainer_writes_a_loadable_checkpoint_with_a_model_card(tmp_path):
    from training import person_quality, train_person

    out = tmp_path / "person-smoke"
    run = train_person.main(
        ["--out", str(out), *"--steps 2 --batch 2 --mapping-steps 2 --log-every 1 --snapshot-every 1000".split(), *TINY_PERSON]
    )
    assert run["step"] == 2 and (out / "samples.png").exists() and (out / ".work" / "snapshot.pt").exists()
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["format"] == "disentangled-person" and len(manifest["examples"]) == 6
    assert "python -m training.train_person" in (out / "README.md").read_text()
    load_model((out / "weights.safetensors").read_bytes(), manifest)
    results = person_quality.main(["--models", str(out), "--n", "3", "--out", str(tmp_path / "q.json")])
    assert 0 <= results[0]["recon_ssim"] <= 1 and (tmp_path / "q-person-smoke.png").exists()
    resumed = train_person.main(["--out", str(out), *"--resume --export-only --mapping-steps 1".split(), *TINY_PERSON])
    assert resumed["step"] == 2, "--export-only resumes the snapshot without training"


@pytest.mark.skipif(not (SHIPPED / "model.json").exists(), reason="demo checkpoint not built")
def test_the_shipped_demo_checkpoint_is_small_documented_and_reconstructs():
    manifest = json.loads((SHIPPED / "model.json").read_text())
    weights = (SHIPPED / "weights.safetensors").read_bytes()
    assert len(weights) <= 20 * 2**20 and (SHIPPED / "README.md").exists()
    model = load_model(weights, manifest)
    h, w = manifest["image_size"]
    person, _ = people(8, 12, h, w)
    error = (ops.reconstruct(model, person).images - person.images).abs().mean().item() / 2
    assert error < 0.08, f"the trained model reconstructs held-out people (mean L1 {error:.3f} in [0, 1])"
