"""Ray Serve deployment of the ``ingan`` family: a thin adapter over ``deployments.ingan.ops``.

``retarget`` runs the model's generator on its own image once per requested output (sizes differ,
so outputs do not stack into one tensor batch); several outputs come back as one strip, with the
requested and produced size of each in the extras. Training (``fit``) never runs here: it is a job
that the job runner executes as a Ray task (``deployments/ingan/fit_job.py``), so a long training
run does not hold up this replica's batches.
"""

from __future__ import annotations

from typing import Any

import torch
from ray import serve

from deployments.ingan import ops as ingan_ops  # not "ops": cloudpickle would take it for torch.ops
from deployments.ingan.checkpoint import InGANModel, load_model
from deployments.ingan.ingan import Generator, InGANConfig
from schemas.ingan import RetargetParams
from service.family import FamilyDeployment, GroupOutput
from service.tasks import EditTask


@serve.deployment(ray_actor_options={"num_cpus": 0.4}, max_ongoing_requests=32, health_check_period_s=10)
class InganDeployment(FamilyDeployment):
    family = "ingan"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self._canary = Generator(InGANConfig(base_channels=4, n_downscales=1, n_resblocks=1)).eval().to(self.device)

    def load_model(self, manifest: dict[str, Any], weights: bytes) -> InGANModel:
        return load_model(weights, manifest, device=self.device)

    def run_retarget(self, model: InGANModel, tasks: list[EditTask], params: list[RetargetParams]) -> list[GroupOutput]:
        """The op handler (named by deployments/ingan/spec.py)."""
        self._refresh(tasks[0].model, model)
        # One group shares model and targets, so its outputs are the same images (the op is
        # deterministic): computed once, with each task's own requested sizes in its extras.
        targets = [ingan_ops.Target(int(h), int(w), float(tl), float(tr)) for h, w, tl, tr in tasks[0].inputs["targets"]]
        images = ingan_ops.retarget(model.generator, model.source, targets)
        image, offsets = ingan_ops.strip(images) if len(images) > 1 else (images[0], [0])
        outputs = []
        for p in params:
            requested = p.outputs
            extras = {
                "size_multiple": model.size_multiple,
                "source_size": list(model.source.shape[2:]),
                "outputs": [
                    {
                        "requested": [r.height, r.width],
                        "produced": [t.height, t.width],
                        "x": x,
                        "homography": {"top_left": t.top_left, "top_right": t.top_right} if t.top_left or t.top_right else None,
                        "snapped": [r.height, r.width] != [t.height, t.width],
                    }
                    for r, t, x in zip(requested, targets, offsets)
                ],
            }
            outputs.append(GroupOutput(image, extras))
        return outputs

    def _refresh(self, name: str, model: InGANModel) -> None:
        """A fit job that reuses a model name replaces its weights in S3 while this replica may hold the
        old ones (the multiplexed cache is keyed by name): reload in place when the registered sha256
        differs. One manifest GET per group; refits are this family's normal course."""
        self.registry.invalidate(name)
        current = self.registry.get_manifest(name)
        if current.get("weights_sha256") != model.manifest.get("weights_sha256"):
            fresh = load_model(self.registry.load_weights(name), current, device=self.device)
            model.generator, model.source, model.manifest = fresh.generator, fresh.source, fresh.manifest
            self.log.info("model reloaded", extra={"model": name, "weights_sha256": current.get("weights_sha256")})

    def health_forward(self) -> None:
        with torch.inference_mode():
            out = self._canary(torch.zeros(1, 3, 8, 8, device=self.device), (4, 6))
        if out.shape != (1, 3, 4, 6) or not torch.isfinite(out).all():
            raise RuntimeError("ingan canary forward failed")
