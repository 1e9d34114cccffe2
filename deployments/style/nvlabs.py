"""NVlabs StyleGAN2 pickles in, the project's StyleGAN2 format out (``--format stylegan2-ada-pkl``).

Public format read: the ``network-snapshot-*.pkl`` files of NVlabs/stylegan2-ada-pytorch (and the
StyleGAN2 networks the NVlabs/stylegan3 repository trains with ``--cfg=stylegan2``): a plain pickle
of ``{"G", "D", "G_ema", "augment_pipe", "training_set_kwargs", ...}`` whose networks are
``torch_utils.persistence`` objects. The file is read with
:func:`deployments.safe_load.load_restricted_pickle`, which rebuilds tensors, plain containers and
one :class:`PersistentRecord` (class name + ``__dict__``) per network and runs no pickled code: the
source code NVlabs stores in every network is never executed. Only ``G_ema`` is converted.

Mapping onto :class:`deployments.style.stylegan2.Generator` (the rosinality port's layout):

    mapping.fc{i}                  -> style.{i+1}     weight/bias rescaled by the ratio of NVlabs'
                                                      run-time gains (weight_gain, bias_gain) to ours
                                                      (lr_mul 0.01): bytes unchanged at lr_multiplier 0.01
    mapping.w_avg                  -> latent_avg      the truncation centre
    synthesis.b4.const             -> input.input
    synthesis.b4.conv1             -> conv1
    synthesis.b4.torgb             -> to_rgb1
    synthesis.b{R}.conv0 / conv1   -> convs.{2k} / convs.{2k+1}   (R = 2**(k+3))
    synthesis.b{R}.torgb           -> to_rgbs.{k}
    <layer>.affine                 -> <layer>.conv.modulation     (bias_init 1, lr multiplier 1)
    <layer>.weight                 -> <layer>.conv.weight         styled convs: times sqrt(fan_in), because
                                                      NVlabs modulates the raw weight where the port
                                                      modulates weight / sqrt(fan_in) (the demodulation
                                                      cancels the scale but not its 1e-8 epsilon)
    <layer>.noise_strength         -> <layer>.noise.weight
    <layer>.noise_const            -> noises.noise_{i}            what noise_mode="const" adds
    <layer>.bias                   -> <layer>.activate.bias (convs) / <layer>.bias (ToRGB)
    conv_clamp                     -> StyleGAN2Config.conv_clamp

What is checked (each a ValueError naming the difference): the networks are StyleGAN2 classes
(a StyleGAN3 synthesis network is refused), unconditional (c_dim = 0), 3 colour channels, the
'skip' architecture in every block, lrelu activations with gain sqrt(2), the [1, 3, 3, 1]
resampling filter, z_dim = w_dim = the mapping layers' width, one conv_clamp for all layers, and
finally every key and shape against a Generator of the inferred config.

NVlabs runs its top ``num_fp16_res`` blocks in float16 on a GPU by default; the converted model
is float32, i.e. NVlabs' ``force_fp32=True`` output.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from deployments.safe_load import PersistentRecord, load_restricted_pickle
from deployments.style.checkpoint import _NAME_RE, LATENT_AVG_KEY, _float32, infer_config, write_model
from deployments.style.stylegan2 import BLUR_KERNEL, StyleGAN2Config, make_kernel

SOURCE_FORMAT = "nvlabs-stylegan2-ada-pkl"
NETWORK_KEY = "G_ema"
MAPPING_LR_MUL = 0.01  # the lr_mul of our Generator's mapping layers (EqualLinear)
STYLEGAN3_REFUSED = (
    "StyleGAN3 synthesis networks are not supported; only StyleGAN2 generators convert "
    "(stylegan2-ada-pytorch snapshots, or stylegan3-repository networks trained with --cfg=stylegan2)"
)
_ABSENT = object()


def _fail(where: str, message: str) -> None:
    raise ValueError(f"NVlabs {where}: {message}")


def _plain_number(value: Any) -> Any:
    """numpy scalars (NVlabs stores gains as np.float64) as Python numbers; everything else as is."""
    return value.item() if isinstance(value, np.generic) else value


def _hp(record: PersistentRecord, key: str, where: str, default: Any = _ABSENT) -> Any:
    value = record.state.get(key, default)
    if value is _ABSENT:
        _fail(where, f"{record.class_name} has no attribute {key!r}")
    return _plain_number(value)


def _child(record: PersistentRecord, name: str, class_name: str, where: str) -> PersistentRecord:
    child = record.modules.get(name)
    if not isinstance(child, PersistentRecord):
        _fail(where, f"{record.class_name} has no submodule {name!r} (found {sorted(record.modules)})")
    if child.class_name != class_name:
        _fail(f"{where}.{name}", f"expected a {class_name}, found a {child.class_name}")
    return child


def _tensor(record: PersistentRecord, name: str, where: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    value = record.tensors().get(name)
    if not isinstance(value, torch.Tensor):
        _fail(where, f"{record.class_name} has no tensor {name!r} (found {sorted(record.tensors())})")
    if not value.is_floating_point():
        _fail(f"{where}.{name}", f"dtype {value.dtype}; expected floating point")
    if shape is not None and tuple(value.shape) != shape:
        _fail(f"{where}.{name}", f"shape {tuple(value.shape)}, expected {shape}")
    return value.detach().to(torch.float32)


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-6)


def _scaled(t: torch.Tensor, factor: float) -> torch.Tensor:
    """t * factor computed in float64; the very same bytes when factor is exactly 1."""
    return t.clone() if factor == 1.0 else (t.double() * factor).float()


def _fully_connected(
    fc: PersistentRecord, where: str, in_features: int, out_features: int, lr_mul: float, activation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) for our EqualLinear(in, out, lr_mul): effective weight and bias equal NVlabs'.

    NVlabs FullyConnectedLayer applies ``weight * weight_gain`` and ``bias * bias_gain`` at run time
    (weight_gain = lr_multiplier / sqrt(in), bias_gain = lr_multiplier); EqualLinear applies
    lr_mul / sqrt(in) and lr_mul, so each tensor is multiplied by the ratio of the gains.
    """
    got = _hp(fc, "activation", where)
    if got != activation:
        _fail(where, f"activation {got!r}; expected {activation!r}")
    weight = _tensor(fc, "weight", where, (out_features, in_features))
    if fc.state.get("_parameters", {}).get("bias") is None:
        _fail(where, "a fully connected layer without bias is not supported")
    bias = _tensor(fc, "bias", where, (out_features,))
    weight_gain, bias_gain = float(_hp(fc, "weight_gain", where)), float(_hp(fc, "bias_gain", where))
    if not (math.isfinite(weight_gain) and math.isfinite(bias_gain)):
        _fail(where, f"non-finite gains weight_gain={weight_gain} bias_gain={bias_gain}")
    our_weight_gain = lr_mul / math.sqrt(in_features)
    return _scaled(weight, weight_gain / our_weight_gain), _scaled(bias, bias_gain / lr_mul)


def _filter_ok(record: PersistentRecord, where: str) -> None:
    f = _tensor(record, "resample_filter", where)
    if f.shape != (4, 4) or not torch.allclose(f, make_kernel(BLUR_KERNEL), rtol=0, atol=1e-7):
        _fail(where, f"resample filter {f.tolist()} is not [1, 3, 3, 1] (the only filter the port implements)")


def _conv_clamp(record: PersistentRecord, where: str) -> float | None:
    clamp = _hp(record, "conv_clamp", where, None)
    if clamp is not None and not (isinstance(clamp, (int, float)) and math.isfinite(clamp) and clamp > 0):
        _fail(where, f"conv_clamp must be None or a positive number, got {clamp!r}")
    return clamp


def _synthesis_layer(
    layer: PersistentRecord,
    where: str,
    prefix: str,
    noise_key: str,
    in_ch: int,
    out_ch: int,
    w_dim: int,
    resolution: int,
    up: int,
    sd: dict[str, torch.Tensor],
) -> float | None:
    """One SynthesisLayer -> ``prefix``.{conv.weight, conv.modulation.*, noise.weight, activate.bias} and its noise."""
    if _hp(layer, "up", where) != up:
        _fail(where, f"up={_hp(layer, 'up', where)}, expected {up}")
    if _hp(layer, "resolution", where) != resolution:
        _fail(where, f"resolution {_hp(layer, 'resolution', where)}, expected {resolution}")
    if _hp(layer, "activation", where) != "lrelu":
        _fail(where, f"activation {_hp(layer, 'activation', where)!r}; only 'lrelu' is supported")
    if not _close(_hp(layer, "act_gain", where), math.sqrt(2)):
        _fail(where, f"activation gain {_hp(layer, 'act_gain', where)}, expected sqrt(2)")
    if _hp(layer, "padding", where) != 1:
        _fail(where, f"padding {_hp(layer, 'padding', where)}; expected 1 (3x3 kernels)")
    _filter_ok(layer, where)
    weight = _tensor(layer, "weight", where, (out_ch, in_ch, 3, 3))
    # Port: demodulate(weight / sqrt(fan_in) * s); NVlabs: demodulate(weight * s). Same product with
    # the stored weight multiplied by sqrt(fan_in).
    sd[f"{prefix}.conv.weight"] = _scaled(weight, math.sqrt(in_ch * 9)).unsqueeze(0)
    sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"] = _fully_connected(
        _child(layer, "affine", "FullyConnectedLayer", where), f"{where}.affine", w_dim, in_ch, 1.0, "linear"
    )
    sd[f"{prefix}.activate.bias"] = _tensor(layer, "bias", where, (out_ch,))
    if _hp(layer, "use_noise", where):
        sd[f"{prefix}.noise.weight"] = _tensor(layer, "noise_strength", where, ()).reshape(1)
        sd[f"noises.{noise_key}"] = _tensor(layer, "noise_const", where, (resolution, resolution)).reshape(1, 1, resolution, resolution)
    else:  # no noise input: a zero strength and a zero image give the same output in every noise mode
        sd[f"{prefix}.noise.weight"] = torch.zeros(1)
        sd[f"noises.{noise_key}"] = torch.zeros(1, 1, resolution, resolution)
    return _conv_clamp(layer, where)


def _to_rgb(torgb: PersistentRecord, where: str, prefix: str, in_ch: int, w_dim: int, sd: dict[str, torch.Tensor]) -> float | None:
    """ToRGBLayer -> ``prefix``.{conv.weight, conv.modulation.*, bias}: styles * weight_gain, no demodulation."""
    weight = _tensor(torgb, "weight", where, (3, in_ch, 1, 1))
    weight_gain = float(_hp(torgb, "weight_gain", where))
    # NVlabs: conv(x, weight * (s * weight_gain)); port: conv(x, (weight / sqrt(in)) * s).
    sd[f"{prefix}.conv.weight"] = _scaled(weight, weight_gain * math.sqrt(in_ch)).unsqueeze(0)
    sd[f"{prefix}.conv.modulation.weight"], sd[f"{prefix}.conv.modulation.bias"] = _fully_connected(
        _child(torgb, "affine", "FullyConnectedLayer", where), f"{where}.affine", w_dim, in_ch, 1.0, "linear"
    )
    sd[f"{prefix}.bias"] = _tensor(torgb, "bias", where, (3,)).reshape(1, 3, 1, 1)
    return _conv_clamp(torgb, where)


def _is_stylegan3(synthesis: PersistentRecord) -> bool:
    modules = synthesis.modules
    return (
        "layer_names" in synthesis.state
        or "input" in modules
        or any(isinstance(m, PersistentRecord) and m.class_name == "SynthesisInput" for m in modules.values())
    )


def generator_state_dict(g: PersistentRecord) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, StyleGAN2Config]:
    """(our Generator's state dict, latent_avg or None, config) from an NVlabs ``G_ema`` record."""
    where = NETWORK_KEY
    if not isinstance(g, PersistentRecord) or g.class_name != "Generator":
        _fail(where, f"expected a persistent Generator, found {getattr(g, 'class_name', type(g).__name__)}")
    synthesis = g.modules.get("synthesis")
    if isinstance(synthesis, PersistentRecord) and _is_stylegan3(synthesis):
        raise ValueError(STYLEGAN3_REFUSED)
    synthesis = _child(g, "synthesis", "SynthesisNetwork", where)
    mapping = _child(g, "mapping", "MappingNetwork", where)
    z_dim, c_dim, w_dim = (_hp(g, k, where) for k in ("z_dim", "c_dim", "w_dim"))
    resolution, img_channels = _hp(g, "img_resolution", where), _hp(g, "img_channels", where)
    if c_dim:
        _fail(where, f"conditional generators are not supported (c_dim={c_dim}): the style family's generator takes no class label")
    if img_channels != 3:
        _fail(where, f"img_channels={img_channels}; only RGB (3) generators are supported")
    if z_dim != w_dim:
        _fail(where, f"z_dim={z_dim} differs from w_dim={w_dim}; the port's mapping keeps one width")
    if not (isinstance(resolution, int) and 8 <= resolution <= 1024 and resolution & (resolution - 1) == 0):
        _fail(where, f"img_resolution={resolution!r}; supported: powers of 2 from 8 to 1024")

    sd: dict[str, torch.Tensor] = {}
    # ---- mapping network: normalize_2nd_moment(z) (= PixelNorm), then num_layers lrelu layers
    where = f"{NETWORK_KEY}.mapping"
    if "embed" in mapping.modules and mapping.modules["embed"] is not None:
        _fail(where, "has a label embedding (a conditional model); not supported")
    n_mlp = _hp(mapping, "num_layers", where)
    for i in range(n_mlp):
        fc = _child(mapping, f"fc{i}", "FullyConnectedLayer", where)
        sd[f"style.{i + 1}.weight"], sd[f"style.{i + 1}.bias"] = _fully_connected(
            fc, f"{where}.fc{i}", w_dim, w_dim, MAPPING_LR_MUL, "lrelu"
        )
    latent_avg = None
    if "w_avg" in mapping.tensors():
        latent_avg = _tensor(mapping, "w_avg", where, (w_dim,))

    # ---- synthesis network: 'skip' blocks b4 .. b{R}
    where = f"{NETWORK_KEY}.synthesis"
    clamps: dict[str, float | None] = {}
    log_size = int(math.log2(resolution))
    in_ch = 0
    for log_res in range(2, log_size + 1):
        res = 2**log_res
        name = f"b{res}"
        block = _child(synthesis, name, "SynthesisBlock", where)
        at = f"{where}.{name}"
        if _hp(block, "architecture", at) != "skip":
            _fail(at, f"architecture {_hp(block, 'architecture', at)!r}; only 'skip' (the StyleGAN2 config) is supported")
        if _hp(block, "img_channels", at) != 3:
            _fail(at, f"img_channels={_hp(block, 'img_channels', at)}; expected 3")
        _filter_ok(block, at)
        conv1 = _child(block, "conv1", "SynthesisLayer", at)
        out_ch = _tensor(conv1, "weight", f"{at}.conv1").shape[0]
        if res == 4:
            sd["input.input"] = _tensor(block, "const", at, (out_ch, 4, 4)).unsqueeze(0)
            clamps[f"{at}.conv1"] = _synthesis_layer(conv1, f"{at}.conv1", "conv1", "noise_0", out_ch, out_ch, w_dim, 4, 1, sd)
            clamps[f"{at}.torgb"] = _to_rgb(_child(block, "torgb", "ToRGBLayer", at), f"{at}.torgb", "to_rgb1", out_ch, w_dim, sd)
        else:
            k = log_res - 3
            conv0 = _child(block, "conv0", "SynthesisLayer", at)
            clamps[f"{at}.conv0"] = _synthesis_layer(
                conv0, f"{at}.conv0", f"convs.{2 * k}", f"noise_{1 + 2 * k}", in_ch, out_ch, w_dim, res, 2, sd
            )
            clamps[f"{at}.conv1"] = _synthesis_layer(
                conv1, f"{at}.conv1", f"convs.{2 * k + 1}", f"noise_{2 + 2 * k}", out_ch, out_ch, w_dim, res, 1, sd
            )
            clamps[f"{at}.torgb"] = _to_rgb(_child(block, "torgb", "ToRGBLayer", at), f"{at}.torgb", f"to_rgbs.{k}", out_ch, w_dim, sd)
            # the port's fixed [1, 3, 3, 1] resampling kernels (upsampling conv's blur, skip upsample)
            sd[f"convs.{2 * k}.conv.blur.kernel"] = make_kernel(BLUR_KERNEL) * 4
            sd[f"to_rgbs.{k}.upsample.kernel"] = make_kernel(BLUR_KERNEL) * 4
        in_ch = out_ch
    extra = sorted(set(synthesis.modules) - {f"b{2**i}" for i in range(2, log_size + 1)})
    if extra:
        _fail(where, f"unexpected submodules {extra} for img_resolution={resolution}")
    if len(set(clamps.values())) != 1:
        _fail(where, f"layers differ in conv_clamp ({sorted(set(map(str, clamps.values())))}); one value is supported")
    conv_clamp = next(iter(clamps.values()))

    try:
        config = infer_config(sd)
    except ValueError as exc:
        raise ValueError(f"NVlabs G_ema has no equivalent in the port's generator layout: {exc}") from None
    return sd, latent_avg, replace(config, conv_clamp=conv_clamp)


def read_nvlabs_pickle(src: str | os.PathLike | bytes) -> PersistentRecord:
    """The ``G_ema`` record of an NVlabs snapshot pickle (path or bytes), read without running its code."""
    data = load_restricted_pickle(src)
    if isinstance(data, PersistentRecord):  # a bare pickled network
        return data
    if not isinstance(data, dict) or NETWORK_KEY not in data:
        keys = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"not an NVlabs network snapshot: expected a dict with {NETWORK_KEY!r}, got {keys}")
    return data[NETWORK_KEY]


def convert_nvlabs(src_path: str | os.PathLike, out_dir: str | os.PathLike, name: str, description: str = "") -> dict[str, Any]:
    """Convert an NVlabs StyleGAN2 ``.pkl`` into ``out_dir/{weights.safetensors, model.json}``; the manifest.

    Raises ValueError for a pickle naming anything outside the restricted unpickler's allow-list,
    and for a generator the port's layout cannot reproduce (see the module docstring).
    """
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"model name {name!r} must match {_NAME_RE.pattern}")
    state_dict, latent_avg, config = generator_state_dict(read_nvlabs_pickle(src_path))
    tensors = _float32(state_dict)
    if latent_avg is not None:
        tensors[LATENT_AVG_KEY] = _float32({LATENT_AVG_KEY: latent_avg})[LATENT_AVG_KEY]
    return write_model(out_dir, name, config, tensors, SOURCE_FORMAT, description)
