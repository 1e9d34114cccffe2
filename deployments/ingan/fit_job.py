"""The body of an InGAN ``fit`` job: runs as a Ray task that the job runner starts, never in a family replica.

``run_fit(job_id, fit, status)`` reads the uploaded image from S3, trains (``ops.fit``), and
registers the model (``models/<name>/``) so ``GET /v1/models`` lists it and ``retarget`` serves it at
once. While it trains it owns the job's ``status.json``: every ``jobs_status_flush_s`` it writes
``status["fit"]`` (iteration, losses, it/s, ETA) and checks for the job's ``cancel.json``, stopping
within one flush of a ``DELETE /v1/jobs/{id}``. It returns the outcome to the runner, which writes
the item record and the final status.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from schemas.ingan import FitJob
from service.config import get_settings
from service.errors import NotFound, ProblemError, Unprocessable
from service.images import decode_image, encode_png
from service.jobs import JobStore, utcnow
from service.logs import get_logger
from service.registry import ModelRegistry
from service.storage import AssetStore

log = get_logger("collage.ingan.fit")

PREVIEW_SCALES = ((1.0, 1.0), (1.0, 0.5), (1.0, 1.5), (1.0, 2.0), (0.5, 1.0), (1.5, 1.0))  # (height, width) x the input


def _read_image(store: AssetStore, asset_id: str) -> bytes:
    for key in (store.asset_key(asset_id), store.result_key(asset_id)):
        try:
            return store.get(key)
        except NotFound:
            continue
    raise NotFound(f"asset {asset_id} does not exist; upload the training image with POST /v1/assets first")


def run_fit(job_id: str, fit: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Train, register, and return ``{"state": "succeeded" | "failed" | "cancelled", "record": item
    record or None, "fit": the last progress}``. Never raises for the request's own faults."""
    import torch

    from deployments.ingan import ops as ingan_ops
    from deployments.ingan.checkpoint import manifest_for, weights_bytes
    from deployments.ingan.ingan import InGANConfig

    settings = get_settings()
    store = AssetStore(settings)
    jobs = JobStore(store)
    job = FitJob.model_validate(fit)
    name = job.model_name()
    torch.set_num_threads(max(1, int(settings.fit_num_cpus)))
    device = torch.device("cuda" if settings.fit_num_gpus > 0 and torch.cuda.is_available() else "cpu")
    state: dict[str, Any] = {"model": name, "iteration": 0, "iterations": job.iterations, "device": str(device)}
    last_flush = 0.0

    def flush(force: bool = False) -> None:
        nonlocal last_flush
        now = time.monotonic()
        if not force and now - last_flush < settings.jobs_status_flush_s:
            return
        last_flush = now
        if jobs.cancel_requested(job_id):
            raise ingan_ops.FitStopped
        status.update(fit=dict(state), updated_at=utcnow())
        jobs.write_status(job_id, status)

    def on_progress(progress: dict[str, Any]) -> None:
        state.update(progress)
        flush()

    try:
        config = InGANConfig(job.base_channels, job.downscales, job.resblocks)
        image = decode_image(_read_image(store, job.image), settings.max_image_pixels, mode="RGB")
        size = ingan_ops.training_size(*image.shape[:2], job.size, config.size_multiple)
        if min(size) < 16:
            raise Unprocessable(
                f"the image is {image.shape[1]}x{image.shape[0]}: at size {job.size} its shorter side would be "
                f"{min(size)} px, below the discriminator's 16; raise 'size' or send a less elongated image"
            )
        image = ingan_ops.resize_image(image, size)
        state["image_size"] = list(size)
        flush(force=True)
        settings_fit = ingan_ops.FitSettings(
            iterations=job.iterations,
            scale_min=job.scale_min,
            scale_max=job.scale_max,
            rec_weight=job.rec_weight,
            cycle_weight=job.cycle_weight,
            seed=job.seed,
        )
        generator, summary = ingan_ops.fit(image, config, settings_fit, on_progress=on_progress, progress_every=5, device=device)
        if summary["stopped"]:
            return {"state": "cancelled", "record": None, "fit": state}
        generator = generator.cpu()
        psnr = ingan_ops.identity_psnr(generator, image)
        summary["identity_psnr_db"] = round(psnr, 2)
        manifest = manifest_for(
            generator,
            image,
            name=name,
            training={**summary, "job_id": job_id, "image": job.image, "seed": job.seed},
            description=f"InGAN fitted by job {job_id} on asset {job.image[:12]}… at {size[1]}x{size[0]}, "
            f"{summary['iterations']} iterations",
        )
        ModelRegistry(store).register(manifest, weights_bytes(generator, image))
        targets = [
            ingan_ops.Target(*ingan_ops.snap_size(round(size[0] * sh), round(size[1] * sw), config.size_multiple))
            for sh, sw in PREVIEW_SCALES
        ]
        strip = ingan_ops.strip([image] + ingan_ops.retarget(generator, ingan_ops.to_tensor(image), targets))[0]
        preview = encode_png(strip)
        preview_id = hashlib.sha256(preview).hexdigest()  # content-addressed like every result: GET /v1/assets/{id}
        store.put(
            store.result_key(preview_id),
            preview,
            "image/png",
            {"kind": "image", "width": str(strip.shape[1]), "height": str(strip.shape[0]), "mode": "RGB", "model": name, "op": "fit"},
        )
        state.update(iteration=summary["iterations"], seconds=summary["seconds"], eta_s=0.0)
        record = {
            "index": 0,
            "state": "succeeded",
            "model": name,
            "op": "fit",
            "result_id": preview_id,
            "attempts": 1,
            "extras": {
                "model": name,
                "identity_psnr_db": summary["identity_psnr_db"],
                "image_size": list(size),
                "size_multiple": config.size_multiple,
                "training": summary,
            },
            "width": int(strip.shape[1]),
            "height": int(strip.shape[0]),
        }
        log.info("fit done", extra={"job_id": job_id, "model": name, "iterations": summary["iterations"], "seconds": summary["seconds"]})
        return {"state": "succeeded", "record": record, "fit": state}
    except ingan_ops.FitStopped:
        return {"state": "cancelled", "record": None, "fit": state}
    except ProblemError as exc:
        return {
            "state": "failed",
            "record": {"index": 0, "state": "failed", "model": name, "op": "fit", "attempts": 1, "problem": exc.to_problem()},
            "fit": state,
        }
    except ValueError as exc:  # e.g. an image the decoder refuses
        return {
            "state": "failed",
            "record": {
                "index": 0,
                "state": "failed",
                "model": name,
                "op": "fit",
                "attempts": 1,
                "problem": Unprocessable(str(exc)).to_problem(),
            },
            "fit": state,
        }
