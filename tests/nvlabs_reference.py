"""A compact re-implementation of the NVlabs stylegan2-ada-pytorch generator, and a writer of its pickles.

Test-only reference for tests/test_nvlabs_pickle.py. The modules follow the layout and the
arithmetic of NVlabs' ``training/networks.py`` (FullyConnectedLayer with run-time weight/bias
gains, MappingNetwork with 2nd-moment normalisation and a ``w_avg`` buffer, SynthesisLayer with
``affine`` / ``noise_const`` / ``noise_strength``, ToRGBLayer with its weight gain on the styles,
'skip' SynthesisBlocks) in float32, with their ops written out in plain torch the way NVlabs'
reference (non-CUDA) paths compute them: ``upfirdn2d`` by zero insertion + padding + a flipped FIR
kernel, ``conv2d_resample`` with up=2 as a transposed strided convolution followed by the filter,
``bias_act`` as bias, activation, gain, then clamp. Nothing here is imported from NVlabs.

:func:`dump_snapshot` writes the dict a training snapshot holds with ``pickle.dump``, each network
as NVlabs' ``torch_utils.persistence`` pickles it: a call to the global
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with meta = {type, version,
module_src, class_name, state}. While it pickles, stand-in modules ``torch_utils.persistence`` and
``dnnlib.util`` sit in ``sys.modules`` so the globals are spelled as in real files.
"""

from __future__ import annotations

import contextlib
import copy
import io
import pickle
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PERSISTENCE_VERSION = 6


# ---------------------------------------------------------------------------------------------
# Stand-ins for the globals NVlabs pickles name
# ---------------------------------------------------------------------------------------------


def _reconstruct_persistent_obj(meta: dict) -> Any:  # noqa: D401 - pickled by reference only
    raise AssertionError("the stand-in of torch_utils.persistence._reconstruct_persistent_obj must never run")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """dnnlib.util.EasyDict: a dict with attribute access (what NVlabs keeps in ``_init_kwargs``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def nvlabs_modules() -> Iterator[None]:
    """``torch_utils.persistence`` and ``dnnlib.util`` in sys.modules while pickling, restored after."""
    fakes = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": types.ModuleType("dnnlib.util"),
    }
    fakes["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    fakes["dnnlib.util"].EasyDict = EasyDict
    saved = {name: sys.modules.get(name) for name in fakes}
    sys.modules.update(fakes)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# The source text NVlabs stores with every network; here a harmless stand-in unless a test passes one.
MODULE_SRC = "# source code of the network's module (NVlabs stores it; a safe reader must never run it)\n"


class Persistent(nn.Module):
    """Pickles as NVlabs' persistent classes do: _reconstruct_persistent_obj(meta), meta holding the state."""

    module_src = MODULE_SRC
    nvlabs_class_name: str | None = None  # the class name written to meta (default: the Python class name)

    def init_args(self, **kwargs: Any) -> None:
        self._init_args = ()
        self._init_kwargs = copy.deepcopy(kwargs)

    def __reduce__(self) -> tuple:
        meta = dict(
            type="class",
            version=PERSISTENCE_VERSION,
            module_src=type(self).module_src,
            class_name=self.nvlabs_class_name or type(self).__name__,
            state=dict(self.__dict__),
        )
        return _reconstruct_persistent_obj, (meta,)


# ---------------------------------------------------------------------------------------------
# Ops (NVlabs' reference arithmetic, float32)
# ---------------------------------------------------------------------------------------------

LRELU_GAIN = np.sqrt(2)  # np.float64, as NVlabs' activation table stores it


def setup_filter(taps: list[int]) -> torch.Tensor:
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f.ger(f)  # 4 taps < 8: NVlabs builds the non-separable 2-D filter
    return f / f.sum()


def bias_act(
    x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None, clamp: float | None = None
) -> torch.Tensor:
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
        gain = LRELU_GAIN if gain is None else gain
    else:
        assert act == "linear"
        gain = 1 if gain is None else gain
    gain = float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-float(clamp), float(clamp))
    return x


def upfirdn2d(
    x: torch.Tensor, f: torch.Tensor, up: int = 1, padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1
) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    assert min(padding) >= 0
    x = F.pad(x, [px0, px1, py0, py1])
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])  # convolution, not correlation
    return F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    return upfirdn2d(x, f, up=up, padding=((fw + up - 1) // 2, (fw - up) // 2, (fw + up - 1) // 2, (fw - up) // 2), gain=up * up)


def conv2d_resample(
    x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, up: int = 1, padding: int = 0, groups: int = 1, flip_weight: bool = True
) -> torch.Tensor:
    out_ch, in_per_group, kh, kw = w.shape
    if up == 1:
        return F.conv2d(x, w if flip_weight else w.flip([2, 3]), padding=padding, groups=groups)
    fw = f.shape[-1]
    p0 = padding + (fw + up - 1) // 2 - (kw - 1)
    p1 = padding + (fw - up) // 2 - (kw - up)
    pt = max(min(-p0, -p1), 0)
    if groups == 1:
        w = w.transpose(0, 1)
    else:
        w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    # NVlabs passes flip_weight=(not flip_weight) to the transposed convolution.
    x = F.conv_transpose2d(x, w if not flip_weight else w.flip([2, 3]), stride=up, padding=pt, groups=groups)
    return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    if not fused_modconv:
        x = x * styles.reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight, resample_filter, up=up, padding=padding, flip_weight=flip_weight)
        if demodulate and noise is not None:
            x = torch.addcmul(noise, x, dcoefs.reshape(n, -1, 1, 1))  # NVlabs' fma(x, dcoefs, noise)
        elif demodulate:
            x = x * dcoefs.reshape(n, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise)
        return x
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w, resample_filter, up=up, padding=padding, groups=n, flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


# ---------------------------------------------------------------------------------------------
# Networks (layout and attribute names of NVlabs' training/networks.py)
# ---------------------------------------------------------------------------------------------


class FullyConnectedLayer(Persistent):
    def __init__(
        self, in_features: int, out_features: int, activation: str = "linear", lr_multiplier: float = 1, bias_init: float = 0
    ) -> None:
        super().__init__()
        self.init_args(
            in_features=in_features, out_features=out_features, activation=activation, lr_multiplier=lr_multiplier, bias_init=bias_init
        )
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], np.float32(bias_init)))
        self.weight_gain = lr_multiplier / np.sqrt(in_features)  # np.float64, pickled as a numpy scalar
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class MappingNetwork(Persistent):
    def __init__(
        self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8, lr_multiplier: float = 0.01, w_avg_beta: float = 0.995
    ) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if c_dim else 0
        if c_dim:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(
                self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            )
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim:
            x = torch.cat([x, normalize_2nd_moment(self.embed(c.to(torch.float32)))], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(Persistent):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        conv_clamp: float | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, True, "lrelu"
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        self.padding = kernel_size // 2
        self.act_gain = LRELU_GAIN
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "const", fused_modconv: bool = True) -> torch.Tensor:
        assert noise_mode in ("const", "none")  # 'random' draws fresh noise: nothing to compare
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            flip_weight=(self.up == 1),
            fused_modconv=fused_modconv,
        )
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain, clamp=self.conv_clamp)


class ToRGBLayer(Persistent):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(Persistent):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        conv_clamp: float | None = None,
        use_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.w_dim, self.resolution, self.img_channels = in_channels, w_dim, resolution, img_channels
        self.is_last, self.architecture, self.use_fp16, self.channels_last = is_last, "skip", use_fp16, False
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        self.num_conv, self.num_torgb = 0, 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, **kw: Any) -> tuple:
        w_iter = iter(ws.unbind(dim=1))
        fused = kw.pop("fused_modconv", True)
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), fused_modconv=fused, **kw)
        else:
            x = self.conv0(x, next(w_iter), fused_modconv=fused, **kw)
            x = self.conv1(x, next(w_iter), fused_modconv=fused, **kw)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused)
        img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(Persistent):
    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        conv_clamp: float | None = None,
        num_fp16_res: int = 0,
    ) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim,
                res,
                img_channels,
                is_last,
                conv_clamp=conv_clamp,
                use_fp16=res >= fp16_resolution,
            )
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, **kw: Any) -> torch.Tensor:
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), **kw)
            w_idx += block.num_conv
        return img


class Generator(Persistent):
    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        mapping_kwargs, synthesis_kwargs = EasyDict(mapping_kwargs or {}), EasyDict(synthesis_kwargs or {})
        self.init_args(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=mapping_kwargs,
            synthesis_kwargs=synthesis_kwargs,
        )
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1,
        noise_mode: str = "const",
        fused_modconv: bool = True,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)


class Discriminator(Persistent):
    """The snapshot's D, kept small: NVlabs snapshots pickle a discriminator beside G_ema, so ours
    does too, and the tests show the converter reads G_ema alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = FullyConnectedLayer(8, 1)


# ---------------------------------------------------------------------------------------------
# Test networks and snapshots
# ---------------------------------------------------------------------------------------------


def random_generator(
    seed: int = 0, resolution: int = 32, w_dim: int = 32, channels: int = 32, n_mlp: int = 2, conv_clamp: float | None = 256, c_dim: int = 0
) -> Generator:
    """A small NVlabs-layout generator with every parameter and buffer drawn at random.

    NVlabs initialises biases, noise strengths and w_avg to zero; they are randomised so that each of
    them changes the image (noise strengths ~0.3, w_avg clearly non-zero, affine biases around 1).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        g = Generator(
            w_dim,
            c_dim,
            w_dim,
            resolution,
            3,
            mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=0.01),
            synthesis_kwargs=dict(channel_base=channels * resolution, channel_max=channels, conv_clamp=conv_clamp, num_fp16_res=2),
        )
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.copy_(0.2 + 0.3 * torch.rand(p.shape, generator=gen))
            elif name.endswith("affine.bias"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.startswith("mapping.fc") and name.endswith("bias"):  # run-time gain 0.01: ~0.1 effective
                p.copy_(10 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        g.mapping.w_avg.copy_(torch.randn(w_dim, generator=gen))
    return g.eval().requires_grad_(False)


def snapshot(g_ema: nn.Module, g: nn.Module | None = None, **extra: Any) -> dict[str, Any]:
    """The dict a stylegan2-ada-pytorch training snapshot holds (G, D, G_ema, augment_pipe, training_set_kwargs).

    ``g`` is the non-EMA generator (default: the same object, which pickle then writes once)."""
    return dict(
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path="~/ffhq.zip",
            use_labels=False,
            max_size=70000,
            xflip=False,
            resolution=getattr(g_ema, "img_resolution", 0),
        ),
        G=g_ema if g is None else g,
        D=Discriminator(),
        G_ema=g_ema,
        augment_pipe=None,
        **extra,
    )


def dump_snapshot(data: Any, protocol: int = pickle.DEFAULT_PROTOCOL, module_src: str | None = None) -> bytes:
    """``pickle.dump`` of ``data`` with NVlabs' persistent reduction of every network."""
    previous = Persistent.module_src
    if module_src is not None:
        Persistent.module_src = module_src
    try:
        with nvlabs_modules():
            buffer = io.BytesIO()
            pickle.dump(data, buffer, protocol=protocol)
            return buffer.getvalue()
    finally:
        Persistent.module_src = previous


# ---- a StyleGAN3-shaped network (only what the converter must recognise and refuse) -----------


class SynthesisInput(Persistent):
    def __init__(self, w_dim: int, channels: int, size: int) -> None:
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = np.broadcast_to(np.asarray(size), [2])  # numpy arrays, as stylegan3 stores them
        self.sampling_rate, self.bandwidth = np.float64(16.0), np.float64(2.0)
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, bias_init=0)
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", torch.randn([channels, 2]))
        self.register_buffer("phases", torch.rand([channels]) - 0.5)


class SynthesisLayer3(Persistent):
    nvlabs_class_name = "SynthesisLayer"

    def __init__(self, w_dim: int, channels: int) -> None:
        super().__init__()
        self.in_size = np.broadcast_to(np.asarray(36), [2])
        self.in_cutoff = np.float64(2.0)
        self.affine = FullyConnectedLayer(w_dim, channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([channels, channels, 3, 3]))
        self.register_buffer("up_filter", torch.rand([12]))


class SynthesisNetwork3(Persistent):
    nvlabs_class_name = "SynthesisNetwork"

    def __init__(self, w_dim: int, channels: int) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels, self.num_ws = w_dim, 16, 3, 3
        self.input = SynthesisInput(w_dim, channels, 36)
        self.layer_names = ["L0_36_8"]
        self.L0_36_8 = SynthesisLayer3(w_dim, channels)


class Generator3(Persistent):
    nvlabs_class_name = "Generator"

    def __init__(self, w_dim: int = 8, channels: int = 8) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.img_resolution, self.img_channels = w_dim, 0, w_dim, 16, 3
        self.synthesis = SynthesisNetwork3(w_dim, channels)
        self.num_ws = 3
        self.mapping = MappingNetwork(w_dim, 0, w_dim, 3, num_layers=2)
