"""Ray Serve deployment of the ``inpaint`` family: a thin adapter over ``deployments.inpaint.ops``.

Each edit runs its plan (``params.strategy``, deployments/inpaint/strategies.py): one or more windows
of the photo, at full resolution or scaled down. Edits whose model inputs pad to the same size
(multiples of 4, at least 12 px) and that name the same ``params.edge_map`` run as one tensor batch,
every window a row; each is padded on its own, so its result is what it would get alone. Canny edges
are found per model input on the CPU before the batch. The fill is pasted into the full-resolution
photo inside the hole only; extras say what ran (strategy, crop boxes, scale). The edge map the
inpainting generator got is stored as an asset of its own (content-addressed like an upload), so it
can be fetched with ``GET /v1/assets/{id}``, edited, and sent back as ``inputs.edges``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import torch
from ray import serve

from deployments.inpaint import ops as edge_connect  # not "ops": cloudpickle would take it for torch.ops
from deployments.inpaint.checkpoint import load_model
from deployments.inpaint.edgeconnect import EdgeConnect, EdgeConnectConfig
from deployments.inpaint.spec import FAMILY
from deployments.inpaint.strategies import InpaintPlan, bounding_box, plan_of
from schemas.inpaint import InpaintParams
from service.family import FamilyDeployment, GroupOutput, WarmupRequest
from service.images import encode_png
from service.tasks import EditTask


def gray_of(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float (H, W) luma in [0, 1] (the weights of ops.to_gray)."""
    return (image.astype(np.float32) / 255.0) @ np.asarray(edge_connect.GRAY_WEIGHTS, np.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) -> (C, H, W) float tensor (a copy: decoded images are read-only)."""
    tensor = torch.from_numpy(np.array(array, dtype=np.float32))
    return tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor.unsqueeze(0)


def _padded(tensor: torch.Tensor, mode: str) -> torch.Tensor:
    """(C, H, W) -> (C, Hb, Wb) padded as ops.pad_to_multiple pads a batch of one."""
    return edge_connect.pad_to_multiple(tensor.unsqueeze(0), mode=mode)[0]


def params_of(task: EditTask) -> InpaintParams:
    """The task's typed params (built once per task; the schema's defaults fill a hand-built task's)."""
    return FamilyDeployment.op_params(FAMILY.ops["inpaint"], task)


@dataclasses.dataclass
class ModelInput:
    """One window of a plan at the size the generators see it, before padding to the size bucket."""

    image: torch.Tensor  # (3, h, w) in [0, 1]
    hole: torch.Tensor  # (1, h, w) 0/1
    edges: torch.Tensor  # (1, h, w) Canny edges outside the hole
    strokes: torch.Tensor | None  # (1, h, w) user edges, if the task has them


def model_inputs(task: EditTask, params: InpaintParams, plan: InpaintPlan) -> list[ModelInput]:
    """The plan's windows cut out of the task's full-resolution inputs (and scaled, for ``resize``);
    Canny runs on each model input, so its cost follows the model's size, not the photo's."""
    image, hole, strokes = task.images["image"], task.images["mask"], task.images.get("edges")
    inputs = []
    for window in plan.windows:
        rows, cols = window.slices
        crop, crop_hole = image[rows, cols], hole[rows, cols]
        crop_strokes = None if strokes is None else _tensor(strokes[rows, cols])
        if plan.scale == 1.0:
            gray, model_hole = gray_of(crop), crop_hole
            tensors = (_tensor(crop) / 255, _tensor(crop_hole), crop_strokes)
        else:
            scaled = edge_connect.scale_images(_tensor(crop)[None] / 255, plan.model_size)[0].clamp(0, 1)
            scaled_hole = edge_connect.shrink_masks(_tensor(crop_hole)[None], plan.model_size)[0]
            if crop_strokes is not None:
                crop_strokes = edge_connect.shrink_masks(crop_strokes[None], plan.model_size)[0]
            gray, model_hole = edge_connect.to_gray(scaled[None])[0, 0].numpy(), scaled_hole[0].numpy() > 0.5
            tensors = (scaled, scaled_hole, crop_strokes)
        edges = torch.from_numpy(edge_connect.canny_edges(gray, model_hole, params.sigma))[None]
        inputs.append(ModelInput(tensors[0], tensors[1], edges, tensors[2]))
    return inputs


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> uint8 (H, W, C), or (H, W) for one channel."""
    array = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def paste(task: EditTask, plan: InpaintPlan, filled: list[torch.Tensor], completed: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """The filled windows (each (3, h, w) at the model size, cropped from its padding) put back into the
    full-resolution image: only hole pixels are written, each from the window whose region holds it,
    so outside the hole the result is the input byte for byte. Returns (image (H, W, 3), the edge map
    the generator followed (H, W): each window's, black where no window ran)."""
    image, hole = task.images["image"], task.images["mask"]
    result, edge_map = image.copy(), np.zeros(hole.shape, np.uint8)
    windows = []
    for window, output, edges in zip(plan.windows, filled, completed):
        size = (window.height, window.width)  # the resize strategy's fill is scaled back up to the photo
        output = _to_uint8(edge_connect.scale_images(output[None], size)[0])
        edges = _to_uint8(edge_connect.scale_images(edges[None], size)[0])
        edge_map[window.slices] = edges
        windows.append((window, output, edges))
    for (window, output, edges), region in zip(windows, plan.regions):
        inside = (slice(region.top - window.top, region.top - window.top + region.height),)
        inside += (slice(region.left - window.left, region.left - window.left + region.width),)
        region_hole = hole[region.slices]
        result[region.slices][region_hole] = output[inside][region_hole]
        edge_map[region.slices] = edges[inside]  # where windows overlap, the edges that filled this region
    return result, edge_map


def inpaint_batch(model: EdgeConnect, tasks: list[EditTask], device: torch.device) -> list[tuple[np.ndarray, np.ndarray, InpaintPlan]]:
    """Tasks whose plans' model inputs share one size bucket and one edge map -> per task (merged image
    (H, W, 3) uint8, the edge map the inpainting generator got (H, W) uint8, the plan that ran).

    Every window of every task is one row of the batch, padded to the bucket on its own (as
    ``ops.complete`` would pad it alone), so a result does not depend on what else shares the batch.
    """
    params = [params_of(t) for t in tasks]
    modes = {p.edge_map for p in params}
    if len(modes) != 1:
        raise ValueError(f"one inpaint batch runs one edge map, got {sorted(modes)}")
    (mode,) = modes
    plans = [plan_of(t.images, p) for t, p in zip(tasks, params)]
    rows = [row for t, p, plan in zip(tasks, params, plans) for row in model_inputs(t, p, plan)]
    images = torch.stack([_padded(r.image, "reflect") for r in rows]).to(device)
    masks = torch.stack([_padded(r.hole, "constant") for r in rows]).to(device)  # the padding is never a hole
    edge_maps = torch.stack([_padded(r.edges, "constant") for r in rows]).to(device)
    user = None
    if any(r.strokes is not None for r in rows):
        user = torch.stack([_padded(r.hole * 0 if r.strokes is None else r.strokes, "constant") for r in rows]).to(device)
    with torch.inference_mode():
        merged, completed = edge_connect.complete(model, images, masks, edge_maps, user, edge_map=mode)
    merged, completed = merged.cpu(), completed.cpu()
    results, start = [], 0
    for task, plan in zip(tasks, plans):
        height, width = plan.model_size
        count = len(plan.windows)
        filled = [m[:, :height, :width] for m in merged[start : start + count]]
        edges = [c[:, :height, :width] for c in completed[start : start + count]]
        results.append((*paste(task, plan, filled, edges), plan))
        start += count
    return results


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
            if not task.images["mask"].any():  # nothing to fill: the input back, flagged (output.region: all of it)
                edges = edge_connect.canny_edges(gray_of(task.images["image"]), task.images["mask"], p.sigma)
                extras = {"empty_mask": True, "hole_pixels": 0, "hole_share": 0.0, **self._store_edges((edges * 255).astype(np.uint8))}
                outputs[i] = GroupOutput(task.images["image"], extras)
            else:
                work.append(i)
        if work:
            for i, (image, edge_map, plan) in zip(work, inpaint_batch(model, [tasks[i] for i in work], self.device)):
                hole = tasks[i].images["mask"]
                extras = {
                    "empty_mask": False,
                    "hole_pixels": int(hole.sum()),
                    "hole_share": round(float(hole.mean()), 4),
                    "user_edges": "edges" in tasks[i].images,
                    **plan.extras(),
                    **self._store_edges(edge_map),
                }
                outputs[i] = GroupOutput(image, extras, tuple(bounding_box(hole).xywh()))
        return outputs  # type: ignore[return-value]

    def health_forward(self) -> None:
        image = torch.rand(1, 3, 8, 8, device=self.device)
        mask = torch.zeros(1, 1, 8, 8, device=self.device)
        mask[..., 2:6, 2:6] = 1
        with torch.inference_mode():
            merged, _ = edge_connect.complete(self._canary, image, mask, torch.zeros_like(mask))
        if not torch.isfinite(merged).all():
            raise RuntimeError("inpaint canary forward produced non-finite values")
