"""EdgeConnect checkpoints: the official ``*_gen.pth`` files in, the project's safetensors format out.

Public format read (knazeri/edge-connect): ``EdgeModel_gen.pth`` and ``InpaintingModel_gen.pth``,
each ``torch.save({"iteration": int, "generator": state_dict})``. The edge generator's convs
(all but the last) are wrapped in ``torch.nn.utils.spectral_norm``, so its state dict holds
``weight_orig``, ``weight_u``, ``weight_v`` instead of ``weight``; in eval mode the layer uses
``weight_orig / (u . (W v))`` with W = weight_orig seen as a matrix along the SN dimension (0 for
convs, 1 for transposed convs, torch's default). The converter folds that into a plain weight.
Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only.

Project format written (``out_dir/``): ``weights.safetensors`` (``edge.*`` and ``inpaint.*``) and
``model.json`` (family ``inpaint``, format ``edgeconnect``, arch = the config).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from deployments.inpaint.edgeconnect import EdgeConnect, EdgeConnectConfig, _EncoderDecoder
from deployments.inpaint.spec import FAMILY as FAMILY_SPEC
from deployments.safe_load import load_torch_checkpoint
from deployments.spectral_norm import spectral_norm_vectors, spectral_norm_weight

FAMILY = FAMILY_SPEC.name
FORMAT = "edgeconnect"
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "model.json"
EDGE_FILE = "EdgeModel_gen.pth"
INPAINT_FILE = "InpaintingModel_gen.pth"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")


def _sn_dim(module: torch.nn.Module) -> int:
    return 1 if isinstance(module, torch.nn.ConvTranspose2d) else 0


def config_from_state_dict(state: dict[str, torch.Tensor]) -> EdgeConnectConfig:
    first = state.get("encoder.1.weight", state.get("encoder.1.weight_orig"))
    if first is None:
        raise ValueError("not an EdgeConnect generator state dict: no 'encoder.1.weight(_orig)'")
    blocks = {int(m.group(1)) for key in state if (m := re.match(r"middle\.(\d+)\.", key))}
    return EdgeConnectConfig(channels=int(first.shape[0]), residual_blocks=len(blocks))


def load_official_generator(generator: _EncoderDecoder, state: dict[str, torch.Tensor], source: str) -> None:
    """Load an official generator state dict (spectral-norm or plain keys) into ``generator``, exactly."""
    modules = dict(generator.named_modules())
    plain: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("_u") or key.endswith("_v"):
            continue
        if key.endswith(".weight_orig"):
            name = key[: -len(".weight_orig")]
            if name + ".weight_u" not in state or name + ".weight_v" not in state:
                raise ValueError(f"{source}: {key} without its spectral-norm vectors weight_u/weight_v")
            module = modules.get(name)
            if module is None:
                raise ValueError(f"{source}: unexpected key {key}")
            plain[name + ".weight"] = spectral_norm_weight(value, state[name + ".weight_u"], state[name + ".weight_v"], _sn_dim(module))
        else:
            plain[key] = value
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(plain))
    unexpected = sorted(set(plain) - set(expected))
    mismatched = [k for k in set(expected) & set(plain) if expected[k].shape != plain[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{source} does not match the {type(generator).__name__} layout: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}, shape mismatches {mismatched[:4]}"
        )
    generator.load_state_dict(plain, strict=True)


def _read_generator_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = load_torch_checkpoint(path)
    state = data.get("generator", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not an EdgeConnect generator checkpoint ({{'generator': state_dict}})")
    return state


def load_official(src_dir: str | Path) -> EdgeConnect:
    """A directory with ``EdgeModel_gen.pth`` and ``InpaintingModel_gen.pth`` -> EdgeConnect (eval)."""
    src = Path(src_dir)
    edge_state = _read_generator_file(src / EDGE_FILE)
    inpaint_state = _read_generator_file(src / INPAINT_FILE)
    config = config_from_state_dict(edge_state)
    if config_from_state_dict(inpaint_state) != config:
        raise ValueError(f"{EDGE_FILE} ({config}) and {INPAINT_FILE} ({config_from_state_dict(inpaint_state)}) differ in size")
    model = EdgeConnect(config)
    load_official_generator(model.edge, edge_state, str(src / EDGE_FILE))
    load_official_generator(model.inpaint, inpaint_state, str(src / INPAINT_FILE))
    return model.eval()


def save_official(model: EdgeConnect, dst_dir: str | Path, iteration: int = 0) -> None:
    """Write ``model`` as the two official files (edge generator in spectral-norm layout); for tests."""
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    for generator, filename, spectral in ((model.edge, EDGE_FILE, True), (model.inpaint, INPAINT_FILE, False)):
        state: dict[str, torch.Tensor] = {}
        modules = dict(generator.named_modules())
        last_conv = f"decoder.{len(generator.decoder) - 1}"
        for key, value in generator.state_dict().items():
            name, _, leaf = key.rpartition(".")
            module = modules[name]
            if spectral and leaf == "weight" and name != last_conv and isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                u, v = spectral_norm_vectors(value.detach(), _sn_dim(module))
                state[f"{name}.weight_orig"], state[f"{name}.weight_u"], state[f"{name}.weight_v"] = value.detach().clone(), u, v
            else:
                state[key] = value.detach().clone()
        torch.save({"iteration": iteration, "generator": state}, dst / filename)


def export(
    model: EdgeConnect,
    out_dir: str | Path,
    *,
    name: str,
    description: str = "",
    random_init: bool = False,
    source_format: str | None = None,
    param_defaults: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write ``out_dir/weights.safetensors`` + ``out_dir/model.json``; ``param_defaults``: the
    manifest's per-op defaults (a model trained on composited edges serves them by default)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"model name {name!r} must match {_NAME_RE.pattern}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(state, str(out / WEIGHTS_FILE), metadata={"format": FORMAT})
    manifest = {
        "name": name,
        "family": FAMILY,
        "format": FORMAT,
        "source_format": source_format,
        "arch": model.config.to_dict(),
        "resolution": None,
        "ops": FAMILY_SPEC.op_names(),
        "random_init": random_init,
        "description": description,
    }
    if param_defaults:
        manifest["param_defaults"] = param_defaults
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def convert_official(src_dir: str | Path, out_dir: str | Path, name: str, *, description: str = "") -> dict[str, Any]:
    return export(load_official(src_dir), out_dir, name=name, description=description, source_format="edgeconnect-official")


def load_model(weights: bytes, manifest: dict[str, Any], device: str = "cpu") -> EdgeConnect:
    model = EdgeConnect(EdgeConnectConfig(**manifest["arch"]))
    model.load_state_dict(safetensors.torch.load(weights), strict=True)
    return model.eval().to(device)
