"""StyleGAN2 checkpoints: the PyTorch port's ``.pt`` format in, the project's safetensors format out.

Public format read (rosinality/stylegan2-pytorch): a ``torch.save`` dict with ``"g_ema"`` (the
generator state dict) and, in checkpoints converted from the official TF release, ``"latent_avg"``
(style_dim,). Training checkpoints of the port also hold ``g``, ``d``, optimizer states and
``args`` (an argparse.Namespace); only ``g_ema`` and ``latent_avg`` are kept. A bare state dict is
accepted too. Files are read with ``torch.load(weights_only=True)``: tensors and plain containers
only (plus argparse.Namespace, a plain attribute bag), never arbitrary pickled objects.

NVlabs stylegan2-ada pickles are read by deployments/style/nvlabs.py, which maps them onto the same
state dict and writes it with :func:`write_model`.

Project format written (``out_dir/``): ``weights.safetensors`` (the g_ema state dict with the
port's key names, plus ``latent_avg`` when present) and ``model.json`` (the manifest).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from deployments.safe_load import load_torch_checkpoint
from deployments.style.spec import FAMILY as FAMILY_SPEC
from deployments.style.stylegan2 import PORT_CHANNELS, Generator, StyleGAN2Config

FAMILY = FAMILY_SPEC.name
FORMAT = "stylegan2"
SOURCE_FORMAT = "rosinality-stylegan2-pytorch"
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "model.json"
LATENT_AVG_KEY = "latent_avg"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")  # same rule as schemas.common.ModelName


# ---------------------------------------------------------------------------------------------
# Architecture inference
# ---------------------------------------------------------------------------------------------


def _indices(state_dict: dict[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state_dict if (m := rx.fullmatch(key))})


def _shape(state_dict: dict[str, Any], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ValueError(f"not a StyleGAN2 (rosinality port) generator state dict: missing key {key!r}")
    return tuple(state_dict[key].shape)


def infer_config(state_dict: dict[str, Any]) -> StyleGAN2Config:
    """The StyleGAN2Config whose Generator has exactly this state dict's keys and shapes.

    resolution from the number of ToRGB layers, style_dim from ``style.1.weight``, n_mlp from the
    ``style.*`` layers, channel_max / channel_multiplier from the per-resolution channel counts.
    When the multiplier cannot matter (every resolution >= 64 capped by channel_max, or R <= 32)
    it is reported as 2, the port's default; channel_max is reported as the smallest value that
    gives the same channels (512 for the port's own checkpoints with multiplier <= 2).
    Raises ValueError when the layout is not the port's generator.
    """
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError("not a StyleGAN2 generator state dict: expected a non-empty dict of tensors")
    mlp = _indices(state_dict, r"style\.(\d+)\.weight")
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise ValueError(
            f"not a StyleGAN2 (rosinality port) generator state dict: mapping layers style.N.weight must be numbered 1..n_mlp, found {mlp}"
        )
    w_shape = _shape(state_dict, "style.1.weight")
    if len(w_shape) != 2 or w_shape[0] != w_shape[1]:
        raise ValueError(f"style.1.weight must be square (style_dim, style_dim), got {w_shape}")
    style_dim = w_shape[0]

    rgbs = _indices(state_dict, r"to_rgbs\.(\d+)\.bias")
    if not rgbs or rgbs != list(range(len(rgbs))):
        raise ValueError(f"to_rgbs.N layers must be numbered 0..k with k >= 0, found {rgbs}")
    resolution = 2 ** (len(rgbs) + 2)
    if resolution > 1024:
        raise ValueError(f"{len(rgbs)} ToRGB layers mean resolution {resolution}; the port supports up to 1024")

    channels = {4: _shape(state_dict, "input.input")[1]}
    for k in rgbs:
        channels[2 ** (k + 3)] = _shape(state_dict, f"convs.{2 * k}.conv.weight")[1]

    channel_max = channels[4] if channels[4] < 512 else max(channels.values())
    multiplier = 2
    for res, ch in channels.items():
        if res >= 64 and ch < channel_max:
            base = PORT_CHANNELS[res]
            if ch % base:
                raise ValueError(f"{ch} channels at {res}px is not a multiple of the port's {base}")
            multiplier = ch // base
            break
    try:
        config = StyleGAN2Config(resolution, style_dim, len(mlp), multiplier, channel_max)
    except ValueError as exc:
        raise ValueError(f"unrecognised StyleGAN2 layout: {exc}") from None
    if config.channels() != channels:
        raise ValueError(
            f"unrecognised StyleGAN2 channel layout {channels}: no (channel_multiplier, channel_max) "
            f"reproduces it (closest: {config.channels()})"
        )
    _check_layout(state_dict, config)
    return config


def _check_layout(state_dict: dict[str, Any], config: StyleGAN2Config) -> None:
    """Every key and shape must match a Generator(config); raises ValueError listing differences."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in Generator(config).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items() if k != LATENT_AVG_KEY}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append("wrong shapes " + ", ".join(f"{k}: {got[k]} (expected {expected[k]})" for k in wrong[:5]))
        raise ValueError(f"state dict does not match StyleGAN2 {config.to_dict()}: " + "; ".join(parts))


# ---------------------------------------------------------------------------------------------
# Reading the port's .pt
# ---------------------------------------------------------------------------------------------


def read_rosinality(src: str | os.PathLike | bytes) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """(g_ema state dict, latent_avg or None) from a port checkpoint (path or bytes), safely."""
    obj = load_torch_checkpoint(src, allowed=[argparse.Namespace])

    if not isinstance(obj, dict):
        raise ValueError(f"expected a dict checkpoint, got {type(obj).__name__}")
    latent_avg = None
    if "g_ema" in obj:
        state_dict = obj["g_ema"]
        latent_avg = obj.get(LATENT_AVG_KEY)
    elif "style.1.weight" in obj:
        state_dict = {k: v for k, v in obj.items() if k != LATENT_AVG_KEY}
        latent_avg = obj.get(LATENT_AVG_KEY)
    else:
        raise ValueError(
            f"no generator found: expected a 'g_ema' entry or a bare generator state dict, got top-level keys {sorted(map(str, obj))[:10]}"
        )
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError("'g_ema' must be a state dict of tensors")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise ValueError(f"'latent_avg' must be a tensor, got {type(latent_avg).__name__}")
    return dict(state_dict), latent_avg


def _float32(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tensors.items():
        if not value.is_floating_point():
            raise ValueError(f"tensor {key!r} has dtype {value.dtype}; expected floating point")
        value = value.detach().to("cpu", torch.float32).contiguous().clone()
        if not torch.isfinite(value).all():
            raise ValueError(f"tensor {key!r} has non-finite values")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Conversion and loading
# ---------------------------------------------------------------------------------------------


def convert_rosinality(
    src_path: str | os.PathLike, out_dir: str | os.PathLike, name: str, description: str = "", *, random_init: bool = False
) -> dict[str, Any]:
    """Convert a port ``.pt`` into ``out_dir/{weights.safetensors, model.json}``; returns the manifest.

    Raises ValueError for a file holding arbitrary pickled objects, a file without a generator,
    or a state dict whose layout is not the port's generator.
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} must match {_NAME_RE.pattern}")
    state_dict, latent_avg = read_rosinality(src_path)
    config = infer_config(state_dict)
    tensors = _float32(state_dict)
    if latent_avg is not None:
        if latent_avg.numel() != config.style_dim:
            raise ValueError(f"latent_avg has {latent_avg.numel()} elements, expected style_dim={config.style_dim}")
        tensors[LATENT_AVG_KEY] = _float32({LATENT_AVG_KEY: latent_avg.reshape(config.style_dim)})[LATENT_AVG_KEY]
    return write_model(out_dir, name, config, tensors, SOURCE_FORMAT, description, random_init=random_init)


def write_model(
    out_dir: str | os.PathLike,
    name: str,
    config: StyleGAN2Config,
    tensors: dict[str, torch.Tensor],
    source_format: str,
    description: str = "",
    *,
    random_init: bool = False,
) -> dict[str, Any]:
    """Write ``out_dir/{weights.safetensors, model.json}`` of a Generator(config) state dict (plus
    ``latent_avg``) in the project format; returns the manifest. Every converter ends here."""
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} must match {_NAME_RE.pattern}")
    manifest = {
        "name": name,
        "family": FAMILY,
        "format": FORMAT,
        "source_format": source_format,
        "arch": config.to_dict(),
        "resolution": config.resolution,
        "style_dim": config.style_dim,
        "n_latent": config.n_latent,
        "ops": FAMILY_SPEC.op_names(),  # a converted model serves every op of the family
        "random_init": bool(random_init),
        "description": description,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # One metadata key only: safetensors writes its metadata map in hash order, so several keys
    # would make the bytes (and the sha256 the registry checks) differ from run to run.
    metadata = {"collage": json.dumps({"format": FORMAT, "arch": config.to_dict()}, sort_keys=True)}
    _atomic_write(out / WEIGHTS_FILE, safetensors.torch.save(tensors, metadata=metadata))
    _atomic_write(out / MANIFEST_FILE, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_generator(
    weights: bytes | str | os.PathLike, arch: dict[str, Any], device: str | torch.device = "cpu"
) -> tuple[Generator, torch.Tensor | None]:
    """(Generator in eval mode with frozen parameters, latent_avg (style_dim,) or None).

    weights: the bytes of a ``weights.safetensors`` or a path to one; arch: the manifest's ``arch``.
    Raises ValueError when the bytes are not safetensors or do not match ``arch``.
    """
    config = StyleGAN2Config.from_dict(arch)
    try:
        if isinstance(weights, (bytes, bytearray, memoryview)):
            tensors = safetensors.torch.load(bytes(weights))
        else:
            tensors = safetensors.torch.load_file(os.fspath(weights))
    except safetensors.SafetensorError as exc:
        raise ValueError(f"weights are not a valid safetensors file: {exc}") from exc
    latent_avg = tensors.pop(LATENT_AVG_KEY, None)
    _check_layout(tensors, config)
    with torch.device("meta"):
        generator = Generator(config)
    generator.load_state_dict(tensors, strict=True, assign=True)
    generator = generator.to(device).eval().requires_grad_(False)
    if latent_avg is not None:
        latent_avg = latent_avg.reshape(config.style_dim).to(device)
    return generator, latent_avg


def save_rosinality(generator: Generator, path: str | os.PathLike, latent_avg: torch.Tensor | None = None) -> None:
    """Write ``{"g_ema": state_dict[, "latent_avg": (style_dim,)]}`` with torch.save (the port's format)."""
    ckpt: dict[str, Any] = {"g_ema": {k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}}
    if latent_avg is not None:
        ckpt[LATENT_AVG_KEY] = latent_avg.detach().cpu().reshape(-1).clone()
    torch.save(ckpt, path)
