"""Serve adapter of the ``style`` family: StyleGAN2 checkpoints behind the batched family base."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from ray import serve

from deployments.style import editing, ops
from deployments.style.catalog import PALETTE, Catalog, build_catalog, cluster_maps, colorize, mask_part_weights, upsample_labels
from deployments.style.checkpoint import load_generator
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from schemas.style import CATALOG, CatalogParams, LocalTransferParams, PartMapParams, ProjectParams, SampleParams
from service.errors import Conflict
from service.family import FamilyDeployment, GroupOutput, WarmupRequest
from service.tasks import EditTask


@dataclasses.dataclass
class LoadedStyleModel:
    generator: Generator  # eval mode, on the replica's device
    mean_w: torch.Tensor  # (style_dim,) truncation centre: the checkpoint's latent_avg or a seeded estimate
    manifest: dict[str, Any]
    catalogs: dict[str, Catalog] = dataclasses.field(default_factory=dict)  # part catalogs by sha256


def ws_from_latent(model: LoadedStyleModel, latent: dict[str, Any], truncation: float) -> torch.Tensor:
    """One canonical latent ({seed} | {z} | {w}, projections resolved to {w}) -> W+ (n_latent, style_dim).

    Truncation lerps every latent toward the model's mean w (psi = 1: unchanged).
    """
    generator = model.generator
    device = model.mean_w.device
    n_latent, style_dim = generator.n_latent, model.mean_w.shape[-1]
    if "w" in latent:
        w = torch.tensor(latent["w"], dtype=torch.float32, device=device)
        ws = w.view(1, style_dim).expand(n_latent, style_dim) if w.numel() == style_dim else w.view(n_latent, style_dim)
    else:
        if "z" in latent:
            z = torch.tensor(latent["z"], dtype=torch.float32).view(1, style_dim)
        else:
            z = ops.latents_from_seeds([int(latent["seed"])], style_dim)
        ws = generator.mapping(z.to(device)).view(1, style_dim).expand(n_latent, style_dim)
    if truncation == 1.0:
        return ws
    return model.mean_w.view(1, -1) + float(truncation) * (ws - model.mean_w.view(1, -1))


def sample_batch(model: LoadedStyleModel, tasks: list[EditTask], params: list[SampleParams]) -> torch.Tensor:
    """Seeds, z and w requests of one model as one W+ batch -> images (N, 3, R, R) in [-1, 1]."""
    with torch.inference_mode():
        w_plus = torch.stack([ws_from_latent(model, task.inputs, p.truncation) for task, p in zip(tasks, params)])
        return ops.sample(model.generator, w=w_plus, truncation=1.0)


PROGRESS_POINTS = 10  # loss samples reported per projection (plus the first step and the final fit)


def project_batch(model: LoadedStyleModel, tasks: list[EditTask], params: ProjectParams) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Project requests of one model sharing (size, steps, learning rate, space: ``params``, the group
    key's) -> images + per-task extras."""
    device = model.mean_w.device
    target = ops.images_to_tensor([task.images["image"] for task in tasks], device)
    steps = params.steps
    every = max(1, steps // PROGRESS_POINTS)
    trace: list[tuple[int, list[float]]] = []

    def record(step: int, row_mse: torch.Tensor) -> None:
        if step == 1 or step % every == 0:
            trace.append((step, row_mse.tolist()))

    w_plus, image, mse = ops.project(
        model.generator,
        target,
        mean_w=model.mean_w,
        steps=steps,
        learning_rate=params.learning_rate,
        latent_space=params.latent_space,
        on_step=record,
    )
    extras = []
    for i, (row, error) in enumerate(zip(w_plus, mse)):
        latent = row[:1] if params.latent_space == "w" else row  # W: every layer holds the same w
        progress = [{"step": step, "mse": round(values[i], 6)} for step, values in trace]
        extras.append(
            {
                "w": latent.reshape(-1).tolist(),
                "latent_space": params.latent_space,
                "mse": float(error),
                "progress": progress + [{"step": steps, "mse": round(float(error), 6), "final": True}],
            }
        )
    return image, extras


def catalog_batch(model: LoadedStyleModel, p: CatalogParams) -> tuple[Catalog, np.ndarray]:
    """Build a catalog from the task's params -> (catalog, preview: 8 samples above their part maps)."""
    generator = model.generator
    catalog = build_catalog(
        generator,
        k=p.k,
        n_samples=p.n_samples,
        seed=p.seed,
        cluster_layer=p.cluster_layer,
        truncation=p.truncation,
        mean_w=model.mean_w,
        iterations=p.iterations,
    )
    if p.labels:
        catalog.labels = list(p.labels)
    with torch.inference_mode():
        z = torch.randn(8, generator.style_dim, generator=torch.Generator().manual_seed(p.seed))
        styles = generator.styles_from_ws(generator.broadcast_w(generator.mapping(z.to(generator.device))))
        images, labels = cluster_maps(generator, catalog, styles)
    maps = colorize(upsample_labels(labels, generator.resolution))
    preview = np.concatenate([np.concatenate(list(ops.to_uint8_images(images)), 1), np.concatenate(list(maps), 1)], 0)
    return catalog, preview


def part_map_batch(
    model: LoadedStyleModel, catalog: Catalog, tasks: list[EditTask], params: list[PartMapParams]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Targets -> colour-coded part maps (N, R, R, 3) and per-task extras (legend, pixel share per label)."""
    generator = model.generator
    with torch.inference_mode():
        ws = torch.stack([ws_from_latent(model, task.inputs["target"], p.truncation) for task, p in zip(tasks, params)])
        _, labels = cluster_maps(generator, catalog, generator.styles_from_ws(ws))
    full = upsample_labels(labels, generator.resolution)
    legend = {f"{k}:{label}": PALETTE[k % len(PALETTE)].tolist() for k, label in enumerate(catalog.labels)}
    extras = []
    for row in full:
        counts = torch.bincount(row.flatten(), minlength=catalog.k).tolist()
        share: dict[str, float] = {}
        for k, count in enumerate(counts):
            share[catalog.labels[k]] = share.get(catalog.labels[k], 0.0) + count / row.numel()
        extras.append({"legend": legend, "share": {k: round(v, 4) for k, v in share.items() if v > 0}})
    return colorize(full), extras


def local_transfer_batch(
    model: LoadedStyleModel, catalog: Catalog, tasks: list[EditTask], params: list[LocalTransferParams]
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """(S, R, part) requests as one batch: sigma_G = sigma_S + Q (sigma_R - sigma_S) per layer -> images + extras."""
    generator = model.generator
    device = model.mean_w.device
    with torch.inference_mode():
        ws_target = torch.stack([ws_from_latent(model, t.inputs["target"], p.truncation) for t, p in zip(tasks, params)])
        ws_reference = torch.stack([ws_from_latent(model, t.inputs["reference"], p.truncation) for t, p in zip(tasks, params)])
        styles_target = generator.styles_from_ws(ws_target)
        styles_reference = generator.styles_from_ws(ws_reference)
        part_weights = torch.zeros(len(tasks), catalog.k, device=device)
        masked = [i for i, t in enumerate(tasks) if "mask" in t.images]
        if masked:  # a mask names a part by how it overlaps the target's own cluster map
            _, labels = cluster_maps(generator, catalog, [s[masked] for s in styles_target])
            masks = torch.from_numpy(np.stack([tasks[i].images["mask"] for i in masked])).to(device)
            part_weights[masked] = mask_part_weights(labels, masks, catalog.k).to(device)
        for i, task in enumerate(tasks):
            for k in task.inputs.get("clusters", []):
                part_weights[i, k] = 1.0
        queries: list[torch.Tensor | None] = []
        changed: list[dict[str, int]] = [{} for _ in tasks]
        for layer in generator.style_layers:
            m = catalog.contributions[layer.name].to(device)  # (K, C)
            q = torch.zeros(len(tasks), layer.channels, device=device)
            for i, p in enumerate(params):
                if p.layers is not None and layer.name not in p.layers:
                    continue
                q[i] = editing.part_query(m, part_weights[i], p.query, strength=p.strength, rho=p.rho, epsilon=p.epsilon)
                changed[i][layer.name] = int((q[i] > 0).sum())
            queries.append(q)
        styles = editing.interpolate_styles(styles_target, styles_reference, queries)
        images = generator.synthesis_from_styles(styles, noise_mode="const")
    extras = []
    for i in range(len(tasks)):
        weights = {f"{k}:{catalog.labels[k]}": round(float(v), 4) for k, v in enumerate(part_weights[i].tolist()) if v > 0}
        extras.append(
            {
                "part_weights": weights,
                "channels_changed": {k: v for k, v in changed[i].items() if v},
                "total_channels_changed": sum(changed[i].values()),
            }
        )
    return images, extras


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

    def warmup_requests(self, manifest: dict[str, Any]) -> list[WarmupRequest]:
        return [WarmupRequest("sample")]  # the generator's forward; the catalog ops run the synthesis network uncompiled

    def catalog_for(self, model: LoadedStyleModel, model_name: str, sha256: str) -> Catalog:
        """The catalog a request was validated against, loaded once per replica and checked."""
        if sha256 not in model.catalogs:
            data, meta = self.registry.load_attachment(model_name, CATALOG)
            if meta["sha256"] != sha256:
                raise Conflict(f"the catalog of {model_name!r} was replaced while this request was queued; send it again")
            model.catalogs = {sha256: Catalog.from_bytes(data, meta)}
        return model.catalogs[sha256]

    # ---- op handlers (named by deployments/style/spec.py) ------------------------------------
    def run_sample(self, model: LoadedStyleModel, tasks: list[EditTask], params: list[SampleParams]) -> list[GroupOutput]:
        return [GroupOutput(image) for image in ops.to_uint8_images(sample_batch(model, tasks, params))]

    def run_project(self, model: LoadedStyleModel, tasks: list[EditTask], params: list[ProjectParams]) -> list[GroupOutput]:
        images, extras = project_batch(model, tasks, params[0])  # the group key: one loop's params for all
        return [GroupOutput(image, extra) for image, extra in zip(ops.to_uint8_images(images), extras)]

    def run_catalog(self, model: LoadedStyleModel, tasks: list[EditTask], params: list[CatalogParams]) -> list[GroupOutput]:
        (task,), (p,) = tasks, params  # the group key: each build alone
        catalog, preview = catalog_batch(model, p)
        meta = self.registry.put_attachment(task.model, CATALOG, catalog.to_bytes(), catalog.meta(model.generator.style_layers))
        model.catalogs = {meta["sha256"]: catalog}
        return [GroupOutput(preview, {"catalog": meta})]

    def run_part_map(self, model: LoadedStyleModel, tasks: list[EditTask], params: list[PartMapParams]) -> list[GroupOutput]:
        catalog = self.catalog_for(model, tasks[0].model, tasks[0].inputs["catalog"])  # the group key: one catalog
        maps, extras = part_map_batch(model, catalog, tasks, params)
        return [GroupOutput(image, extra) for image, extra in zip(maps, extras)]

    def run_local_transfer(self, model: LoadedStyleModel, tasks: list[EditTask], params: list[LocalTransferParams]) -> list[GroupOutput]:
        catalog = self.catalog_for(model, tasks[0].model, tasks[0].inputs["catalog"])  # the group key: one catalog
        images, extras = local_transfer_batch(model, catalog, tasks, params)
        return [GroupOutput(image, extra) for image, extra in zip(ops.to_uint8_images(images), extras)]

    def health_forward(self) -> None:
        with torch.inference_mode():
            image = self._canary(z=torch.zeros(1, 8, device=self.device))
        image = image[0] if isinstance(image, tuple) else image
        if not torch.isfinite(image).all():
            raise RuntimeError("style canary forward produced non-finite values")
