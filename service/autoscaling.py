"""Family autoscaling on edits, not Serve calls.

Serve's default policy scales on ongoing requests: calls running in the replicas or queued at the
handles. Since the ingress sends edits that meet as one call (service/coalesce.py), a call carries
1 to ``batch_max_size`` edits and the count of calls says too little: a deployment under load
would get a fraction of the replicas ``target_ongoing_requests`` (in edits) asks for. Each family
replica therefore reports the edits it holds (``FamilyDeployment.record_autoscaling_stats``), and
this policy puts them in place of the running calls before Serve's own policy decides, with its
delays, bounds and smoothing unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy

EDITS_METRIC = "edits"  # the custom metric family replicas report: edits inside the replica now
POLICY_PATH = "service.autoscaling:edits_autoscaling_policy"


def edits_in_flight(ctx: Any) -> float:
    """Edits in the replicas (their own reports) plus the calls still queued at handles (one edit
    at least each); never less than Serve's count of ongoing calls."""
    reported = ((ctx.aggregated_metrics or {}).get(EDITS_METRIC) or {}).values()
    return max(float(ctx.total_num_requests), sum(reported) + float(ctx.total_queued_requests or 0.0))


def edits_autoscaling_policy(ctx: Any) -> tuple[float, dict[str, Any]]:
    """Serve's queue-length policy, counting edits instead of calls."""
    edits = edits_in_flight(ctx)
    if edits != ctx.total_num_requests:
        ctx = copy.copy(ctx)
        ctx.__dict__["total_num_requests"] = edits  # a cached_property: the instance value is what the policy reads
    return replica_queue_length_autoscaling_policy(ctx)
