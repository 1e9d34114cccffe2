"""BigGAN-deep generator (Brock, Donahue & Simonyan 2019) in plain PyTorch, sCBN-ready.

The released weights are DeepMind's TF Hub BigGAN-deep modules (128, 256 and 512 px) as converted
by huggingface's ``pytorch_pretrained_biggan``: a directory with ``config.json`` (the fields of
:class:`BigGANDeepConfig`) and ``pytorch_model.bin`` (a state dict). Module names follow that
package, so its state dict maps onto this module's key by key. The one difference is spectral
norm: the package wraps every SN layer in ``torch.nn.utils.spectral_norm`` and stores
``weight_orig``, ``weight_u`` and ``weight_v``; in eval mode that layer uses
``weight_orig / (u . (W_orig v))`` (W_orig seen as a matrix (out, -1)). This module stores that
effective weight as a plain ``weight`` under the same module path; no SN runs at inference
(conversion both ways: ``deployments/collage/checkpoint.py``).

    embeddings               Linear K -> E, no bias: class vector -> class embedding e
                             condition vector c = [z, e], given whole to gen_z and every CBN
    generator.gen_z          Linear c -> 4*4*C0, read as (4, 4, C0) (TF's NHWC order), made contiguous NCHW
    generator.layers.{i}     one GenBlock per config layer, with SelfAttention inserted before the
                             GenBlock at ``attention_layer_position`` (later indices shift by one).
                             GenBlock: CBN, ReLU, 1x1 conv (in -> in/4), CBN, ReLU, [2x nearest
                             upsample], 3x3 conv, CBN, ReLU, 3x3 conv, CBN, ReLU, 1x1 conv (-> out);
                             shortcut: the first ``out`` channels of the input, [upsampled]
    generator.bn             unconditional batch norm, then ReLU
    generator.conv_to_rgb    3x3 conv (C -> C) of which only the first 3 channels are used; tanh

Batch norm has no batch statistics at inference: every BN holds ``n_stats`` rows of running means
and variances, measured at truncations 0, 1/(n_stats - 1), ..., 1, and a forward pass at
truncation t reads the rows of t (:func:`truncation_statistics`). CBN: gain = 1 + scale(c),
bias = offset(c), both linear maps without bias; eps = ``config.eps`` (1e-4). Train and eval mode
compute the same thing.

Conditioning (the family contract, ``deployments/collage/conditioning.py``): class weights (B, K),
a spatial class-weight map (B, K, H, W) or a ClassMixture. A class vector (B, K) takes the package's
path: c = [z, e] once, then one linear on all of c for gen_z and for every CBN's scale and offset.
For a spatial condition c is split instead: c is linear in the class vector, so
scale(c) = W_z z + W_e (E k) with W = [W_z | W_e] split by columns; the class part W_e E k is mixed
per pixel and the z part stays per sample. gen_z is the input of GenBlock 0 and is conditioned like
it: with a spatial condition for block 0, its class part is mixed per pixel of its 4x4 output (each
output pixel has its own rows of W_e), so a map of one class everywhere is that class, up to the
rounding of the split sums (tests/test_biggan_deep.py bounds it).

Fidelity: for a class vector every step runs the package's operations in its order (the single
linears on c, gen_z's output made contiguous so that every convolution sees NCHW, the CBN
arithmetic, attention as two bmm's), so fp32 outputs match the package's to float rounding (bit for
bit on this project's CPU; ``test_fidelity_fp32_output_matches_the_reference_arithmetic``). The one
deliberate difference: conv_to_rgb runs its first 3 filters only, not all C and then a slice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deployments.collage.conditioning import ClassMixture, CollageGenerator, Condition, condition_batch, mix_by_class, pool_class_map
from deployments.collage.sngan import FeatureEdit
from deployments.shapes import assert_shape

BOTTOM_WIDTH = 4  # side of gen_z's output

LayerSpec = tuple[bool, int, int]  # (2x upsample, input channel multiplier, output channel multiplier)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _deep_layers(stages: Sequence[tuple[int, int]]) -> tuple[LayerSpec, ...]:
    """BigGAN-deep's two blocks per resolution: (in -> in) at the same size, then (in -> out) upsampling."""
    return tuple(spec for a, b in stages for spec in ((False, a, a), (True, a, b)))


_PRESET_STAGES = {  # channel multipliers per resolution stage, 4 px upwards
    128: ((16, 16), (16, 8), (8, 4), (4, 2), (2, 1)),
    256: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)),
    512: ((16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)),
}


@dataclass(frozen=True)
class BigGANDeepConfig:
    """Architecture; field names and meanings are those of ``pytorch_pretrained_biggan``'s config.json.

    The defaults are the 128 px model; see :meth:`preset` for 256 and 512.
    """

    output_dim: int = 128  # side of the output image (4 * 2**number of upsampling layers)
    z_dim: int = 128  # length of z
    class_embed_dim: int = 128  # length of the class embedding e (the package assumes it equals z_dim)
    channel_width: int = 128  # base channel count ch; layer widths are ch times the multipliers
    num_classes: int = 1000  # K, inputs of the class embedding
    layers: tuple[LayerSpec, ...] = _deep_layers(_PRESET_STAGES[128])  # per GenBlock: (upsample, in mult, out mult)
    attention_layer_position: int = 8  # self-attention runs right before the GenBlock of this index
    eps: float = 1e-4  # batch-norm eps
    n_stats: int = 51  # rows of truncation-dependent batch-norm statistics (truncations 0 .. 1)

    def __post_init__(self) -> None:
        _check(
            all(isinstance(spec, (list, tuple)) and len(spec) == 3 for spec in self.layers),
            "layers must be [upsample, in_mult, out_mult] triples",
        )
        layers = tuple((bool(up), int(a), int(b)) for up, a, b in self.layers)
        object.__setattr__(self, "layers", layers)
        _check(min(self.z_dim, self.class_embed_dim, self.channel_width, self.num_classes) >= 1, f"invalid BigGAN-deep config {self}")
        _check(len(layers) >= 1, "layers must not be empty")
        _check(self.n_stats >= 2 and self.eps > 0, "n_stats must be at least 2 and eps positive")
        for i, (_, a, b) in enumerate(layers):
            _check(a >= 1 and b >= 1 and b <= a, f"layer {i}: multipliers must satisfy 1 <= out <= in (the shortcut drops channels)")
            _check(self.channel_width * a // 4 >= 1, f"layer {i}: the bottleneck (in / 4) has no channels")
            _check(i == 0 or layers[i - 1][2] == a, f"layer {i} takes {a}x channels but layer {i - 1} gives {layers[i - 1][2]}x")
        _check(self.channel_width * layers[-1][2] >= 3, "the last layer needs at least 3 channels for RGB")
        position = self.attention_layer_position
        _check(0 <= position < len(layers), f"attention_layer_position {position} is not a layer index (0..{len(layers) - 1})")
        _check(self.channel_width * layers[position][1] % 8 == 0, "self-attention needs a channel count divisible by 8")
        _check(
            self.resolution == self.output_dim, f"output_dim {self.output_dim} does not match the layers, which give {self.resolution} px"
        )

    @classmethod
    def preset(cls, resolution: int) -> BigGANDeepConfig:
        """The released architecture at 128, 256 or 512 px."""
        _check(resolution in _PRESET_STAGES, f"BigGAN-deep presets are {sorted(_PRESET_STAGES)} px, not {resolution}")
        return cls(output_dim=resolution, layers=_deep_layers(_PRESET_STAGES[resolution]))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BigGANDeepConfig:
        """From config.json (or a manifest's arch); layers as lists. Unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        _check(not unknown, f"unknown BigGAN-deep config keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, in config.json's layout."""
        d = asdict(self)
        d["layers"] = [list(spec) for spec in self.layers]
        return d

    @property
    def cond_dim(self) -> int:
        return self.z_dim + self.class_embed_dim

    @property
    def n_blocks(self) -> int:
        return len(self.layers)

    @property
    def resolution(self) -> int:
        return BOTTOM_WIDTH * 2 ** sum(up for up, _, _ in self.layers)

    @property
    def block_resolutions(self) -> list[int]:
        sides, side = [], BOTTOM_WIDTH
        for up, _, _ in self.layers:
            side *= 2 if up else 1
            sides.append(side)
        return sides

    @property
    def block_channels(self) -> list[int]:
        return [self.channel_width * b for _, _, b in self.layers]


def truncation_statistics(running_means: torch.Tensor, running_vars: torch.Tensor, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The (C,) mean and variance a BN uses at ``truncation``, from its (n_stats, C) tables.

    Row i holds the statistics at truncation i / (n_stats - 1). Between rows this reproduces
    ``pytorch_pretrained_biggan`` exactly, quirk included: with ``coef, start = modf(t / step)`` it
    weighs row ``start`` by ``coef`` and row ``start + 1`` by ``1 - coef``, the reverse of linear
    interpolation (t = 0.37 with 51 rows gives 0.5 * row 18 + 0.5 * row 19 as expected, but t = 0.3,
    where t / step is 14.999..., gives about row 14). It is kept because it is what the released
    checkpoints' images come from.
    """
    n_stats = running_means.shape[0]
    step = 1.0 / (n_stats - 1)
    coef, start = math.modf(truncation / step)
    start = int(start)
    if start >= n_stats - 1:  # t = 1 (or rounding just past it): the last row; the package would index past the end
        return running_means[-1], running_vars[-1]
    if coef == 0.0:
        return running_means[start], running_vars[start]
    mean = running_means[start] * coef + running_means[start + 1] * (1 - coef)
    var = running_vars[start] * coef + running_vars[start + 1] * (1 - coef)
    return mean, var


class TruncatedBatchNorm(nn.Module):
    """Unconditional batch norm with truncation-dependent statistics (the final ``generator.bn``).

    num_features: channels C of the input.
    n_stats: rows of running statistics (truncations 0 .. 1).
    eps: added to the variance.
    """

    def __init__(self, num_features: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        mean, var = truncation_statistics(self.running_means, self.running_vars, truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


def condition_vector(z: torch.Tensor, embedding: Condition) -> torch.Tensor | None:
    """c = [z, e] for a plain class embedding (B, E); None for a spatial one (its CBNs split W instead)."""
    if isinstance(embedding, torch.Tensor) and embedding.dim() == 2:
        return torch.cat((z, embedding), dim=1)
    return None


class ConditionalBatchNorm(nn.Module):
    """Batch norm with truncation-dependent statistics; gain 1 + scale(c) and bias offset(c), c = [z, e].

    num_features: channels C of the input.
    z_dim: length of z, the first part of c (the rest is the class embedding).
    cond_dim: length of c.
    n_stats: rows of running statistics (truncations 0 .. 1).
    eps: added to the variance.
    """

    def __init__(self, num_features: int, z_dim: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.scale = nn.Linear(cond_dim, num_features, bias=False)
        self.offset = nn.Linear(cond_dim, num_features, bias=False)

    def _affine(
        self, layer: nn.Linear, z: torch.Tensor, embedding: Condition, cond: torch.Tensor | None, size: tuple[int, int]
    ) -> torch.Tensor:
        """layer([z, e]) as (B, C, 1, 1), or (B, C, h, w) for a spatial embedding.

        A plain class embedding comes with its condition vector ``cond`` = [z, e]: one linear on it,
        the package's single dot product over all of c. A spatial one is split by columns,
        W_z z + mix(W_e e), equal to it up to float rounding.
        """
        if cond is not None:
            return layer(cond)[:, :, None, None]
        w_z, w_e = layer.weight[:, : self.z_dim], layer.weight[:, self.z_dim :]
        return (z @ w_z.T)[:, :, None, None] + mix_by_class(embedding, lambda e: e @ w_e.T, size)

    def forward(
        self, x: torch.Tensor, truncation: float, z: torch.Tensor, embedding: Condition, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, C, H, W); z (B, z_dim); embedding: class embedding (B, E), (B, E, h, w) or a ClassMixture
        of embeddings; cond: [z, e] (B, cond_dim) if already made for a plain (B, E) embedding."""
        mean, var = truncation_statistics(self.running_means, self.running_vars, truncation)
        cond = condition_vector(z, embedding) if cond is None else cond
        size = x.shape[-2:]
        gain = 1 + self._affine(self.scale, z, embedding, cond, size)
        bias = self._affine(self.offset, z, embedding, cond, size)
        # the package's arithmetic, in its order: ((x - mean) / sqrt(var + eps)) * gain + bias
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * gain + bias


class SelfAttention(nn.Module):
    """SAGAN self-attention with 2x2 max-pooled keys and values; out = x + gamma * attention.

    channels: C of input and output (query/key width C/8, value width C/2).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.snconv1x1_theta = nn.Conv2d(channels, channels // 8, 1, bias=False)  # queries
        self.snconv1x1_phi = nn.Conv2d(channels, channels // 8, 1, bias=False)  # keys
        self.snconv1x1_g = nn.Conv2d(channels, channels // 2, 1, bias=False)  # values
        self.snconv1x1_o_conv = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # two batched matmuls in the package's orientation (not a fused attention kernel, whose
        # blocked softmax rounds differently): weights = softmax(theta^T phi), out = g weights^T
        batch, channels, height, width = x.shape
        theta = self.snconv1x1_theta(x).view(batch, channels // 8, height * width)  # queries (B, C/8, HW)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).view(batch, channels // 8, -1)  # keys (B, C/8, HW/4)
        g = F.max_pool2d(self.snconv1x1_g(x), 2).view(batch, channels // 2, -1)  # values (B, C/2, HW/4)
        weights = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)  # (B, HW, HW/4), unscaled dot products
        attended = torch.bmm(g, weights.permute(0, 2, 1)).view(batch, channels // 2, height, width)
        return x + self.gamma * self.snconv1x1_o_conv(attended)


class GenBlock(nn.Module):
    """Bottleneck residual block with four CBNs.

    in_channels / out_channels: channels of input and output (out <= in; the bottleneck is in / 4).
    up_sample: whether the block doubles the spatial size (nearest).
    z_dim / cond_dim / n_stats / eps: of the CBNs (see :class:`ConditionalBatchNorm`).
    """

    def __init__(self, in_channels: int, out_channels: int, up_sample: bool, z_dim: int, cond_dim: int, n_stats: int, eps: float) -> None:
        super().__init__()
        self.up_sample = up_sample
        self.out_channels = out_channels
        middle = in_channels // 4
        self.bn_0 = ConditionalBatchNorm(in_channels, z_dim, cond_dim, n_stats, eps)
        self.conv_0 = nn.Conv2d(in_channels, middle, 1)
        self.bn_1 = ConditionalBatchNorm(middle, z_dim, cond_dim, n_stats, eps)
        self.conv_1 = nn.Conv2d(middle, middle, 3, padding=1)
        self.bn_2 = ConditionalBatchNorm(middle, z_dim, cond_dim, n_stats, eps)
        self.conv_2 = nn.Conv2d(middle, middle, 3, padding=1)
        self.bn_3 = ConditionalBatchNorm(middle, z_dim, cond_dim, n_stats, eps)
        self.conv_3 = nn.Conv2d(middle, out_channels, 1)

    def forward(
        self, x: torch.Tensor, truncation: float, z: torch.Tensor, embedding: Condition, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """cond: [z, e] if already made for a plain embedding (:func:`condition_vector`)."""
        h = self.conv_0(F.relu(self.bn_0(x, truncation, z, embedding, cond)))
        h = F.relu(self.bn_1(h, truncation, z, embedding, cond))
        if self.up_sample:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, truncation, z, embedding, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, truncation, z, embedding, cond)))
        shortcut = x[:, : self.out_channels]  # the package keeps in/2 channels; its layers only ever halve
        if self.up_sample:
            shortcut = F.interpolate(shortcut, scale_factor=2, mode="nearest")
        return h + shortcut


class GeneratorBody(nn.Module):
    """Everything after the class embedding (the package's ``Generator``, state-dict prefix ``generator.``)."""

    def __init__(self, config: BigGANDeepConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channel_width
        self.bottom_channels = ch * config.layers[0][1]
        self.gen_z = nn.Linear(config.cond_dim, BOTTOM_WIDTH * BOTTOM_WIDTH * self.bottom_channels)
        layers: list[nn.Module] = []
        for i, (up, a, b) in enumerate(config.layers):
            if i == config.attention_layer_position:
                layers.append(SelfAttention(ch * a))
            layers.append(GenBlock(ch * a, ch * b, up, config.z_dim, config.cond_dim, config.n_stats, config.eps))
        self.layers = nn.ModuleList(layers)
        top = ch * config.layers[-1][2]
        self.bn = TruncatedBatchNorm(top, config.n_stats, config.eps)
        self.conv_to_rgb = nn.Conv2d(top, top, 3, padding=1)

    def blocks(self) -> list[GenBlock]:
        return [layer for layer in self.layers if isinstance(layer, GenBlock)]

    def stem(self, z: torch.Tensor, embedding: Condition, cond: torch.Tensor | None = None) -> torch.Tensor:
        """gen_z([z, e]) as (B, C0, 4, 4), contiguous NCHW; a spatial embedding is mixed per output pixel.

        cond: [z, e] for a plain embedding: one linear on it, as the package computes it.
        """
        side, c0 = BOTTOM_WIDTH, self.bottom_channels
        cond = condition_vector(z, embedding) if cond is None else cond
        if cond is not None:
            return self.gen_z(cond).view(-1, side, side, c0).permute(0, 3, 1, 2).contiguous()
        z_dim = self.config.z_dim
        from_z = F.linear(z, self.gen_z.weight[:, :z_dim], self.gen_z.bias)
        w_e = self.gen_z.weight[:, z_dim:].view(side, side, c0, -1)  # rows in TF's (y, x, channel) order
        if isinstance(embedding, ClassMixture):
            weights = pool_class_map(embedding.weights, (side, side))
            from_e = torch.einsum("yxce,bje,bjyx->bcyx", w_e, embedding.classes, weights)
        else:
            from_e = torch.einsum("yxce,beyx->bcyx", w_e, pool_class_map(embedding, (side, side)))
        return (from_z.view(-1, side, side, c0).permute(0, 3, 1, 2) + from_e).contiguous()

    def forward(
        self, z: torch.Tensor, embeddings: Sequence[Condition], truncation: float, feature_edit: FeatureEdit | None = None
    ) -> torch.Tensor:
        """z (B, z_dim); embeddings: per GenBlock, its class embedding (see :class:`ConditionalBatchNorm`)."""
        conds: dict[int, torch.Tensor | None] = {}  # [z, e] once per distinct embedding object
        for embedding in embeddings:
            if id(embedding) not in conds:
                conds[id(embedding)] = condition_vector(z, embedding)
        h = self.stem(z, embeddings[0], conds[id(embeddings[0])])
        block = 0
        for layer in self.layers:
            if isinstance(layer, SelfAttention):
                h = layer(h)
                continue
            h = layer(h, truncation, z, embeddings[block], conds[id(embeddings[block])])
            if feature_edit is not None:
                h = feature_edit(block, h)
            block += 1
        h = F.relu(self.bn(h, truncation))
        # only the first 3 output channels are the image: convolve with those filters only
        h = F.conv2d(h, self.conv_to_rgb.weight[:3], self.conv_to_rgb.bias[:3], padding=1)
        return torch.tanh(h)


class BigGANDeep(CollageGenerator):
    """z (B, z_dim) + class weights (B, K) -> images (B, 3, R, R) in [-1, 1]."""

    def __init__(self, config: BigGANDeepConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Linear(config.num_classes, config.class_embed_dim, bias=False)
        self.generator = GeneratorBody(config)

    def blocks(self) -> list[GenBlock]:
        return self.generator.blocks()

    def embed(self, condition: Condition) -> Condition:
        """Class condition -> the same condition in embedding space (E instead of K)."""
        k = self.config.num_classes
        weight = self.embeddings.weight  # (E, K)
        if isinstance(condition, ClassMixture):
            assert_shape(condition.classes, (None, None, k), "a ClassMixture's classes (B, J, K)")
            assert_shape(condition.weights, (*condition.classes.shape[:2], None, None), "a ClassMixture's weights (B, J, H, W)")
            return ClassMixture(condition.weights, condition.classes @ weight.T)
        assert_shape(condition, (None, k) if condition.dim() == 2 else (None, k, None, None), "a class condition (B, K[, H, W])")
        if condition.dim() == 2:
            return self.embeddings(condition)
        return torch.einsum("bkhw,ek->behw", condition, weight)

    def forward(
        self,
        z: torch.Tensor,
        class_weights: torch.Tensor,
        truncation: float = 1.0,
        class_maps: Sequence[Condition | None] | None = None,
        feature_edit: FeatureEdit | None = None,
    ) -> torch.Tensor:
        """Generate images.

        z: (B, z_dim) latents (already truncated by the caller if wanted).
        class_weights: (B, K) soft class vectors (one-hot rows = class labels).
        truncation: in (0, 1]; selects the batch-norm statistics (see :func:`truncation_statistics`).
        class_maps: per GenBlock, None (use class_weights) or a spatial class condition for that
            block's CBNs (sCBN): a map (B, K, H, W) or a ClassMixture, at any size (pooled per layer).
            Block 0's condition also conditions gen_z, the block's input.
        feature_edit: called as ``feature_edit(i, h)`` on each GenBlock's output h; its return value
            continues the forward pass (feature blending, feature capture).
        """
        cfg = self.config
        assert_shape(z, (None, cfg.z_dim), "z")
        batch = z.shape[0]
        assert_shape(class_weights, (batch, cfg.num_classes), "class_weights")
        truncation = float(truncation)
        _check(0.0 < truncation <= 1.0, f"truncation must be in (0, 1], got {truncation}")
        _check(class_maps is None or len(class_maps) == cfg.n_blocks, f"class_maps needs one entry per block ({cfg.n_blocks})")
        base = self.embeddings(class_weights)
        embedded: dict[int, Condition] = {}  # one embedding per distinct condition object
        per_block: list[Condition] = []
        for i in range(cfg.n_blocks):
            condition = class_maps[i] if class_maps is not None else None
            if condition is None:
                per_block.append(base)
                continue
            _check(condition_batch(condition) == batch, f"class map of block {i} is not for a batch of {batch}")
            if id(condition) not in embedded:
                embedded[id(condition)] = self.embed(condition)
            per_block.append(embedded[id(condition)])
        return self.generator(z, per_block, truncation, feature_edit)


# ---- a stand-in for trained weights ----------------------------------------------------------


def _batch_norms(model: BigGANDeep) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (ConditionalBatchNorm, TruncatedBatchNorm))]


@torch.no_grad()
def calibrate_statistics(model: BigGANDeep, seed: int = 0, batch: int = 8, anchors: int = 5) -> None:
    """Fill every BN's statistics table with the batch statistics of its input, as BigGAN's were measured.

    At ``anchors`` truncations spread over 0..1 (rows of the table) a batch of truncated z with random
    classes is run; each BN takes the mean and variance of its actual input. Rows between anchors
    are interpolated linearly.
    """
    cfg = model.config
    rng = torch.Generator().manual_seed(seed)
    _check(anchors >= 2, "calibration needs at least 2 anchor truncations")
    rows = sorted({round(r) for r in torch.linspace(0, cfg.n_stats - 1, anchors).tolist()})  # 0 and the last row included
    measured: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {bn: [] for bn in _batch_norms(model)}

    def measure(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        module.running_means.copy_(mean.expand_as(module.running_means))  # every row: any truncation reads them
        module.running_vars.copy_(var.expand_as(module.running_vars))
        measured[module].append((mean, var))

    hooks = [bn.register_forward_pre_hook(measure) for bn in measured]
    try:
        for row in rows:
            z = torch.randn(batch, cfg.z_dim, generator=rng).clamp(-2.0, 2.0) * (row / (cfg.n_stats - 1))
            classes = F.one_hot(torch.randint(cfg.num_classes, (batch,), generator=rng), cfg.num_classes).float()
            model(z, classes, 1.0)
    finally:
        for hook in hooks:
            hook.remove()
    for bn, stats in measured.items():
        for (r0, (mean0, var0)), (r1, (mean1, var1)) in zip(zip(rows, stats), zip(rows[1:], stats[1:])):
            for r in range(r0, r1 + 1):
                t = (r - r0) / (r1 - r0)
                bn.running_means[r] = mean0 * (1 - t) + mean1 * t
                bn.running_vars[r] = var0 * (1 - t) + var1 * t


@torch.no_grad()
def random_biggan_deep(config: BigGANDeepConfig, seed: int = 0, calibration_batch: int = 8) -> BigGANDeep:
    """A random generator shaped like a trained one, for tests and demos.

    Every spectrally normalised layer (all of ``generator``'s linears and convolutions) gets a
    Gaussian weight divided by its largest singular value, as SN leaves it; biases and the
    attention gain are small and non-zero; batch-norm statistics are measured per truncation
    (:func:`calibrate_statistics`), so activations stay in range and depend on the truncation.
    """
    rng = torch.Generator().manual_seed(seed)
    model = BigGANDeep(config)
    model.embeddings.weight.copy_(torch.randn(model.embeddings.weight.shape, generator=rng))
    for module in model.generator.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            weight = torch.randn(module.weight.shape, generator=rng)
            module.weight.copy_(weight / torch.linalg.matrix_norm(weight.flatten(1), ord=2))
            if module.bias is not None:
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=rng))
        elif isinstance(module, SelfAttention):
            module.gamma.fill_(0.5)
        elif isinstance(module, TruncatedBatchNorm):
            module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=rng))
            module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=rng))
    calibrate_statistics(model, seed=seed, batch=calibration_batch)
    return model.eval()
