"""``/v1/jobs``: asynchronous batches of edits, their status and their per-item results."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, Field, model_validator

from schemas.common import Sha256Hex, StrictModel
from schemas.ingan import FitJob

JobId = str  # 32 lowercase hex characters
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
TERMINAL_STATES = ("succeeded", "completed_with_errors", "failed", "cancelled")

JobState = Literal["queued", "running", "cancelling", "succeeded", "completed_with_errors", "failed", "cancelled"]
ItemState = Literal["pending", "succeeded", "failed", "cancelled"]


class JobManifest(StrictModel):
    asset_id: Sha256Hex = Field(description="an uploaded asset (kind 'data') holding JSON Lines: one edit request object per line")


class JobRequest(StrictModel):
    """Exactly one of ``items``, ``manifest`` and ``fit``. Each item has the schema of ``POST /v1/edits``.

    Items are validated when they run: a bad item fails alone (its problem object is in the
    results) while the others succeed. ``output.inline`` is ignored; results are read by URL.
    A ``fit`` job trains a model instead (one item: the registered model, with a preview strip).
    """

    items: list[dict[str, Any]] | None = Field(default=None, min_length=1, description="edit requests, run in any order")
    manifest: JobManifest | None = Field(default=None, description="edit requests in an uploaded JSON Lines asset")
    fit: FitJob | None = Field(
        default=None,
        description="train a model on an uploaded image (InGAN); progress in the status's 'fit', the model in the result's extras",
    )
    webhook_url: AnyHttpUrl | None = Field(
        default=None,
        description="POSTed the final status, signed in the Standard Webhooks scheme (webhook-id, webhook-timestamp, webhook-signature)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "JobRequest":
        if sum(source is not None for source in (self.items, self.manifest, self.fit)) != 1:
            raise ValueError(
                "give exactly one of 'items' (a list of edit requests), 'manifest' ({'asset_id': …}) and 'fit' ({'image': asset id, …})"
            )
        return self


class JobCounts(BaseModel):
    total: int
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    pending: int = Field(default=0, description="not finished yet (queued or in flight)")


class ItemError(BaseModel):
    index: int
    problem: dict[str, Any] = Field(description="RFC 9457 problem object of the failed item")


class WebhookStatus(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status: int | None = Field(default=None, description="HTTP status of the last attempt")
    last_error: str | None = None
    delivered_at: datetime | None = None


class JobStatus(BaseModel):
    job_id: str
    state: JobState
    counts: JobCounts
    source: Literal["items", "manifest", "fit"]
    created_at: datetime
    started_at: datetime | None = None
    updated_at: datetime
    finished_at: datetime | None = None
    resumed: int = Field(default=0, description="times the job was picked up again after its runner stopped mid-job")
    errors: list[ItemError] = Field(default_factory=list, description="the first failed items (all are in the results)")
    webhook: WebhookStatus | None = None
    fit: dict[str, Any] | None = Field(
        default=None,
        description="fit jobs: model name, iteration / iterations, losses, it_per_s, elapsed_s, eta_s, image_size; updated while it trains",
    )


class JobItem(BaseModel):
    index: int = Field(description="position of the edit in the job's items or manifest lines")
    state: ItemState
    result_id: Sha256Hex | None = Field(default=None, description="content address of the result (also an asset id)")
    model: str | None = None
    op: str | None = None
    cached: bool | None = Field(default=None, description="the result existed already and was not computed again")
    seed: int | None = None
    width: int | None = None
    height: int | None = None
    extras: dict[str, Any] = Field(default_factory=dict)
    problem: dict[str, Any] | None = Field(default=None, description="why a failed item failed (RFC 9457)")
    attempts: int = Field(default=0, description="dispatches tried (retries happen while the family answers 429/503)")
    completed_at: datetime | None = None
    url: str | None = Field(default=None, description="presigned GET URL of the result PNG")


class JobResultsPage(BaseModel):
    job_id: str
    state: JobState
    total: int
    items: list[JobItem]
    next_cursor: int | None = Field(description="pass as ?cursor= for the next page; null on the last one")
