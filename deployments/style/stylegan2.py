"""StyleGAN2 generator in plain PyTorch (no custom CUDA ops).

The module tree and parameter names reproduce the ``g_ema`` state dict of the widely used PyTorch
port (rosinality/stylegan2-pytorch), so its checkpoints load with ``load_state_dict(strict=True)``:

    style.0                      PixelNorm (no parameters)
    style.{1..n_mlp}.weight/bias mapping MLP, equalized lr with lr_mul 0.01, fused leaky ReLU
    input.input                  learned constant (1, C4, 4, 4)
    conv1 / to_rgb1              4x4 styled conv and its ToRGB
    convs.{2k} / convs.{2k+1}    upsampling styled conv, then plain styled conv, at 2**(k+3) px
    to_rgbs.{k}                  ToRGB at 2**(k+3) px; adds the upsampled skip image
    noises.noise_{i}             fixed per-layer noise images (buffers), used by noise_mode="const"

``conv_clamp`` (off by default) clamps every styled conv's activation and every ToRGB output to
[-conv_clamp, conv_clamp], as NVlabs' stylegan2-ada generators do (conv_clamp=256 in their configs);
it holds no parameters, so it changes no state dict.

Numerics follow the port: equalized learning rate (weights scaled by 1/sqrt(fan_in) at run time),
FusedLeakyReLU = leaky_relu(x + bias, 0.2) * sqrt(2), weight demodulation with eps 1e-8, upsampling
conv = transposed conv (stride 2) followed by a [1, 3, 3, 1] blur, and the skip image upsampled by
upfirdn2d (zero insertion, pad, FIR with the kernel times factor**2). upfirdn2d is written here with
F.pad and a depthwise F.conv2d, which is what the port itself falls back to on CPU.

Shapes: z and w are (N, style_dim); per-layer latents ws are (N, n_latent, style_dim); images are
(N, 3, R, R) float, roughly in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from deployments.shapes import assert_shape

BLUR_KERNEL = (1, 3, 3, 1)
# The port's channel table before the channel_multiplier: resolutions >= 64 are multiplied by it.
PORT_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
_MULTIPLIED_FROM = 64
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024
NOISE_MODES = ("const", "random", "none")


def _check(condition: bool, message: str) -> None:
    """Argument and config contract check (shapes: ``assert_shape``); raises ValueError (never stripped like ``assert`` under -O)."""
    if not condition:
        raise ValueError(message)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator; ``channel_max=512`` reproduces the port's table."""

    resolution: int = 256  # output side in pixels: a power of 2 in [8, 1024]
    style_dim: int = 512  # length of z and of w (the port's --latent)
    n_mlp: int = 8  # number of linear layers in the mapping network
    channel_multiplier: int = 2  # multiplies the port's channels at resolutions >= 64
    channel_max: int = 512  # cap on the channels of any resolution (min(port table, channel_max))
    # Clamp of the styled convs' activations and the ToRGB outputs to [-conv_clamp, conv_clamp]
    # (NVlabs stylegan2-ada); None = no clamp, the port's behaviour. Omitted from to_dict() when None.
    conv_clamp: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "conv_clamp":
                _check(
                    value is None
                    or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0),
                    f"StyleGAN2Config.conv_clamp must be None or a positive finite number, got {value!r}",
                )
                continue
            _check(
                isinstance(value, int) and not isinstance(value, bool) and value > 0,
                f"StyleGAN2Config.{f.name} must be a positive int, got {value!r}",
            )
        r = self.resolution
        _check(
            MIN_RESOLUTION <= r <= MAX_RESOLUTION and r & (r - 1) == 0,
            f"StyleGAN2Config.resolution must be a power of 2 in [{MIN_RESOLUTION}, {MAX_RESOLUTION}], got {r}",
        )

    @property
    def log_size(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def n_latent(self) -> int:
        """Number of w vectors the synthesis network consumes (W+ depth): 2*log2(R) - 2."""
        return self.log_size * 2 - 2

    @property
    def num_conv_layers(self) -> int:
        """Styled convs (conv1 plus two per resolution above 4), = number of noise buffers."""
        return (self.log_size - 2) * 2 + 1

    def channels(self) -> dict[int, int]:
        """Channels per resolution 4 .. R: min(port table * multiplier, channel_max)."""
        out = {}
        for res, base in PORT_CHANNELS.items():
            if res > self.resolution:
                break
            scaled = base * self.channel_multiplier if res >= _MULTIPLIED_FROM else base
            out[res] = min(scaled, self.channel_max)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict; ``conv_clamp`` only when set, so configs without a clamp
        (every model converted before it existed) keep their manifests and weights metadata byte for byte."""
        data = asdict(self)
        if data["conv_clamp"] is None:
            del data["conv_clamp"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StyleGAN2Config":
        _check(isinstance(data, dict), f"StyleGAN2Config.from_dict needs a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        _check(not unknown, f"unknown StyleGAN2Config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


# ---------------------------------------------------------------------------------------------
# FIR filtering (upfirdn2d) in plain torch
# ---------------------------------------------------------------------------------------------


def make_kernel(k: tuple[int, ...] | list[int]) -> torch.Tensor:
    """Separable 2-D FIR kernel from a 1-D one, normalised to sum 1 (float32, (K, K))."""
    k1 = torch.tensor(k, dtype=torch.float32)
    k2 = k1[None, :] * k1[:, None]
    return k2 / k2.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, then convolve every channel with ``kernel`` (true convolution).

    x: (N, C, H, W); kernel: (K, K); pad = (before, after), the same on both axes (non-negative).
    Output: (N, C, H*up + pad0 + pad1 - K + 1, W*up + pad0 + pad1 - K + 1).
    """
    assert_shape(x, (None, None, None, None), "upfirdn2d's x (N, C, H, W)")
    _check(min(pad) >= 0, f"upfirdn2d supports non-negative padding only, got {pad}")
    n, c, h, w = x.shape
    if up > 1:
        # Each sample followed by (up - 1) zeros along both axes, as the port's upfirdn2d does.
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=c)


class Blur(nn.Module):
    """FIR blur with padding; ``kernel`` buffer is make_kernel(k) * upsample_factor**2."""

    def __init__(self, kernel: tuple[int, ...], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * (upsample_factor**2))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (zero insertion + blur), the port's ``Upsample``: (N,C,H,W) -> (N,C,2H,2W)."""

    def __init__(self, kernel: tuple[int, ...], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


class PixelNorm(nn.Module):
    """x / sqrt(mean(x**2 over features) + 1e-8), per sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    """leaky_relu(x + bias, 0.2) * sqrt(2); bias broadcast over dim 1 of x."""
    shape = (1, bias.shape[0]) + (1,) * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * math.sqrt(2)


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU + sqrt(2) gain (the port's op, with a per-channel ``bias`` parameter)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: weight * lr_mul / sqrt(in_dim), bias * lr_mul."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: str | None = None) -> None:
        super().__init__()
        _check(activation in (None, "fused_lrelu"), f"unknown activation {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per sample by style coefficients (and demodulated).

    ``forward(x, w)`` maps w (N, style_dim) through ``modulation`` to the style coefficients
    s (N, in_channels) and calls ``modulated(x, s)``; Editing-in-Style edits s directly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: tuple[int, ...] = BLUR_KERNEL,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        # Fused: one grouped conv with per-sample weights (the port's default). Unfused: modulate
        # activations and share one weight across the batch, which is much faster to train on CPU.
        self.fused = True

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.modulated(x, self.modulation(w))

    def modulated(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """x (N, in, H, W), s (N, in) -> (N, out, H', W') with H' = 2H when upsampling, else H."""
        assert_shape(x, (None, self.in_channels, None, None), "ModulatedConv2d's input")
        n, c, h, w = x.shape
        k = self.kernel_size
        assert_shape(s, (n, c), "style coefficients")
        if not self.fused:
            return self._modulated_unfused(x, s)
        weight = self.scale * self.weight * s.view(n, 1, c, 1, 1)  # (N, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(n, self.out_channels, 1, 1, 1)
        x = x.reshape(1, n * c, h, w)  # one group per sample
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(n * c, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=n)
            out = self.blur(out.view(n, self.out_channels, out.shape[-2], out.shape[-1]))
        else:
            weight = weight.reshape(n * self.out_channels, c, k, k)
            out = F.conv2d(x, weight, padding=self.padding, groups=n)
            out = out.view(n, self.out_channels, out.shape[-2], out.shape[-1])
        return out

    def _modulated_unfused(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Same result as the fused path up to float rounding: scale the input by s, convolve with the
        shared weight, then scale the output by the per-sample demodulation factor."""
        n = x.shape[0]
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        x = x * s.view(n, -1, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            demod = torch.rsqrt((weight.unsqueeze(0) * s.view(n, 1, -1, 1, 1)).pow(2).sum([2, 3, 4]) + 1e-8)  # (N, out)
            out = out * demod.view(n, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"upsample={self.upsample}, demodulate={self.demodulate}"
        )


class NoiseInjection(nn.Module):
    """x + weight * noise; noise (N or 1, 1, H, W), drawn from N(0, 1) when None."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """Learned (1, C, size, size) tensor repeated over the batch."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally upsampling 2x) + noise + fused leaky ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, in, H, W), style coefficients s (N, in) -> (N, out, H', W'), clamped after the activation gain."""
        out = self.activate(self.noise(self.conv.modulated(x, s), noise))
        if self.conv_clamp is not None:
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        return out


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias, plus the 2x-upsampled skip image."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True, conv_clamp: float | None = None) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(BLUR_KERNEL)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv.modulated(x, s) + self.bias
        if self.conv_clamp is not None:  # this layer's output only, before the skip image is added
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleLayer(NamedTuple):
    """One modulated layer: its module name, which w of ws it reads, its style length, its output size."""

    name: str  # module path in the state dict, e.g. "convs.3" or "to_rgbs.1"
    w_index: int  # index into ws (N, n_latent, style_dim)
    channels: int  # length of its style coefficients = the layer's input channels
    resolution: int  # spatial size of the layer's output
    to_rgb: bool  # True for ToRGB layers, False for styled convs


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``style`` + synthesis network (the port's g_ema)."""

    # What torch.compile wraps (service/acceleration.py): the serving ops call the synthesis
    # directly (sample, local_transfer), not forward; the mapping MLP is too small to matter.
    compile_targets = ("synthesis_from_styles",)

    def __init__(self, config: StyleGAN2Config | None = None, **overrides: int) -> None:
        super().__init__()
        if config is None:
            config = StyleGAN2Config(**overrides)
        else:
            _check(not overrides, "give either a StyleGAN2Config or keyword fields, not both")
        self.config = config
        self.resolution, self.style_dim = config.resolution, config.style_dim
        self.n_latent = config.n_latent
        self.num_layers = config.num_conv_layers
        self.channels = config.channels()
        sd = config.style_dim

        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(sd, sd, lr_mul=0.01, activation="fused_lrelu") for _ in range(config.n_mlp)])
        c4, clamp = self.channels[4], config.conv_clamp
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, sd, conv_clamp=clamp)
        self.to_rgb1 = ToRGB(c4, sd, upsample=False, conv_clamp=clamp)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            size = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, size, size))
        in_ch = c4
        for log_res in range(3, config.log_size + 1):
            out_ch = self.channels[2**log_res]
            self.convs.append(StyledConv(in_ch, out_ch, sd, upsample=True, conv_clamp=clamp))
            self.convs.append(StyledConv(out_ch, out_ch, sd, conv_clamp=clamp))
            self.to_rgbs.append(ToRGB(out_ch, sd, conv_clamp=clamp))
            in_ch = out_ch
        self.style_layers = self._style_layer_table()

    # ---- layer bookkeeping -------------------------------------------------------------------
    def _style_layer_table(self) -> tuple[StyleLayer, ...]:
        layers = [StyleLayer("conv1", 0, self.channels[4], 4, False), StyleLayer("to_rgb1", 1, self.channels[4], 4, True)]
        in_ch = self.channels[4]
        for k in range(len(self.to_rgbs)):
            res = 2 ** (k + 3)
            out_ch = self.channels[res]
            layers += [
                StyleLayer(f"convs.{2 * k}", 1 + 2 * k, in_ch, res, False),
                StyleLayer(f"convs.{2 * k + 1}", 2 + 2 * k, out_ch, res, False),
                StyleLayer(f"to_rgbs.{k}", 3 + 2 * k, out_ch, res, True),
            ]
            in_ch = out_ch
        return tuple(layers)

    def _modulated_convs(self) -> list[ModulatedConv2d]:
        """The ModulatedConv2d of every entry of ``style_layers``, in the same order."""
        return [self.get_submodule(layer.name).conv for layer in self.style_layers]

    def feature_layers(self) -> list[StyleLayer]:
        """The styled convs whose activations ``return_features=True`` returns, in that order."""
        return [layer for layer in self.style_layers if not layer.to_rgb]

    def set_fused_modconv(self, fused: bool) -> "Generator":
        """Choose the fused (grouped-conv) or unfused modulated convolution in every layer; same outputs."""
        for module in self.modules():
            if isinstance(module, ModulatedConv2d):
                module.fused = bool(fused)
        return self

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    # ---- mapping -----------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_dim) -> w (N, style_dim)."""
        assert_shape(z, (None, self.style_dim), "z")
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of w over n z's drawn from a CPU generator seeded with ``seed``: (style_dim,)."""
        _check(n > 0, f"mean_latent needs n > 0, got {n}")
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        return self.style(z.to(self.device, self.input.input.dtype)).mean(0)

    def truncate(self, w: torch.Tensor, truncation: float, mean: torch.Tensor | None = None) -> torch.Tensor:
        """The truncation trick, w' = mean + truncation * (w - mean), for w of shape (..., style_dim).

        mean: (style_dim,) centre, by default ``mean_latent()`` (pass the checkpoint's latent_avg or a
        cached mean to skip computing it). truncation 1 returns w itself; 0 gives the mean for every input.
        """
        if truncation == 1.0:
            return w
        if mean is None:
            mean = self.mean_latent()
        _check(mean.numel() == self.style_dim, f"the truncation mean must have {self.style_dim} elements, got shape {tuple(mean.shape)}")
        mean = mean.reshape(*([1] * (w.ndim - 1)), self.style_dim).to(w)
        return mean + truncation * (w - mean)

    def broadcast_w(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, style_dim) or ws (N, n_latent, style_dim) -> ws (N, n_latent, style_dim)."""
        if w.ndim == 2:
            assert_shape(w, (None, self.style_dim), "w")
            return w.unsqueeze(1).expand(-1, self.n_latent, -1)
        assert_shape(w, (None, self.n_latent, self.style_dim), "ws")
        return w

    # ---- synthesis ---------------------------------------------------------------------------
    def styles_from_ws(self, ws: torch.Tensor) -> list[torch.Tensor]:
        """ws (N, n_latent, style_dim) -> style coefficients s, one (N, channels) per ``style_layers`` entry."""
        assert_shape(ws, (None, self.n_latent, self.style_dim), "ws")
        return [conv.modulation(ws[:, layer.w_index]) for layer, conv in zip(self.style_layers, self._modulated_convs())]

    def synthesis(
        self, ws: torch.Tensor, noise_mode: str = "const", return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """ws (N, n_latent, style_dim) -> image (N, 3, R, R); see ``synthesis_from_styles``."""
        return self.synthesis_from_styles(self.styles_from_ws(ws), noise_mode, return_features)

    def synthesis_from_styles(
        self, styles: list[torch.Tensor], noise_mode: str = "const", return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Style coefficients (as from ``styles_from_ws``) -> image (N, 3, R, R).

        noise_mode: "const" uses the stored ``noises`` buffers (deterministic), "random" draws fresh
        N(0, 1) noise per sample, "none" adds no noise. With ``return_features`` also returns the
        output of every styled conv (list of (N, C, H, W), order of ``feature_layers()``).
        """
        _check(noise_mode in NOISE_MODES, f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        _check(
            len(styles) == len(self.style_layers),
            f"expected {len(self.style_layers)} style tensors (one per modulated layer), got {len(styles)}",
        )
        n = styles[0].shape[0]
        for layer, s in zip(self.style_layers, styles):
            assert_shape(s, (n, layer.channels), f"style of layer {layer.name}")
        noise = self._noise(noise_mode)
        features: list[torch.Tensor] = []
        x = self.input(n)
        x = self.conv1(x, styles[0], noise[0])
        features.append(x)
        skip = self.to_rgb1(x, styles[1])
        for k in range(len(self.to_rgbs)):
            base = 2 + 3 * k
            x = self.convs[2 * k](x, styles[base], noise[1 + 2 * k])
            features.append(x)
            x = self.convs[2 * k + 1](x, styles[base + 1], noise[2 + 2 * k])
            features.append(x)
            skip = self.to_rgbs[k](x, styles[base + 2], skip)
        return (skip, features) if return_features else skip

    def _noise(self, noise_mode: str) -> list[torch.Tensor | None]:
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if noise_mode == "none":
            return [torch.zeros((), device=self.device, dtype=self.input.input.dtype)] * self.num_layers
        return [None] * self.num_layers

    def forward(
        self,
        z: torch.Tensor | None = None,
        w: torch.Tensor | None = None,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """Exactly one of z (N, style_dim) or w ((N, style_dim) or (N, n_latent, style_dim)) -> (N, 3, R, R).

        truncation lerps w toward ``truncation_latent`` (default: ``mean_latent()``):
        w' = mean + truncation * (w - mean).
        """
        _check((z is None) != (w is None), "give exactly one of z or w")
        if z is not None:
            w = self.mapping(z)
        ws = self.truncate(self.broadcast_w(w), truncation, truncation_latent)
        return self.synthesis(ws, noise_mode=noise_mode)
