"""Checkpoints of the ``collage`` family: public formats in, the project's safetensors format out.

Public formats read:

* ``sngan-chainer``: the Chainer ``.npz`` written by ``chainer.serializers.save_npz`` for the
  SNGAN-projection generator (pfnet-research/sngan_projection, the generator Neural Collage edits).
  Keys are link paths: ``l1/W`` (out, in), ``l1/b``, ``block2/c1/W`` (out, in, kh, kw),
  ``block2/b1/gammas/W`` (K, C), ``block2/b1/betas/W``, ``block2/b1/avg_mean``, ``block2/b1/avg_var``,
  ``block2/b1/N``, ..., ``b7/gamma``, ``b7/beta``, ``b7/avg_mean``, ``b7/avg_var``, ``b7/N``,
  ``l7/W``, ``l7/b``. Trainer snapshots prefix every key (``updater/model:gen/``); the prefix is
  found and dropped. Read with ``numpy.load(allow_pickle=False)``.
* ``pytorch-pretrained-biggan``: a directory with ``config.json`` and ``pytorch_model.bin`` (see
  ``deployments/collage/biggan_deep.py``).

Project format written (``out_dir/``): ``weights.safetensors`` (the module's state dict) and
``model.json`` (the manifest: family ``collage``, format ``sngan``/``biggan-deep``, arch = the
config, class names, resolution, layers = block names).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch

from deployments.collage.sngan import SNGANConfig, SNGANGenerator
from deployments.collage.spec import FAMILY as FAMILY_SPEC
from deployments.safe_load import load_torch_checkpoint

FAMILY = FAMILY_SPEC.name
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "model.json"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


# ---------------------------------------------------------------------------------------------
# SNGAN-projection, Chainer .npz
# ---------------------------------------------------------------------------------------------


def _chainer_prefix(keys: list[str]) -> str:
    matches = [k[: -len("l1/W")] for k in keys if k.endswith("l1/W")]
    if len(matches) != 1:
        raise ValueError(
            f"not an SNGAN-projection generator .npz: expected exactly one 'l1/W' key (found {len(matches)} among {len(keys)} keys)"
        )
    return matches[0]


def sngan_config_from_npz(arrays: dict[str, np.ndarray]) -> SNGANConfig:
    """The SNGANConfig whose generator has exactly these arrays (shapes checked by the caller's load)."""
    block_ids = sorted(int(m.group(1)) for k in arrays if (m := re.fullmatch(r"block(\d+)/c1/W", k)))
    if not block_ids or block_ids != list(range(2, 2 + len(block_ids))):
        raise ValueError(f"SNGAN .npz needs blocks block2, block3, ... consecutively; found {block_ids}")
    widths = [arrays["block2/c1/W"].shape[1]] + [arrays[f"block{i}/c1/W"].shape[0] for i in block_ids]
    ch = int(np.gcd.reduce(widths))
    z_dim = int(arrays["l1/W"].shape[1])
    bottom_area = arrays["l1/W"].shape[0] // widths[0]
    bottom_width = int(round(bottom_area**0.5))
    if bottom_width**2 * widths[0] != arrays["l1/W"].shape[0]:
        raise ValueError(f"l1/W has {arrays['l1/W'].shape[0]} outputs, not C0 * bottom_width**2 for C0 = {widths[0]}")
    n_classes = int(arrays["block2/b1/gammas/W"].shape[0])
    return SNGANConfig(
        z_dim=z_dim, n_classes=n_classes, ch=ch, bottom_width=bottom_width, channel_multipliers=tuple(w // ch for w in widths)
    )


def sngan_state_dict_from_npz(arrays: dict[str, np.ndarray]) -> tuple[SNGANConfig, dict[str, torch.Tensor]]:
    """Chainer link-path arrays -> (config, state dict of :class:`SNGANGenerator`)."""
    prefix = _chainer_prefix(list(arrays))
    arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    config = sngan_config_from_npz(arrays)
    n = config.n_blocks
    final_bn = f"b{n + 2}"  # the last BN; the last conv (l{n + 2}) maps by the generic rules
    state: dict[str, torch.Tensor] = {}
    for key, value in arrays.items():
        path = key.split("/")
        if path[-1] == "N":  # Chainer's count of batches seen by a BN; torch keeps one for plain BN only
            if path[0] == final_bn:
                state[f"{final_bn}.num_batches_tracked"] = torch.tensor(int(value), dtype=torch.long)
            continue
        name = ".".join(path)
        name = re.sub(r"\.(gammas|betas)\.W$", r".\1", name)  # EmbedID tables are plain (K, C) parameters
        name = re.sub(r"\.W$", ".weight", name)
        name = re.sub(r"\.b$", ".bias", name)
        if path[0] == final_bn:
            name = {"gamma": "weight", "beta": "bias", "avg_mean": "running_mean", "avg_var": "running_var"}.get(path[1], path[1])
            name = f"{final_bn}.{name}"
        state[name] = torch.from_numpy(np.ascontiguousarray(value)).float()
    state.setdefault(f"{final_bn}.num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return config, state


def load_sngan_npz(path_or_bytes: str | Path | bytes) -> SNGANGenerator:
    """A Chainer SNGAN-projection generator .npz -> :class:`SNGANGenerator` in eval mode."""
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with np.load(source, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    config, state = sngan_state_dict_from_npz(arrays)
    generator = SNGANGenerator(config)
    missing, unexpected = generator.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"SNGAN .npz does not match the generator layout: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return generator.eval()


def save_sngan_npz(generator: SNGANGenerator, path: str | Path, prefix: str = "") -> None:
    """Write ``generator`` as Chainer's ``save_npz`` would (link paths, Chainer layouts); for tests and export."""
    n = generator.n_blocks
    final_bn = f"b{n + 2}"
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in generator.state_dict().items():
        parts = name.split(".")
        if parts[0] == final_bn:
            if parts[1] == "num_batches_tracked":
                arrays[f"{final_bn}/N"] = np.array(int(tensor))
                continue
            leaf = {"weight": "gamma", "bias": "beta", "running_mean": "avg_mean", "running_var": "avg_var"}[parts[1]]
            arrays[f"{final_bn}/{leaf}"] = tensor.numpy()
            continue
        leaf = {"weight": "W", "bias": "b", "gammas": "gammas/W", "betas": "betas/W"}.get(parts[-1], parts[-1])
        arrays["/".join(parts[:-1] + [leaf])] = tensor.detach().numpy()
        if parts[-1] == "avg_var":
            arrays["/".join(parts[:-1] + ["N"])] = np.array(0)
    np.savez_compressed(path, **{prefix + k: v for k, v in arrays.items()})


# ---------------------------------------------------------------------------------------------
# Project format
# ---------------------------------------------------------------------------------------------


def class_names(names: list[str] | None, n_classes: int) -> list[str]:
    if names is None:
        return [f"class_{i}" for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names given for a generator of {n_classes} classes")
    return list(names)


def manifest_for(
    generator: torch.nn.Module,
    *,
    name: str,
    fmt: str,
    source_format: str | None,
    classes: list[str] | None,
    description: str = "",
    random_init: bool = False,
) -> dict[str, Any]:
    if not _NAME_RE.match(name):
        raise ValueError(f"model name {name!r} must match {_NAME_RE.pattern}")
    return {
        "name": name,
        "family": FAMILY,
        "format": fmt,
        "source_format": source_format,
        "arch": generator.config.to_dict(),
        "resolution": generator.resolution,
        "classes": class_names(classes, generator.num_classes),
        "layers": [f"block{i}" for i in range(generator.n_blocks)],
        "block_resolutions": generator.block_resolutions,
        "ops": FAMILY_SPEC.op_names(),
        "random_init": random_init,
        "description": description,
    }


def export(
    generator: torch.nn.Module,
    out_dir: str | Path,
    *,
    name: str,
    classes: list[str] | None = None,
    description: str = "",
    random_init: bool = False,
    source_format: str | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/weights.safetensors`` + ``out_dir/model.json`` for an SNGAN or BigGAN-deep generator."""
    fmt = generator_format(generator)
    manifest = manifest_for(
        generator, name=name, fmt=fmt, source_format=source_format, classes=classes, description=description, random_init=random_init
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in generator.state_dict().items()}
    safetensors.torch.save_file(state, str(out / WEIGHTS_FILE), metadata={"format": fmt})
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def generator_format(generator: torch.nn.Module) -> str:
    if isinstance(generator, SNGANGenerator):
        return "sngan"
    from deployments.collage.biggan_deep import BigGANDeep

    if isinstance(generator, BigGANDeep):
        return "biggan-deep"
    raise TypeError(f"not a collage generator: {type(generator).__name__}")


def build_generator(fmt: str, arch: dict[str, Any]) -> torch.nn.Module:
    """An uninitialised generator of the given project format and arch (manifest['arch'])."""
    if fmt == "sngan":
        return SNGANGenerator(SNGANConfig(**arch))
    if fmt == "biggan-deep":
        from deployments.collage.biggan_deep import BigGANDeep, BigGANDeepConfig

        return BigGANDeep(BigGANDeepConfig.from_dict(arch))
    raise ValueError(f"unknown collage weight format {fmt!r}; known: sngan, biggan-deep")


def load_generator(weights: bytes, manifest: dict[str, Any], device: str = "cpu") -> torch.nn.Module:
    """Project safetensors bytes + manifest -> generator in eval mode on ``device``."""
    generator = build_generator(manifest["format"], manifest["arch"])
    state = safetensors.torch.load(weights)
    generator.load_state_dict(state, strict=True)
    return generator.eval().to(device)


def convert_sngan_chainer(
    source: str | Path, out_dir: str | Path, name: str, *, classes: list[str] | None = None, description: str = ""
) -> dict[str, Any]:
    """Chainer SNGAN-projection generator ``.npz`` -> project format in ``out_dir``."""
    generator = load_sngan_npz(Path(source))
    return export(generator, out_dir, name=name, classes=classes, description=description, source_format="sngan-chainer")


# ---------------------------------------------------------------------------------------------
# BigGAN-deep, pytorch_pretrained_biggan (section owned by deployments/collage/biggan_deep.py's author)
# ---------------------------------------------------------------------------------------------

from deployments.collage.biggan_deep import BigGANDeep, BigGANDeepConfig  # noqa: E402  (this section's own import)
from deployments.spectral_norm import spectral_norm_vectors, spectral_norm_weight  # noqa: E402,F401  (re-exported for tests)

# The package keeps every spectrally normalised layer as torch.nn.utils.spectral_norm leaves it:
# ``X.weight_orig`` (the raw parameter), ``X.weight_u`` (out,) and ``X.weight_v`` (in * kh * kw,).
# In eval mode that layer's weight is weight_orig / (u . (W_orig v)), W_orig seen as (out, -1);
# :class:`BigGANDeep` stores exactly that as ``X.weight``. Every other key maps unchanged.

PRETRAINED_BIGGAN_CONFIG = "config.json"
PRETRAINED_BIGGAN_WEIGHTS = "pytorch_model.bin"
_SN_LEAVES = ("weight_orig", "weight_u", "weight_v", "weight")


def biggan_state_dict_from_pretrained(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """pytorch_pretrained_biggan state dict -> :class:`BigGANDeep` state dict (keys are not checked here)."""
    spectral = {key[: -len(".weight_orig")] for key in state if key.endswith(".weight_orig")}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module in spectral and leaf in _SN_LEAVES:
            continue
        out[key] = value.float() if value.is_floating_point() else value
    for module in sorted(spectral):
        orig = state[f"{module}.weight_orig"].float()
        u, v, plain = (state.get(f"{module}.{leaf}") for leaf in ("weight_u", "weight_v", "weight"))
        if u is not None and v is not None:
            out[f"{module}.weight"] = spectral_norm_weight(orig, u.float(), v.float())
        elif u is not None and plain is not None:
            # torch's older SN layout (no weight_v; the last computed weight stored as a buffer): torch's
            # load hook takes sigma = mean(weight_orig / weight); the layer then uses weight_orig / sigma
            out[f"{module}.weight"] = orig / (orig / plain.float()).mean()
        else:
            raise ValueError(f"spectral-norm layer {module!r} has weight_orig but not weight_u and weight_v")
    return out


def _load_exactly(generator: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = generator.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not match the BigGAN-deep layout of its config.json: "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {mismatched[:5]}{' ...' if len(mismatched) > 5 else ''}"
        )
    generator.load_state_dict(state, strict=True)


def load_pretrained_biggan(src_dir: str | Path) -> BigGANDeep:
    """A ``pytorch_pretrained_biggan`` directory (config.json + pytorch_model.bin) -> BigGANDeep in eval mode."""
    src = Path(src_dir)
    for file in (PRETRAINED_BIGGAN_CONFIG, PRETRAINED_BIGGAN_WEIGHTS):
        if not (src / file).is_file():
            raise FileNotFoundError(f"{src} is not a pytorch_pretrained_biggan directory: no {file}")
    config = BigGANDeepConfig.from_dict(json.loads((src / PRETRAINED_BIGGAN_CONFIG).read_text()))
    state = load_torch_checkpoint(src / PRETRAINED_BIGGAN_WEIGHTS)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{src / PRETRAINED_BIGGAN_WEIGHTS} is not a state dict of tensors")
    generator = BigGANDeep(config)
    _load_exactly(generator, biggan_state_dict_from_pretrained(state), str(src / PRETRAINED_BIGGAN_WEIGHTS))
    return generator.eval()


def save_pretrained_biggan(generator: BigGANDeep, dst_dir: str | Path) -> None:
    """Write ``generator`` in the package's layout: every linear and convolution under ``generator.``
    as spectral norm (weight_orig = the weight, u and v from :func:`spectral_norm_vectors`), so that
    :func:`load_pretrained_biggan` and the package in eval mode both use this module's weights."""
    spectral = {f"generator.{name}" for name, m in generator.generator.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))}
    state: dict[str, torch.Tensor] = {}
    for key, value in generator.state_dict().items():
        value = value.detach().cpu().contiguous().clone()
        module, _, leaf = key.rpartition(".")
        if module in spectral and leaf == "weight":
            state[f"{module}.weight_orig"] = value
            state[f"{module}.weight_u"], state[f"{module}.weight_v"] = spectral_norm_vectors(value)
        else:
            state[key] = value
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst / PRETRAINED_BIGGAN_WEIGHTS)
    (dst / PRETRAINED_BIGGAN_CONFIG).write_text(json.dumps(generator.config.to_dict(), indent=2, sort_keys=True) + "\n")


def convert_pretrained_biggan(
    src_dir: str | Path, out_dir: str | Path, name: str, *, classes: list[str] | None = None, description: str = ""
) -> dict[str, Any]:
    """``pytorch_pretrained_biggan`` directory -> project format in ``out_dir``."""
    generator = load_pretrained_biggan(src_dir)
    return export(generator, out_dir, name=name, classes=classes, description=description, source_format="pytorch-pretrained-biggan")
