"""What the ingress sends to a family deployment and what comes back (picklable, torch-free)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class EditTask:
    model: str  # registered model name (also the multiplexed model id)
    op: str  # op name, validated against its declaration (schemas.ops.OpSpec, found through service.families)
    params: dict[str, Any]  # validated op parameters, JSON-able
    inputs: dict[str, Any]  # canonical inputs (seed drawn, asset ids resolved), JSON-able
    images: dict[str, np.ndarray]  # decoded image inputs by field name: uint8 (H,W,3) or (H,W)
    submitted_at: float  # time.time() when the ingress dispatched it, for queue timing
    background: bool = False  # a job item: yields to synchronous edits in the family replica (service.family.PriorityGate)
    deadline: float | None = None  # time.time() after which the client no longer wants it: the replica skips it
    encoding: dict[str, Any] = dataclasses.field(default_factory=lambda: {"format": "png"})  # schemas.edits.OutputOptions.encoding()
    # What the op's fit_images did to the photos (schemas.ops.FittedImages.extras): the replica merges
    # it into the result's extras, so handlers need not know how their inputs were fitted.
    fit_extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    # ``params`` as an instance of the op's params model, built on the replica once per task
    # (service.family.FamilyDeployment.op_params). Never sent: pickling leaves it out, so what travels
    # (and what result ids and job items hash) is the plain JSON ``params``.
    typed_params: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "typed_params": None}


@dataclasses.dataclass
class EditOutput:
    data: bytes  # the result image, encoded as the task's ``encoding`` asks
    media_type: str  # of ``data``: image/png, image/webp or image/jpeg
    width: int
    height: int
    extras: dict[str, Any]  # op-specific JSON-able outputs
    queue_ms: float  # dispatch -> batch start
    compute_ms: float  # generator time of the group
    encode_ms: float  # encoding time of the group, per item share
    batch_size: int  # edits in the dynamic batch
    group_size: int  # edits in the (model, op, shape) group run as one tensor batch
    sync_idle_s: float | None = None  # seconds since the replica last had a synchronous edit in it (0 = has one now)
    received_at: float | None = None  # time.time() when the replica got the call that carried this task
    answered_at: float | None = None  # time.time() when the replica answered that call

    def transit_ms(self, dispatched_at: float, delivered_at: float) -> float | None:
        """The Ray call's share of the time from the task's dispatch to its output's delivery in the ingress
        (time.time() both): all of it but the replica's own. Two processes' clocks: on two nodes their
        offset adds in (clamped at 0)."""
        if self.received_at is None or self.answered_at is None:
            return None
        return 1e3 * max(0.0, (self.received_at - dispatched_at) + (delivered_at - self.answered_at))
