"""Ray Serve deployment of the ``collage`` family: a thin adapter over ``deployments.collage.ops``.

Every op of a (model, truncation) group (the group keys of ``deployments/collage/spec.py``) runs as
one tensor batch: collages with different masks, classes, layer sets and reference counts share one
forward pass, because masks, classes and layer choices are per-sample tensors (see
``ops.spatial_class_weights`` and ``ops.feature_collage``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from ray import serve

from deployments.collage import ops
from deployments.collage.checkpoint import load_generator
from deployments.collage.sngan import SNGANConfig, SNGANGenerator
from deployments.images import images_to_tensor, to_uint8_images
from schemas.collage import FeatureCollageParams, LabelCollageParams, ProjectParams, SampleParams
from service.family import FamilyDeployment, GroupOutput, WarmupRequest
from service.tasks import EditTask


@dataclasses.dataclass
class LoadedCollageModel:
    generator: torch.nn.Module
    manifest: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.get("classes") or [])


def latents(model: LoadedCollageModel, refs: list[dict[str, Any]], truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical latent references (seed | z, plus class) -> z (B, z_dim) and class weights (B, K)."""
    generator = model.generator
    z = torch.zeros(len(refs), generator.z_dim)
    seeded = [i for i, ref in enumerate(refs) if "seed" in ref]
    if seeded:
        z[seeded] = ops.truncated_latents([refs[i]["seed"] for i in seeded], generator.z_dim, truncation)
    for i, ref in enumerate(refs):
        if "z" in ref:
            z[i] = torch.tensor(ref["z"], dtype=torch.float32)
    classes = ops.class_vectors([{int(k): v for k, v in ref["class"].items()} for ref in refs], generator.num_classes)
    return z.to(model.device), classes.to(model.device)


def class_names(model: LoadedCollageModel, weights: dict[str, float]) -> dict[str, float]:
    return {model.classes[int(k)]: v for k, v in weights.items()}


def sample_batch(model: LoadedCollageModel, tasks: list[EditTask], truncation: float) -> torch.Tensor:
    z, classes = latents(model, [t.inputs for t in tasks], truncation)
    with torch.inference_mode():
        return model.generator(z, classes, truncation)


def masks_tensor(task: EditTask, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.stack(task.images["masks"])).to(device)


def label_collage_batch(model: LoadedCollageModel, tasks: list[EditTask], truncation: float) -> tuple[torch.Tensor, list[dict]]:
    generator, device = model.generator, model.device
    z, base_classes = latents(model, [t.inputs["base"] for t in tasks], truncation)
    region_masks = [masks_tensor(t, device) for t in tasks]
    region_classes = [ops.class_vectors([{r["class"]: 1.0} for r in t.inputs["regions"]], generator.num_classes).to(device) for t in tasks]
    intensities = [torch.tensor([float(r["intensity"]) for r in t.inputs["regions"]], device=device) for t in tasks]
    uses_block = torch.zeros(len(tasks), generator.n_blocks, dtype=torch.bool)
    for i, task in enumerate(tasks):
        uses_block[i, task.inputs["layers"]] = True
    with torch.inference_mode():
        mixture = ops.spatial_class_weights(base_classes, region_masks, region_classes, intensities)
        images = ops.label_collage(generator, z, base_classes, mixture, uses_block, truncation)
    extras = []
    for i, task in enumerate(tasks):
        share = mixture.weights[i, 1 : 1 + len(task.inputs["regions"])].mean((1, 2)).tolist()
        extras.append(
            {
                "layers": task.inputs["layers"],
                "base_class": class_names(model, task.inputs["base"]["class"]),
                "regions": [
                    {"class": model.classes[r["class"]], "intensity": r["intensity"], "area": round(s, 4)}
                    for r, s in zip(task.inputs["regions"], share)
                ],
            }
        )
    return images, extras


def feature_collage_batch(model: LoadedCollageModel, tasks: list[EditTask], truncation: float) -> tuple[torch.Tensor, list[dict]]:
    generator, device = model.generator, model.device
    z, classes = latents(model, [t.inputs["base"] for t in tasks], truncation)
    refs = [(i, ref) for i, t in enumerate(tasks) for ref in t.inputs["references"]]
    z_ref, classes_ref = latents(model, [ref for _, ref in refs], truncation)
    owners = torch.tensor([i for i, _ in refs], device=device)
    masks = torch.stack([torch.tensor(tasks[i].images["masks"][ref["mask"]]) for i, ref in refs]).to(device)
    uses_block = torch.zeros(len(refs), generator.n_blocks, dtype=torch.bool)
    for r, (_, ref) in enumerate(refs):
        uses_block[r, ref["layers"]] = True
    shifts = torch.tensor([ref["shift"] for _, ref in refs], dtype=torch.long)
    with torch.inference_mode():
        _, features = ops.block_features(generator, z_ref, classes_ref, truncation)
        images = ops.feature_collage(generator, z, classes, features, owners, masks, uses_block, shifts, truncation)
    extras = [
        {
            "base_class": class_names(model, t.inputs["base"]["class"]),
            "references": [
                {"class": class_names(model, ref["class"]), "layers": ref["layers"], "shift": ref["shift"]}
                for ref in t.inputs["references"]
            ],
        }
        for t in tasks
    ]
    return images, extras


def project_batch(model: LoadedCollageModel, tasks: list[EditTask], params: ProjectParams) -> tuple[torch.Tensor, list[dict]]:
    """Project requests sharing one optimisation loop's ``params`` (the group key's) -> images + per-task extras."""
    targets = images_to_tensor([t.images["image"] for t in tasks], model.device)
    trace: list[tuple[int, list[float]]] = []
    every = max(1, params.steps // 10)

    def record(step: int, errors: torch.Tensor) -> None:
        if step % every == 0:
            trace.append((step, errors.tolist()))

    fit = ops.project(
        model.generator,
        targets,
        [t.inputs["candidates"] for t in tasks],
        steps=params.steps,
        learning_rate=params.learning_rate,
        search_fraction=params.search_fraction,
        truncation=params.truncation,
        on_step=record,
    )
    with torch.inference_mode():
        classes = torch.nn.functional.one_hot(fit["class_index"], model.generator.num_classes).float()
        images = model.generator(fit["z"], classes, params.truncation)
    extras = []
    for i in range(len(tasks)):
        index = int(fit["class_index"][i])
        extras.append(
            {
                "z": [round(v, 6) for v in fit["z"][i].tolist()],
                "class": {str(index): 1.0},
                "class_name": model.classes[index],
                "error": round(float(fit["error"][i]), 6),
                "candidates": {model.classes[c]: round(e, 6) for c, e in fit["candidate_errors"][i].items()},
                "truncation": params.truncation,
                "progress": [{"step": s, "error": round(e[i], 6)} for s, e in trace],
            }
        )
    return images, extras


def with_extras(images: torch.Tensor, extras: list[dict]) -> list[GroupOutput]:
    return [GroupOutput(image, extra) for image, extra in zip(to_uint8_images(images), extras)]


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=32, health_check_period_s=10)
class CollageDeployment(FamilyDeployment):
    family = "collage"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        config = SNGANConfig(z_dim=4, n_classes=2, ch=2, channel_multipliers=(2, 1))
        self._canary = SNGANGenerator(config).eval().to(self.device)

    def load_model(self, manifest: dict[str, Any], weights: bytes) -> LoadedCollageModel:
        return LoadedCollageModel(generator=load_generator(weights, manifest, device=str(self.device)), manifest=manifest)

    def warmup_requests(self, manifest: dict[str, Any]) -> list[WarmupRequest]:
        return [WarmupRequest("sample", inputs={"class_id": 0})]

    # ---- op handlers (named by deployments/collage/spec.py); a group shares params.truncation ----
    def run_sample(self, model: LoadedCollageModel, tasks: list[EditTask], params: list[SampleParams]) -> list[GroupOutput]:
        return [GroupOutput(image) for image in to_uint8_images(sample_batch(model, tasks, params[0].truncation))]

    def run_label_collage(self, model: LoadedCollageModel, tasks: list[EditTask], params: list[LabelCollageParams]) -> list[GroupOutput]:
        return with_extras(*label_collage_batch(model, tasks, params[0].truncation))

    def run_feature_collage(
        self, model: LoadedCollageModel, tasks: list[EditTask], params: list[FeatureCollageParams]
    ) -> list[GroupOutput]:
        return with_extras(*feature_collage_batch(model, tasks, params[0].truncation))

    def run_project(self, model: LoadedCollageModel, tasks: list[EditTask], params: list[ProjectParams]) -> list[GroupOutput]:
        return with_extras(*project_batch(model, tasks, params[0]))

    def health_forward(self) -> None:
        with torch.inference_mode():
            image = self._canary(torch.zeros(1, 4, device=self.device), torch.tensor([[1.0, 0.0]], device=self.device))
        if not torch.isfinite(image).all():
            raise RuntimeError("collage canary forward produced non-finite values")
