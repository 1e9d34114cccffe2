"""The settings side of the Helm chart's values: which settings a cluster sets, and their JSON schema.

The chart's ``config`` values are ``Settings`` fields by name (each becomes ``COLLAGE_<NAME>`` in the
pods' ConfigMap) and its ``families`` values are per-family ``FamilyScaling`` options plus
``enabled``. Their part of ``helm/collage/values.schema.json`` is generated here from the pydantic
models, so a setting the service does not have, or a value it would reject, fails ``helm install``
at render time instead of in a crash-looping pod. tests/test_helm.py checks the committed schema
against this module; ``python -m service.tools.helm_values --write`` regenerates it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from service.config import REPO_ROOT, ApiKeyEntry, FamilyScaling, Settings
from service.families import family_names

CHART_DIR = REPO_ROOT / "helm" / "collage"
VALUES_SCHEMA = CHART_DIR / "values.schema.json"

# Settings a cluster does not take from `config`: local-process state (embedded S3, the local Ray,
# the checkpoints shipped in the image), the HTTP bind address and port the chart fixes for KubeRay
# (the Serve proxy must listen on 0.0.0.0:8000), family_overrides, which `families` carries, and
# api_keys, which the Secret carries (`secrets.apiKeys`).
NOT_CHART_SETTINGS = frozenset(
    {
        "data_dir",
        "embedded_s3_port",
        "ray_num_cpus",
        "ray_metrics_port",
        "checkpoints_dir",
        "http_host",
        "http_port",
        "family_overrides",
        "api_keys",
    }
)

# The settings the chart's serveConfigV2 template reads. `config` must carry those that have a value
# (Helm drops null values, and the template reads a missing nullable one as unset, as Settings does).
SERVE_CONFIG_SETTINGS = (
    "batch_max_size",
    "batch_wait_timeout_s",
    "family_max_ongoing_requests",
    "max_queued_requests",
    "family_num_cpus",
    "family_num_gpus",
    "family_resources",
    "ingress_resources",
    "jobs_resources",
    "family_replicas",
    "ingress_replicas",
    "ingress_max_ongoing_requests",
    "jobs_num_cpus",
    "jobs_runner_replicas",
    "autoscaling_enabled",
    "autoscaling_min_replicas",
    "autoscaling_max_replicas",
    "autoscaling_target_ongoing_requests",
    "autoscaling_upscale_delay_s",
    "autoscaling_downscale_delay_s",
    "serve_access_log",
)


def chart_settings() -> list[str]:
    """Settings the chart's ``config`` may set: all but local ones and secrets (those come from a Secret)."""
    return [name for name, field in Settings.model_fields.items() if name not in NOT_CHART_SETTINGS and field.annotation is not SecretStr]


def _annotation_free(schema: Any) -> Any:
    """A pydantic field schema without ``title`` and ``default`` (the chart has its own defaults)."""
    if isinstance(schema, dict):
        return {k: _annotation_free(v) for k, v in schema.items() if k not in ("title", "default")}
    if isinstance(schema, list):
        return [_annotation_free(v) for v in schema]
    return schema


def config_schema() -> dict[str, Any]:
    properties = Settings.model_json_schema()["properties"]
    return {
        "type": "object",
        "description": "Service settings (service/config.py), each passed to the pods as COLLAGE_<NAME>",
        "additionalProperties": False,
        "required": [name for name in SERVE_CONFIG_SETTINGS if Settings.model_fields[name].default is not None],
        "properties": {name: _annotation_free(properties[name]) for name in chart_settings()},
    }


def families_schema() -> dict[str, Any]:
    options = {name: _annotation_free(schema) for name, schema in FamilyScaling.model_json_schema()["properties"].items()}
    family = {
        "type": "object",
        "additionalProperties": False,
        "required": ["enabled"],
        "properties": {"enabled": {"type": "boolean", "description": "deploy this family"}, **options},
    }
    return {
        "type": "object",
        "description": "Generator families (the collage.families entry points, service/families.py): which to deploy, and their exceptions to config",
        "additionalProperties": False,
        "properties": {name: family for name in family_names()},
    }


def values_schema(path: Path = VALUES_SCHEMA) -> dict[str, Any]:
    """The chart's values schema at ``path`` with its ``config`` and ``families`` parts generated afresh."""
    schema = json.loads(path.read_text())
    schema["properties"]["config"] = config_schema()
    schema["properties"]["families"] = families_schema()
    schema["properties"]["secrets"]["properties"]["apiKeys"] = {
        "type": "array",
        "description": "API keys (COLLAGE_API_KEYS): `collage keys new` prints an entry; tokens are never stored",
        "items": _annotation_free(ApiKeyEntry.model_json_schema()),
    }
    return schema


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {VALUES_SCHEMA.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)
    text = json.dumps(values_schema(), indent=2) + "\n"
    if args.write:
        VALUES_SCHEMA.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
