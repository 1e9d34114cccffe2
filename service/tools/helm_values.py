"""The chart's generated files: the settings side of its values (which settings a cluster sets, and
their JSON schema) and the Serve config its RayService carries.

The chart's ``config`` values are ``Settings`` fields by name (each becomes ``COLLAGE_<NAME>`` in the
pods' ConfigMap) and its ``families`` values are per-family ``FamilyScaling`` options plus
``enabled``. Their part of ``helm/collage/values.schema.json`` is generated here from the pydantic
models, so a setting the service does not have, or a value it would reject, fails ``helm install``
at render time instead of in a crash-looping pod. ``helm/collage/files/serve-config.json`` is
``service.tools.serve_config.chart_serve_config()`` of every family; the chart reads it and keeps the
enabled ones. tests/test_helm.py checks both committed files against this module (``--check`` does
too); ``python -m service.tools.helm_values --write`` regenerates them.
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
from service.tools.serve_config import chart_serve_config

CHART_DIR = REPO_ROOT / "helm" / "collage"
VALUES_SCHEMA = CHART_DIR / "values.schema.json"
SERVE_CONFIG_FILE = CHART_DIR / "files" / "serve-config.json"

# Settings a cluster does not take from `config`: local-process state (embedded S3, the local Ray,
# the checkpoints shipped in the image), the HTTP bind address and port the chart fixes for KubeRay
# (the Serve proxy must listen on 0.0.0.0:8000), family_overrides, which `families` carries, and
# api_keys, which the Secret carries (`secrets.apiKeys`). No setting is required: a setting left out
# (or set to null, which Helm drops) is the Settings default in the pods, as in a local run.
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


def generated_files() -> dict[Path, str]:
    """Each generated chart file and the text it must have."""
    return {
        VALUES_SCHEMA: json.dumps(values_schema(), indent=2) + "\n",
        SERVE_CONFIG_FILE: json.dumps(chart_serve_config(), indent=2) + "\n",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite the generated files of helm/collage")
    action.add_argument("--check", action="store_true", help="exit 1 if a generated file of helm/collage is not current")
    args = parser.parse_args(argv)
    files = generated_files()
    if args.write:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return 0
    if args.check:
        stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"{path.relative_to(REPO_ROOT)} is not current: run python -m service.tools.helm_values --write", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(files[VALUES_SCHEMA])
    return 0


if __name__ == "__main__":
    sys.exit(main())
