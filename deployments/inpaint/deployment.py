"""Ray Serve deployment of the ``inpaint`` family: a thin adapter over ``deployments.inpaint.ops``.

Requests whose images pad to the same size (multiples of 4, at least 12 px) and that name the same
``params.edge_map`` run as one tensor batch; each image is padded on its own, so its result is what
it would get alone. Canny edges are found per image on the CPU before the batch. The edge map the
inpainting generator got is stored as an asset of its own (content-addressed like an upload), so it
can be fetched with ``GET /v1/assets/{id}``, edited, and sent back as ``inputs.edges``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from ray import serve

from deployments.inpaint import ops as edge_connect  # not "ops": cloudpickle would take it for torch.ops
from deployments.inpaint.checkpoint import load_model
from deployments.inpaint.edgeconnect import EdgeConnect, EdgeConnectConfig
from deployments.inpaint.spec import FAMILY
from schemas.inpaint import InpaintParams
from service.family import FamilyDeployment, GroupOutput, WarmupRequest
from service.images import encode_png
from service.tasks import EditTask


def gray_of(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float (H, W) luma in [0, 1] (the weights of ops.to_gray)."""
    return (image.astype(np.float32) / 255.0) @ np.asarray(edge_connect.GRAY_WEIGHTS, np.float32)


def _padded(array: np.ndarray, mode: str) -> torch.Tensor:
    """(H, W[, C]) -> (C, Hb, Wb) float tensor padded like ops.pad_to_multiple pads."""
    tensor = torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: decoded images are read-only
    tensor = tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor.unsqueeze(0)
    return edge_connect.pad_to_multiple(tensor.unsqueeze(0), mode=mode)[0]


def params_of(task: EditTask) -> InpaintParams:
    """The task's typed params (built once per task; the schema's defaults fill a hand-built task's)."""
    return FamilyDeployment.op_params(FAMILY.ops["inpaint"], task)


def inpaint_batch(model: EdgeConnect, tasks: list[EditTask], device: torch.device) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tasks of one size bucket and one edge map -> per task (merged image (H, W, 3) uint8, the edge
    map the inpainting generator got (H, W) uint8).

    Each image is padded to the bucket on its own (as ``ops.complete`` would pad it alone), so a
    result does not depend on what else shares the batch.
    """
    params = [params_of(t) for t in tasks]
    modes = {p.edge_map for p in params}
    if len(modes) != 1:
        raise ValueError(f"one inpaint batch runs one edge map, got {sorted(modes)}")
    (mode,) = modes
    holes = [t.images["mask"] for t in tasks]
    edges = [edge_connect.canny_edges(gray_of(t.images["image"]), t.images["mask"], p.sigma) for t, p in zip(tasks, params)]
    images = torch.stack([_padded(t.images["image"], "reflect") / 255 for t in tasks]).to(device)
    masks = torch.stack([_padded(h.astype(np.float32), "constant") for h in holes]).to(device)
    edge_maps = torch.stack([_padded(e, "constant") for e in edges]).to(device)
    user = None
    if any("edges" in t.images for t in tasks):
        strokes = [t.images["edges"] if "edges" in t.images else np.zeros(h.shape, bool) for t, h in zip(tasks, holes)]
        user = torch.stack([_padded(s.astype(np.float32), "constant") for s in strokes]).to(device)
    with torch.inference_mode():
        merged, completed = edge_connect.complete(model, images, masks, edge_maps, user, edge_map=mode)
    merged = (merged.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    completed = (completed[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [(m[: h.shape[0], : h.shape[1]], c[: h.shape[0], : h.shape[1]]) for m, c, h in zip(merged, completed, holes)]


@serve.deployment(ray_actor_options={"num_cpus": 1}, max_ongoing_requests=32, health_check_period_s=10)
class InpaintDeployment(FamilyDeployment):
    family = "inpaint"
    # Compiled graphs are specialised per padded image size too: the warm-up compiles this one (the
    # size the benchmarks and the EdgeConnect paper use); other sizes compile on first use.
    warmup_image_size = 256

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self._canary = EdgeConnect(EdgeConnectConfig(channels=2, residual_blocks=1)).eval().to(self.device)

    def load_model(self, manifest: dict[str, Any], weights: bytes) -> EdgeConnect:
        return load_model(weights, manifest, device=str(self.device))

    def warmup_requests(self, manifest: dict[str, Any]) -> list[WarmupRequest]:
        size = self.warmup_image_size
        ramp = np.linspace(0, 255, size, dtype=np.uint8)
        image = np.stack([np.add.outer(ramp, ramp) // 2, np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size))], axis=-1)
        hole = np.zeros((size, size), np.uint8)
        hole[size // 4 : size // 2, size // 3 : 2 * size // 3] = 255
        assets = {hashlib.sha256(png).hexdigest(): png for png in (encode_png(image.astype(np.uint8)), encode_png(hole))}
        image_id, mask_id = assets
        return [WarmupRequest("inpaint", inputs={"image": image_id, "mask": mask_id}, assets=assets)]

    def _store_edges(self, edges: np.ndarray) -> dict[str, Any]:
        return {"edges_asset_id": self.store.put_png_asset(encode_png(edges), edges.shape[1], edges.shape[0], "L")}

    def run_inpaint(self, model: EdgeConnect, tasks: list[EditTask], params: list[InpaintParams]) -> list[GroupOutput]:
        """The op handler (named by deployments/inpaint/spec.py)."""
        outputs: list[GroupOutput | None] = [None] * len(tasks)
        work = []
        for i, (task, p) in enumerate(zip(tasks, params)):
            if not task.images["mask"].any():  # nothing to fill: the input back, flagged
                edges = edge_connect.canny_edges(gray_of(task.images["image"]), task.images["mask"], p.sigma)
                extras = {"empty_mask": True, "hole_pixels": 0, "hole_share": 0.0, **self._store_edges((edges * 255).astype(np.uint8))}
                outputs[i] = GroupOutput(task.images["image"], extras)
            else:
                work.append(i)
        if work:
            for i, (image, edge_map) in zip(work, inpaint_batch(model, [tasks[i] for i in work], self.device)):
                hole = tasks[i].images["mask"]
                extras = {
                    "empty_mask": False,
                    "hole_pixels": int(hole.sum()),
                    "hole_share": round(float(hole.mean()), 4),
                    "user_edges": "edges" in tasks[i].images,
                    **self._store_edges(edge_map),
                }
                outputs[i] = GroupOutput(image, extras)
        return outputs  # type: ignore[return-value]

    def health_forward(self) -> None:
        image = torch.rand(1, 3, 8, 8, device=self.device)
        mask = torch.zeros(1, 1, 8, 8, device=self.device)
        mask[..., 2:6, 2:6] = 1
        with torch.inference_mode():
            merged, _ = edge_connect.complete(self._canary, image, mask, torch.zeros_like(mask))
        if not torch.isfinite(merged).all():
            raise RuntimeError("inpaint canary forward produced non-finite values")
