"""Ray Serve deployment of the ``person`` family: a thin adapter over ``deployments.person.ops``.

Every request of one model shares the model's fixed image size, so a group of ``recompose`` or
``sample`` tasks (sample grouped by the factors it keeps) is one tensor batch; an ``interpolate``
task is a batch of its own steps, returned as one strip.
"""

from __future__ import annotations

from typing import Any

import torch
from ray import serve

from deployments.images import images_to_tensor, strip, to_uint8_images
from deployments.person import ops as person_ops  # not "ops": cloudpickle would take it for torch.ops
from deployments.person.checkpoint import load_model
from deployments.person.networks import FACTORS, DisentangledPersonGenerator, PersonConfig
from deployments.warp.pose import keypoint_tensors
from schemas.person import InterpolateParams, RecomposeParams, SampleParams
from service.family import FamilyDeployment, GroupOutput
from service.tasks import EditTask


def api_keypoints(keypoints: torch.Tensor, visible: torch.Tensor) -> list[list[float] | None]:
    """(18, 2) + (18,) -> the API's keypoint list: [x, y] pixels or null."""
    return [[round(float(x), 2), round(float(y), 2)] if seen else None for (x, y), seen in zip(keypoints.tolist(), visible.tolist())]


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32, health_check_period_s=10)
class PersonDeployment(FamilyDeployment):
    family = "person"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self._canary = (
            DisentangledPersonGenerator(
                PersonConfig(
                    height=32,
                    width=16,
                    channels=2,
                    roi_size=4,
                    roi_dim=2,
                    background_dim=2,
                    pose_dim=2,
                    pose_hidden=4,
                    unet_depth=1,
                    mapping_hidden=4,
                    mapping_layers=1,
                )
            )
            .eval()
            .to(self.device)
        )

    def load_model(self, manifest: dict[str, Any], weights: bytes) -> DisentangledPersonGenerator:
        return load_model(weights, manifest, device=str(self.device))

    def _pose(self, tasks: list[EditTask], field: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The tasks' canonical keypoints in ``field`` -> (keypoints (n, 18, 2), visible (n, 18)) on the device."""
        points = [keypoint_tensors(t.inputs[field]) for t in tasks]
        return torch.stack([p for p, _ in points]).to(self.device), torch.stack([v for _, v in points]).to(self.device)

    def _people(self, tasks: list[EditTask], image: str, keypoints: str) -> person_ops.People:
        return person_ops.People(images_to_tensor([t.images[image] for t in tasks], self.device), *self._pose(tasks, keypoints))

    # ---- op handlers (named by deployments/person/spec.py) -----------------------------------
    def run_recompose(self, model: DisentangledPersonGenerator, tasks: list[EditTask], params: list[RecomposeParams]) -> list[GroupOutput]:
        rendered = person_ops.recompose(
            model,
            self._people(tasks, "foreground", "foreground_keypoints"),
            self._people(tasks, "background", "background_keypoints"),
            *self._pose(tasks, "pose_keypoints"),
        )
        return [GroupOutput(image, {"keypoints": t.inputs["pose_keypoints"]}) for image, t in zip(to_uint8_images(rendered.images), tasks)]

    def run_sample(self, model: DisentangledPersonGenerator, tasks: list[EditTask], params: list[SampleParams]) -> list[GroupOutput]:
        keep = frozenset(tasks[0].inputs["keep"])  # the group key: every task of the group keeps the same factors
        rendered = person_ops.sample(
            model, [t.inputs["seed"] for t in tasks], keep, self._people(tasks, "image", "keypoints") if keep else None
        )
        sampled = [factor for factor in FACTORS if factor not in keep]
        return [
            GroupOutput(image, {"seed": t.inputs["seed"], "kept": sorted(keep), "sampled": sampled, "keypoints": api_keypoints(k, v)})
            for image, t, k, v in zip(to_uint8_images(rendered.images), tasks, rendered.keypoints.cpu(), rendered.visible.cpu())
        ]

    def run_interpolate(
        self, model: DisentangledPersonGenerator, tasks: list[EditTask], params: list[InterpolateParams]
    ) -> list[GroupOutput]:
        outputs = []
        for task, p in zip(tasks, params):  # each task is a batch of its own steps
            rendered = person_ops.interpolate(
                model, p.factor, self._people([task], "start", "start_keypoints"), self._people([task], "end", "end_keypoints"), p.steps
            )
            image, offsets = strip(list(to_uint8_images(rendered.images)))
            steps = [
                {"x": x, "t": round(i / (len(offsets) - 1), 4), "keypoints": api_keypoints(k, v)}
                for i, (x, k, v) in enumerate(zip(offsets, rendered.keypoints.cpu(), rendered.visible.cpu()))
            ]
            outputs.append(GroupOutput(image, {"factor": p.factor, "steps": steps}))
        return outputs

    def health_forward(self) -> None:
        keypoints = torch.tensor([[[8.0 + (j % 3), 4.0 + j] for j in range(18)]], device=self.device)
        visible = torch.ones(1, 18, dtype=torch.bool, device=self.device)
        with torch.inference_mode():
            out = self._canary(torch.zeros(1, 3, 32, 16, device=self.device), keypoints, visible)
        if not torch.isfinite(out).all():
            raise RuntimeError("person canary forward produced non-finite values")
