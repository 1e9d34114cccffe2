"""Serve adapter of the ``style`` family: StyleGAN2 checkpoints behind the batched family base."""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import torch
from ray import serve

from deployments.style import ops
from deployments.style.checkpoint import load_generator
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from service.errors import Unprocessable
from service.family import FamilyDeployment, GroupOutput
from service.tasks import EditTask


@dataclasses.dataclass
class LoadedStyleModel:
    generator: Generator  # eval mode, on the replica's device
    mean_w: torch.Tensor  # (style_dim,) truncation centre: the checkpoint's latent_avg or a seeded estimate
    manifest: dict[str, Any]


def sample_batch(model: LoadedStyleModel, tasks: list[EditTask]) -> torch.Tensor:
    """Seeds, z and w requests of one model as one W+ batch -> images (N, 3, R, R) in [-1, 1]."""
    generator = model.generator
    device = model.mean_w.device
    n_latent, style_dim = generator.n_latent, model.mean_w.shape[-1]
    ws = []
    with torch.inference_mode():
        for task in tasks:
            if "w" in task.inputs:
                w = torch.tensor(task.inputs["w"], dtype=torch.float32, device=device)
                ws.append(w.view(-1, style_dim).expand(n_latent, style_dim) if w.numel() == style_dim else w.view(n_latent, style_dim))
                continue
            if "z" in task.inputs:
                z = torch.tensor(task.inputs["z"], dtype=torch.float32).view(1, style_dim)
            else:
                z = ops.latents_from_seeds([int(task.inputs["seed"])], style_dim)
            ws.append(generator.mapping(z.to(device)).view(1, style_dim).expand(n_latent, style_dim))
        w_plus = torch.stack(ws)  # (N, n_latent, style_dim)
        psi = torch.tensor([float(t.params.get("truncation", 1.0)) for t in tasks], device=device).view(-1, 1, 1)
        w_plus = model.mean_w.view(1, 1, -1) + psi * (w_plus - model.mean_w.view(1, 1, -1))
        return ops.sample(generator, w=w_plus, truncation=1.0)


def project_batch(model: LoadedStyleModel, tasks: list[EditTask]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Project requests of one model sharing (size, steps, learning rate, space) -> images + per-task extras."""
    params = tasks[0].params
    device = model.mean_w.device
    target = ops.images_to_tensor([task.images["image"] for task in tasks], device)
    w_plus, image, mse = ops.project(model.generator, target, mean_w=model.mean_w, steps=int(params["steps"]),
                                     learning_rate=float(params["learning_rate"]), latent_space=params["latent_space"])
    extras = []
    for row, error in zip(w_plus, mse):
        latent = row[:1] if params["latent_space"] == "w" else row  # W: every layer holds the same w
        extras.append({"w": latent.reshape(-1).tolist(), "latent_space": params["latent_space"], "mse": float(error)})
    return image, extras


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=32, health_check_period_s=10)
class StyleDeployment(FamilyDeployment):
    family = "style"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self._canary = Generator(StyleGAN2Config(resolution=8, style_dim=8, n_mlp=1, channel_max=8)).eval().to(self.device)

    def load_model(self, manifest: dict[str, Any], weights: bytes) -> LoadedStyleModel:
        generator, latent_avg = load_generator(weights, manifest["arch"], device=str(self.device))
        mean_w = latent_avg if latent_avg is not None else generator.mean_latent()
        return LoadedStyleModel(generator=generator, mean_w=mean_w.reshape(-1).to(self.device), manifest=manifest)

    def group_key(self, task: EditTask) -> Hashable:
        if task.op == "project":  # one optimisation loop needs one step count, rate and latent space
            p = task.params
            return (task.images["image"].shape, p["steps"], p["learning_rate"], p["latent_space"])
        return ()  # every sample request of a model maps to one W+ batch of the same output shape

    def run_group(self, model: LoadedStyleModel, op: str, tasks: list[EditTask]) -> list[GroupOutput]:
        if op == "sample":
            return [GroupOutput(image) for image in ops.to_uint8_images(sample_batch(model, tasks))]
        if op == "project":
            images, extras = project_batch(model, tasks)
            return [GroupOutput(image, extra) for image, extra in zip(ops.to_uint8_images(images), extras)]
        raise Unprocessable(f"style op {op!r} is not served by this deployment")

    def health_forward(self) -> None:
        with torch.inference_mode():
            image = self._canary(z=torch.zeros(1, 8, device=self.device))
        image = image[0] if isinstance(image, tuple) else image
        if not torch.isfinite(image).all():
            raise RuntimeError("style canary forward produced non-finite values")
