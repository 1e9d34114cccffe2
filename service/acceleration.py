"""Speed options of the generators, the same for every family (``COLLAGE_ACCEL_*`` settings).

Each option trades something, so each is off by default and measured by ``python -m
loadtests.accel`` (throughput and the largest output difference vs fp32, per family op):

- ``precision``: ``fp32`` | ``bf16`` | ``fp16`` — autocast around each group's forward pass
  (convolutions and matmuls in the low precision, reductions in fp32; images are converted to
  uint8 from fp32). ``fp16`` needs CUDA.
- ``channels_last``: the generator's weights (and so its activations) in NHWC, which cuDNN and
  oneDNN convolutions prefer.
- ``compile``: ``torch.compile`` of the generator's forward — or of the submodules and methods its
  class names in ``compile_targets``, where the ops call those instead — in place, once per loaded model;
  shapes are static, so each batch size compiles once. Family replicas pad groups to a few batch
  buckets and compile those at start (``FamilyDeployment.warm_up``), before taking traffic.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import torch
from torch import nn

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Acceleration:
    precision: str = "fp32"  # autocast dtype of the forward pass: fp32 (off), bf16 or fp16 (CUDA only)
    channels_last: bool = False  # NHWC weights and activations
    compile: bool = False  # torch.compile(generator) in place, static shapes

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {self.precision!r}")

    @classmethod
    def from_settings(cls, settings: Any) -> "Acceleration":
        return cls(precision=settings.accel_precision, channels_last=settings.accel_channels_last, compile=settings.accel_compile)

    def check_device(self, device: torch.device) -> None:
        if self.precision == "fp16" and device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use bf16 on CPU")

    def prepare(self, model: Any) -> Any:
        """Apply the module options to the loaded model's generator (``model.generator``, or the model itself)."""
        module = getattr(model, "generator", model)
        if not isinstance(module, nn.Module):
            return model
        if self.channels_last:  # rank-4 tensors only: StyleGAN2 keeps 5-D modulated weights
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.dim() == 4:
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        if self.compile:
            # Each (batch bucket, op call signature) is one specialisation of the same forward; the
            # default limit of 8 would drop a busy replica back to eager after a few buckets and ops.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            for name in getattr(module, "compile_targets", ("",)):  # "" = the module's forward
                target = getattr(module, name) if name else module
                if isinstance(target, nn.Module):
                    target.compile(dynamic=False)
                else:  # a method: the compiled function, set on the instance, shadows the class's
                    setattr(module, name, torch.compile(target, dynamic=False))
        return model

    @contextlib.contextmanager
    def autocast(self, device: torch.device) -> Iterator[None]:
        if self.precision == "fp32":
            yield
            return
        self.check_device(device)
        with torch.autocast(device_type=device.type, dtype=PRECISIONS[self.precision]):
            yield

    def describe(self) -> str:
        parts = [self.precision] + (["channels_last"] if self.channels_last else []) + (["compile"] if self.compile else [])
        return "+".join(parts)
