"""Generator speed options (service/acceleration.py): what they keep and what they change."""

from __future__ import annotations

import pytest
import torch

from deployments.images import to_uint8_images
from service.acceleration import Acceleration
from tests.test_collage_ops import random_sngan


def _style_generator():
    from deployments.style.stylegan2 import Generator, StyleGAN2Config

    torch.manual_seed(0)
    return Generator(StyleGAN2Config(resolution=16, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=64)).eval()


def _sample(generator, z, acceleration: Acceleration) -> torch.Tensor:
    with torch.inference_mode(), acceleration.autocast(torch.device("cpu")):
        if hasattr(generator, "n_blocks"):  # SNGAN: class-conditional
            return generator(z, torch.nn.functional.one_hot(torch.arange(len(z)) % generator.num_classes, generator.num_classes).float())
        from deployments.style import ops

        return ops.sample(generator, z=z)


@pytest.mark.parametrize("make", [random_sngan, _style_generator], ids=["sngan", "stylegan2"])
def test_channels_last_keeps_outputs_and_bf16_stays_close(make):
    generator = make()
    z = torch.randn(4, getattr(generator, "z_dim", None) or generator.style_dim, generator=torch.Generator().manual_seed(1))
    reference = to_uint8_images(_sample(generator, z, Acceleration())).astype(int)

    Acceleration(channels_last=True).prepare(generator)
    assert any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in generator.parameters()
    ), "rank-4 weights are NHWC now"
    assert abs(to_uint8_images(_sample(generator, z, Acceleration())).astype(int) - reference).max() <= 1

    low = _sample(generator, z, Acceleration(precision="bf16"))
    difference = abs(to_uint8_images(low).astype(int) - reference)
    assert 0 < difference.max() <= 32 and difference.mean() < 2, "bf16 changes pixels, but only a little"


def test_prepare_uses_the_models_generator_and_leaves_other_objects_alone():
    class Loaded:
        def __init__(self, generator):
            self.generator = generator

    generator = random_sngan()
    loaded = Acceleration(channels_last=True).prepare(Loaded(generator))
    assert loaded.generator is generator
    assert any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in generator.parameters()
    )
    assert Acceleration(channels_last=True).prepare("not a module") == "not a module"


def test_invalid_options_are_refused():
    with pytest.raises(ValueError, match="precision"):
        Acceleration(precision="int8")
    with pytest.raises(ValueError, match="CUDA"):
        Acceleration(precision="fp16").check_device(torch.device("cpu"))
    assert Acceleration(precision="bf16", channels_last=True, compile=True).describe() == "bf16+channels_last+compile"


def test_settings_reach_the_family_options(monkeypatch):
    from service.config import Settings

    monkeypatch.setenv("COLLAGE_ACCEL_PRECISION", "bf16")
    monkeypatch.setenv("COLLAGE_ACCEL_CHANNELS_LAST", "true")
    assert Acceleration.from_settings(Settings()) == Acceleration(precision="bf16", channels_last=True)
    monkeypatch.setenv("COLLAGE_ACCEL_PRECISION", "fp8")
    with pytest.raises(ValueError):
        Settings()


@pytest.mark.parametrize(
    "family_name,model_name", [("style", "style-demo-random"), ("collage", "collage-faces"), ("inpaint", "edgeconnect-demo")]
)
def test_each_familys_warmup_requests_are_valid_edits_of_its_shipped_model(s3_server, family_name, model_name):
    """The warm-up runs the real op path (schemas, prepare, decode, run_group); a request the service
    would refuse would stop compiled replicas from starting."""
    import json

    from service.app import load_family
    from service.config import get_settings
    from service.edits import build_task

    settings = get_settings()
    directory = settings.checkpoints_dir / model_name
    manifest = json.loads((directory / "model.json").read_text())
    family = load_family(family_name).func_or_class()
    model = family.load_model(manifest, (directory / "weights.safetensors").read_bytes())
    requests = family.warmup_requests(manifest)
    assert requests and all(r.op in family.bucketed_ops for r in requests), "warm-up compiles the bucketed ops"
    for request in requests:
        tasks = [
            build_task(
                model_name, manifest, request.op, request.params, request.inputs, request.assets.__getitem__, settings.limits(), seed=i
            )
            for i in range(3)
        ]
        assert [t.inputs.get("seed", i) for i, t in enumerate(tasks)] == [0, 1, 2]
        outputs = family.run_group_accelerated(model, request.op, tasks)
        assert len(outputs) == 3 and all(o.image.ndim == 3 for o in outputs)
        if "seed" in tasks[0].inputs:
            assert not (outputs[0].image == outputs[1].image).all(), "distinct seeds, distinct images"


def test_a_compiled_generator_padded_to_buckets_matches_eager(s3_server):
    """Compile + bucket padding through the style family's real path: outputs equal eager ones within
    a level, for group sizes that pad (3 -> 4) and that fit a bucket (2)."""
    import json

    from service.app import load_family
    from service.config import get_settings
    from service.edits import build_task

    settings = get_settings()
    directory = settings.checkpoints_dir / "style-demo-random"
    manifest = json.loads((directory / "model.json").read_text())
    weights = (directory / "weights.safetensors").read_bytes()
    family = load_family("style").func_or_class()
    eager = family.load_model(manifest, weights)
    tasks = [build_task("style-demo-random", manifest, "sample", {}, {}, {}.__getitem__, settings.limits(), seed=i) for i in range(3)]
    reference = [o.image.astype(int) for o in family.run_group_accelerated(eager, "sample", tasks)]

    family.acceleration = Acceleration(compile=True)
    compiled = family.acceleration.prepare(family.load_model(manifest, weights))
    for group in (tasks, tasks[:2]):
        outputs = family.run_group_accelerated(compiled, "sample", group)
        assert len(outputs) == len(group)
        for output, expected in zip(outputs, reference):
            assert abs(output.image.astype(int) - expected).max() <= 1
