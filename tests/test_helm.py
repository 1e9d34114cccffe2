"""The Helm chart (helm/collage) rendered by the real Helm library, with no cluster, Ray or S3.

For several value sets (CPU only, GPU workers, external S3 with an existing Secret, autoscaling off,
bundled SeaweedFS, monitoring, the documented example) the chart lints strictly and every manifest validates: built-in kinds
against the Kubernetes schemas (kubernetes-validate, strict), the RayService and ServiceMonitor
against schemas of the CRD fields the chart uses (tests/data), the pod templates and Service inside
the RayService against the Kubernetes schemas too. The RayService's serveConfigV2 must equal
``service.tools.serve_config`` of the settings the chart hands its pods, and both must match the
deployment options ``build_app`` binds, so cluster and local runs cannot drift apart. Bad values
fail at render time with a message that names them.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any
from unittest import mock

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from service.config import REPO_ROOT, Settings, get_settings
from service.families import family_names
from service.tools import helm_values
from service.tools.serve_config import chart_serve_config, family_deployment_name, serve_config

CHART = REPO_ROOT / "helm" / "collage"
DATA = Path(__file__).parent / "data"
# The chart's kubeVersion floor and the newest schemas kubernetes-validate has.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
SECRET_KEYS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "COLLAGE_WEBHOOK_SECRET", "COLLAGE_API_KEYS"}
API_KEY = {"id": "shop", "sha256": "ab" * 32, "scopes": ["edit", "jobs"]}

EXTERNAL_S3 = "https://s3.eu-west-1.amazonaws.com"
CPU_RESOURCES = {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}}


def cpu_group(**fields: Any) -> dict[str, Any]:
    """The value sets' CPU worker group (1 pod, up to 2), with ``fields`` added or replaced."""
    return {"name": "cpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 2, "gpus": 0, "resources": CPU_RESOURCES, **fields}


GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "cpu-only": {"config": {"s3_endpoint_url": EXTERNAL_S3, "s3_region": "eu-west-1"}},
    "gpu": {
        "image": {"repository": "ghcr.io/collage/collage", "tag": "0.1.0-cu128"},
        "config": {
            "s3_endpoint_url": EXTERNAL_S3,
            "family_num_gpus": 0.25,
            "batch_max_size": 32,
            "accel_precision": "bf16",
            "accel_channels_last": True,
            "max_body_bytes": 41943040,
        },
        "families": {
            "style": {"enabled": True, "num_gpus": 0.5, "max_replicas": 8},
            "inpaint": {"enabled": True, "num_gpus": 0, "num_cpus": 2},
        },
        "workerGroups": [
            cpu_group(),
            {
                "name": "gpu",
                "replicas": 0,
                "minReplicas": 0,
                "maxReplicas": 4,
                "gpus": 1,
                "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}},
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [GPU_TOLERATION],
            },
        ],
    },
    "external-s3": {
        "config": {
            "s3_endpoint_url": "https://minio.storage.svc:9000",
            "s3_bucket": "edits",
            "s3_prefix": "prod/",
            "jobs_max_in_flight": 16,
            "webhook_max_attempts": 3,
            "log_level": "DEBUG",
        },
        "secrets": {"existingSecret": "collage-credentials"},
        "service": {"type": "LoadBalancer", "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
    },
    "autoscaling-off": {
        "config": {
            "s3_endpoint_url": EXTERNAL_S3,
            "autoscaling_enabled": False,
            "family_replicas": 2,
            "ingress_replicas": 2,
            "jobs_runner_replicas": 3,
        },
        "families": {"style": {"enabled": True, "replicas": 3}, "collage": {"enabled": False}},
        "workerGroups": [cpu_group(replicas=3, maxReplicas=6)],
    },
    # The chart's placement by custom Ray resources (tests/test_multinode.py runs it on a local multi-node Ray):
    # family replicas only on the family group, the ingress and the job runner only on the cpu group.
    "placement": {
        "config": {
            "s3_endpoint_url": EXTERNAL_S3,
            "family_resources": {"collage_family": 1},
            "ingress_resources": {"collage_ingress": 1},
            "jobs_resources": {"collage_jobs": 0.5},
        },
        "workerGroups": [
            cpu_group(rayStartParams={"resources": '"{\\"collage_ingress\\": 4, \\"collage_jobs\\": 4}"'}),
            {
                "name": "family",
                "replicas": 2,
                "minReplicas": 1,
                "maxReplicas": 4,
                "gpus": 0,
                "resources": CPU_RESOURCES,
                "rayStartParams": {"resources": '"{\\"collage_family\\": 16}"'},
            },
        ],
    },
    "seaweedfs": {
        "seaweedfs": {"enabled": True},
        "secrets": {"webhookSecret": "hmac-key", "apiKeys": [API_KEY]},
        "storageInit": {"registerShippedCheckpoints": False},
    },
    "monitored": {
        "config": {"s3_endpoint_url": EXTERNAL_S3, "autoscaling_target_ongoing_requests": 10},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "podDisruptionBudget": {"protectHead": True},
        "head": {"rayStartParams": {"num-cpus": "0"}, "resources": CPU_RESOURCES, "tolerations": [GPU_TOLERATION]},
    },
    # Every KubeRay convention of the chart on at once: the strict CRD schema must take all of it.
    "everything-on": {
        "config": {"s3_endpoint_url": EXTERNAL_S3},
        "common": {
            "labels": {"team": "imaging"},
            "annotations": {"example.com/owner": "imaging"},
            "containerEnv": [{"name": "HF_HOME", "value": "/tmp/hf"}],
            "logVolume": {"emptyDir": {"sizeLimit": "10Gi"}},
        },
        "serviceAccount": {"create": True, "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/collage"}},
        "gcsFaultTolerance": {
            "enabled": True,
            "redisAddress": "redis.redis.svc:6379",
            "redisPassword": {"secretName": "collage-redis", "secretKey": "redis-password"},
            "externalStorageNamespace": "collage-prod",
        },
        "upgradeStrategy": {
            "type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {"gatewayClassName": "istio", "intervalSeconds": 30, "stepSizePercent": 25, "maxSurgePercent": 50},
        },
        "head": {
            "rayStartParams": {"num-cpus": "0"},
            "resources": CPU_RESOURCES,
            "labels": {"tier": "control"},
            "annotations": {"example.com/scrape": "false"},
            "containerEnv": [{"name": "RAY_GRAFANA_HOST", "value": "http://grafana.monitoring.svc"}],
            "volumes": [{"name": "ray-config", "configMap": {"name": "ray-extra"}}],
            "volumeMounts": [{"name": "ray-config", "mountPath": "/etc/ray-extra", "readOnly": True}],
        },
        "workerGroups": [
            {
                "name": "cpu",
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 4,
                "gpus": 0,
                "resources": CPU_RESOURCES,
                "serviceAccountName": "collage-workers",
                "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
                "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
                "volumeMounts": [{"name": "scratch", "mountPath": "/tmp/collage"}],
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
                    {
                        "maxSkew": 2,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "collage"}},
                    },
                ],
            }
        ],
    },
}


def _documented_example() -> dict[str, Any]:
    """The `my-values.yaml` of docs/operations.md, "Running on Kubernetes": documented values must install."""
    section = (REPO_ROOT / "docs" / "operations.md").read_text().split("## Running on Kubernetes", 1)[1]
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))


VALUE_SETS["documented"] = _documented_example()


# ---- rendering ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart, values: dict[str, Any], release: str = "collage") -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (hooks and test pods included)."""
    rendered = chart.render(values=copy.deepcopy(values), name=release, namespace="collage", is_install=True)
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matching = [o for o in objects if o["kind"] == kind]
    assert len(matching) == 1, f"{len(matching)} objects of kind {kind}"
    return matching[0]


def pod_templates(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``head`` and every worker group's name -> its pod template."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    return {
        "head": cluster["headGroupSpec"]["template"],
        **{group["groupName"]: group["template"] for group in cluster["workerGroupSpecs"]},
    }


def settings_from_configmap(configmap: dict[str, Any]) -> Settings:
    """The Settings a pod builds from the chart's ConfigMap (and nothing of this process's COLLAGE_* variables)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COLLAGE_")} | configmap["data"]
    with mock.patch.dict(os.environ, environ, clear=True):
        return Settings()


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict[str, Any]]]:
    return {name: render(chart, values) for name, values in VALUE_SETS.items()}


# ---- lint and schemas --------------------------------------------------------------------------
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_lints_strictly(value_set):
    report = helm.lint(CHART, copy.deepcopy(VALUE_SETS[value_set]), strict=True, namespace="collage")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], (problems, report["errors"])


def _validate_builtin(obj: dict[str, Any]) -> None:
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise AssertionError(
                f"{obj['kind']} {obj['metadata'].get('name')} against Kubernetes {version}: {path}: {exc.message}"
            ) from exc


def _validate_custom(obj: dict[str, Any], schema_file: str) -> None:
    schema = json.loads((DATA / schema_file).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def strict_crd_schema(node: Any) -> Any:
    """A CRD's openAPIV3Schema with every object that lists its properties closed: the API server prunes an
    unknown field of a structural schema without a word, so a misspelled value would vanish; here it fails."""
    if isinstance(node, list):
        return [strict_crd_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: strict_crd_schema(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        closed["additionalProperties"] = False
    return closed


KUBERAY_CRD = json.loads((DATA / "kuberay-v1.7.0-rayservice.crd-schema.json").read_text())
RAYSERVICE_CRD_VALIDATOR = jsonschema.Draft7Validator(strict_crd_schema(KUBERAY_CRD["openAPIV3Schema"]))


def _validate_kuberay_crd(obj: dict[str, Any]) -> None:
    errors = sorted(RAYSERVICE_CRD_VALIDATOR.iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message[:300]}" for e in errors]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_manifest_validates_against_its_schema(rendered, value_set):
    from ray.serve.schema import ServeDeploySchema

    kinds = set()
    for obj in rendered[value_set]:
        kinds.add(obj["kind"])
        if obj["kind"] == "RayService":
            _validate_custom(obj, "rayservice.schema.json")
            _validate_kuberay_crd(obj)  # the real CRD of the KubeRay release the chart targets, closed
            for group, template in pod_templates(obj).items():
                _validate_builtin(
                    {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"{group}-template"}, "template": template}
                )
            _validate_builtin({"apiVersion": "v1", "kind": "Service", **obj["spec"]["serveService"]})
            ServeDeploySchema.model_validate(yaml.safe_load(obj["spec"]["serveConfigV2"]))
        elif obj["kind"] == "ServiceMonitor":
            _validate_custom(obj, "servicemonitor.schema.json")
        else:
            _validate_builtin(obj)
    assert {"RayService", "ConfigMap", "Job", "Pod", "PodDisruptionBudget"} <= kinds


def test_the_custom_schemas_reject_what_kuberay_would(rendered):
    """The RayService schema is closed and typed where KubeRay is: a misspelled field or a number as a ray start flag fails."""
    rayservice = only(rendered["cpu-only"], "RayService")
    typo = copy.deepcopy(rayservice)
    typo["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 4
    numeric_flag = copy.deepcopy(rayservice)
    numeric_flag["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    for broken in (typo, numeric_flag):
        with pytest.raises(AssertionError):
            _validate_custom(broken, "rayservice.schema.json")
        with pytest.raises(AssertionError):
            _validate_kuberay_crd(broken)
    _validate_kuberay_crd(rayservice)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_ray_pods_get_the_serve_settings_of_a_local_run(rendered, value_set):
    from service.runtime import LOCAL_SERVE_ENV, SERVE_ENV

    data = only(rendered[value_set], "ConfigMap")["data"]
    assert {name: data.get(name) for name in SERVE_ENV} == SERVE_ENV
    assert not set(LOCAL_SERVE_ENV) & set(data), "a cluster keeps Ray's drain period for rolling updates"


# ---- one serve config for cluster and local runs ------------------------------------------------
def _enabled_families(value_set: str) -> list[str]:
    values_families = VALUE_SETS[value_set].get("families", {})
    return [f for f in family_names() if values_families.get(f, {}).get("enabled", True)]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_charts_serve_config_is_the_python_generators(rendered, value_set):
    """serveConfigV2 is chart_serve_config() of the enabled families, and the serve_config() of the pods' own
    settings less the deployment options, which Serve then takes from what build_app binds in the pods."""
    objects = rendered[value_set]
    chart_config = yaml.safe_load(only(objects, "RayService")["spec"]["serveConfigV2"])
    families = _enabled_families(value_set)
    assert chart_config == chart_serve_config(families)
    assert "deployments" not in chart_config["applications"][0], "no second copy of the options: the code binds them"
    settings = settings_from_configmap(only(objects, "ConfigMap"))
    assert chart_config == serve_config(settings, families, deployment_options=False)


def test_the_generated_chart_files_are_current(capsys):
    """files/serve-config.json and values.schema.json are what service.tools.helm_values writes."""
    assert helm_values.main(["--check"]) == 0, capsys.readouterr().err
    committed = json.loads(helm_values.SERVE_CONFIG_FILE.read_text())
    assert committed == chart_serve_config(), "run `python -m service.tools.helm_values --write`"
    assert committed["applications"][0]["args"]["families"] == ",".join(family_names())


def test_the_check_names_a_stale_generated_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "serve-config.json"
    stale.write_text(json.dumps({"applications": []}))
    monkeypatch.setattr(helm_values, "SERVE_CONFIG_FILE", stale)
    monkeypatch.setattr(helm_values, "REPO_ROOT", tmp_path.parent)
    assert helm_values.main(["--check"]) == 1
    assert "serve-config.json is not current" in capsys.readouterr().err


@pytest.mark.parametrize("value_set", ["gpu", "autoscaling-off"])
def test_serve_config_has_the_options_build_app_binds(rendered, value_set):
    """``serve build`` of the app under the pods' settings: every option the config sets is what the code binds."""
    from ray.serve._private.build_app import build_app as build_serve_app
    from ray.serve.deployment import deployment_to_schema

    from service.app import build_app

    objects = rendered[value_set]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLLAGE_")} | only(objects, "ConfigMap")["data"]
    with mock.patch.dict(os.environ, env, clear=True):
        get_settings.cache_clear()
        try:
            expected = serve_config(get_settings(), None)["applications"][0]
            built = build_serve_app(build_app({"families": expected["args"]["families"]}), name="collage")
        finally:
            get_settings.cache_clear()
    bound = {d.name: deployment_to_schema(d).model_dump(exclude_unset=True) for d in built.deployments}
    assert set(bound) == {d["name"] for d in expected["deployments"]}
    for deployment in expected["deployments"]:
        for option, value in deployment.items():
            got = bound[deployment["name"]][option]
            if option == "logging_config":  # Serve fills the fields the config leaves out with its defaults, in both paths
                got = {k: got[k] for k in value}
            assert got == value, (deployment["name"], option)


def test_family_overrides_are_checked_like_the_chart_checks_them():
    settings = Settings(family_num_gpus=0.25, family_overrides={"inpaint": {"num_gpus": 0, "max_replicas": 2}})
    assert settings.family_scaling("inpaint").model_dump() == {
        "num_cpus": 0.25,
        "num_gpus": 0,
        "replicas": 1,
        "min_replicas": 1,
        "max_replicas": 2,
    }
    assert settings.family_scaling("style").num_gpus == 0.25
    with pytest.raises(ValidationError, match="unknown families"):
        Settings(family_overrides={"dream": {"num_gpus": 1}})
    with pytest.raises(ValidationError, match="min_replicas 5 > max_replicas 4"):
        Settings(family_overrides={"style": {"min_replicas": 5}})
    with pytest.raises(ValidationError):
        Settings(family_overrides={"style": {"num_gpu": 1}})


def test_values_schema_is_generated_from_the_settings():
    committed = json.loads(helm_values.VALUES_SCHEMA.read_text())
    assert committed == helm_values.values_schema(), "run `python -m service.tools.helm_values --write`"
    with helm.Chart.load(CHART) as loaded:
        assert set(loaded.values["families"]) == set(family_names())
        assert set(loaded.values["config"]) <= set(helm_values.chart_settings())


def test_cli_serve_config_writes_the_serve_config_of_the_environment(tmp_path, monkeypatch):
    from service.tools.cli import main

    monkeypatch.setenv("COLLAGE_FAMILY_OVERRIDES", '{"style": {"num_gpus": 0.5}}')
    get_settings.cache_clear()
    try:
        assert main(["serve-config", "--families", "style,inpaint", "-o", str(tmp_path / "serve.yaml")]) == 0
        written = yaml.safe_load((tmp_path / "serve.yaml").read_text())
        assert written == serve_config(get_settings(), "style,inpaint")
    finally:
        get_settings.cache_clear()
    style = written["applications"][0]["deployments"][0]
    assert style["name"] == family_deployment_name("style") and style["ray_actor_options"]["num_gpus"] == 0.5


# ---- what each value set must produce ------------------------------------------------------------
def _deployments(objects) -> dict[str, dict[str, Any]]:
    """The deployment options build_app binds in the chart's pods: serve_config() of their settings
    (test_serve_config_has_the_options_build_app_binds checks the two agree)."""
    config = yaml.safe_load(only(objects, "RayService")["spec"]["serveConfigV2"])
    application = config["applications"][0]
    settings = settings_from_configmap(only(objects, "ConfigMap"))
    return {d["name"]: d for d in serve_config(settings, application["args"]["families"])["applications"][0]["deployments"]}


def test_gpu_values_reach_the_worker_pods_and_the_family_replicas(rendered):
    objects = rendered["gpu"]
    templates = pod_templates(only(objects, "RayService"))
    gpu_pod = templates["gpu"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and gpu_pod["tolerations"] == [GPU_TOLERATION]
    assert "nvidia.com/gpu" not in templates["cpu"]["spec"]["containers"][0]["resources"]["limits"]
    assert templates["gpu"]["spec"]["containers"][0]["image"] == "ghcr.io/collage/collage:0.1.0-cu128"

    deployments = _deployments(objects)
    assert deployments["StyleDeployment"]["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.5}
    assert deployments["CollageDeployment"]["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 0.25}
    assert deployments["InpaintDeployment"]["ray_actor_options"] == {"num_cpus": 2}, "num_gpus 0: CPU only"
    assert deployments["StyleDeployment"]["autoscaling_config"]["max_replicas"] == 8
    assert deployments["CollageDeployment"]["autoscaling_config"]["target_ongoing_requests"] == 64, "2 x batch_max_size 32"
    assert deployments["CollageDeployment"]["max_ongoing_requests"] == 64
    assert deployments["CollageDeployment"]["user_config"] == {"max_batch_size": 32, "batch_wait_timeout_s": 0.02}

    data = only(objects, "ConfigMap")["data"]
    assert data["COLLAGE_ACCEL_PRECISION"] == "bf16" and data["COLLAGE_ACCEL_CHANNELS_LAST"] == "true"
    assert data["COLLAGE_MAX_BODY_BYTES"] == "41943040", "large integers stay integers, not 4.194304e+07"
    assert json.loads(data["COLLAGE_FAMILY_OVERRIDES"]) == {
        "inpaint": {"num_cpus": 2, "num_gpus": 0},
        "style": {"max_replicas": 8, "num_gpus": 0.5},
    }


def test_placement_values_reach_the_replicas_and_the_worker_groups_offer_them(rendered):
    """Custom Ray resources (family_resources, ingress_resources, jobs_resources) become each deployment's
    ray_actor_options.resources; the worker groups offer them through `ray start --resources`."""
    objects = rendered["placement"]
    deployments = _deployments(objects)
    for family in family_names():
        assert deployments[family_deployment_name(family)]["ray_actor_options"] == {"num_cpus": 1, "resources": {"collage_family": 1}}
    assert deployments["Ingress"]["ray_actor_options"] == {"resources": {"collage_ingress": 1}}, "Serve's 1 CPU default stays"
    assert deployments["JobRunner"]["ray_actor_options"] == {"num_cpus": 0.1, "resources": {"collage_jobs": 0.5}}
    groups = {group["groupName"]: group for group in only(objects, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert json.loads(json.loads(groups["family"]["rayStartParams"]["resources"])) == {"collage_family": 16}
    assert "ray_actor_options" not in _deployments(rendered["cpu-only"])["Ingress"], "without placement values: no key at all"


def test_placement_settings_refuse_rays_own_resources():
    """CPU and GPU are num_cpus / num_gpus: Ray refuses them among custom resources, so the settings refuse them first."""
    for name in ("family_resources", "ingress_resources", "jobs_resources"):
        with pytest.raises(ValidationError, match="Ray's own resources"):
            Settings(**{name: {"GPU": 1}})
    assert Settings(family_resources={"collage_family": 0.5}).family_resources == {"collage_family": 0.5}


def test_autoscaling_off_pins_family_replicas_and_worker_pods(rendered):
    objects = rendered["autoscaling-off"]
    deployments = _deployments(objects)
    assert "CollageDeployment" not in deployments
    assert deployments["StyleDeployment"]["num_replicas"] == 3 and deployments["InpaintDeployment"]["num_replicas"] == 2
    assert deployments["Ingress"]["num_replicas"] == 2 and deployments["JobRunner"]["num_replicas"] == 3
    assert not any("autoscaling_config" in d for d in deployments.values())
    cluster = only(objects, "RayService")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is False and "autoscalerOptions" not in cluster
    group = cluster["workerGroupSpecs"][0]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3


def test_autoscaling_on_scales_replicas_and_pods(rendered):
    deployments = _deployments(rendered["cpu-only"])
    for name in map(family_deployment_name, family_names()):
        assert deployments[name]["autoscaling_config"] == {
            "min_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 16,
            "upscale_delay_s": 30,
            "downscale_delay_s": 600,
            "policy": {"policy_function": "service.autoscaling:edits_autoscaling_policy"},
        }  # edits, not coalesced calls
        assert "num_replicas" not in deployments[name]
    assert _deployments(rendered["monitored"])["StyleDeployment"]["autoscaling_config"]["target_ongoing_requests"] == 10
    from ray.serve.config import AutoscalingConfig

    from service.autoscaling import edits_autoscaling_policy

    config = AutoscalingConfig(**deployments["StyleDeployment"]["autoscaling_config"])  # Serve resolves the policy path
    assert config.policy.get_policy().__name__ == edits_autoscaling_policy.__name__
    cluster = only(rendered["cpu-only"], "RayService")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"] == {"idleTimeoutSeconds": 60, "upscalingMode": "Default", "securityContext": RESTRICTED_CONTAINER}
    assert (cluster["workerGroupSpecs"][0]["minReplicas"], cluster["workerGroupSpecs"][0]["maxReplicas"]) == (1, 4)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_ray_pods_are_what_kuberay_expects(rendered, value_set):
    """Ray container first, a 'serve' port 8000 (KubeRay's Service and proxy probe use it), KubeRay's own probes, the settings."""
    objects = rendered[value_set]
    rayservice = only(objects, "RayService")
    secret_name = VALUE_SETS[value_set].get("secrets", {}).get("existingSecret") or "collage"
    assert rayservice["spec"]["serveService"]["metadata"]["name"] == "collage"
    assert rayservice["spec"]["serveService"]["spec"]["ports"] == [{"name": "serve", "port": 8000, "targetPort": 8000, "protocol": "TCP"}]
    checksum = {t["metadata"]["annotations"]["checksum/settings"] for t in pod_templates(rayservice).values()}
    assert len(checksum) == 1
    for group, template in pod_templates(rayservice).items():
        container = template["spec"]["containers"][0]
        assert container["name"] == ("ray-head" if group == "head" else "ray-worker")
        assert {"name": "serve", "containerPort": 8000} in container["ports"]
        assert "readinessProbe" not in container and "livenessProbe" not in container
        assert container["envFrom"] == [{"configMapRef": {"name": "collage-settings"}}, {"secretRef": {"name": secret_name}}]
    head = rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0" and head["dashboard-host"] == "0.0.0.0"
    configmap = only(objects, "ConfigMap")
    assert configmap["data"]["COLLAGE_HTTP_HOST"] == "0.0.0.0" and configmap["data"]["COLLAGE_HTTP_PORT"] == "8000"
    assert not SECRET_KEYS & set(configmap["data"]), "secrets stay out of the ConfigMap"


def test_a_settings_change_rolls_the_pods(chart):
    before = only(render(chart, VALUE_SETS["cpu-only"]), "RayService")
    changed = copy.deepcopy(VALUE_SETS["cpu-only"])
    changed["config"]["jobs_max_in_flight"] = 4
    after = only(render(chart, changed), "RayService")
    annotation = lambda rs: pod_templates(rs)["head"]["metadata"]["annotations"]["checksum/settings"]  # noqa: E731
    assert annotation(before) != annotation(after)


def test_existing_secret_is_used_and_none_is_rendered(rendered):
    objects = rendered["external-s3"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    data = only(objects, "ConfigMap")["data"]
    assert (data["COLLAGE_S3_ENDPOINT_URL"], data["COLLAGE_S3_BUCKET"], data["COLLAGE_S3_PREFIX"]) == (
        "https://minio.storage.svc:9000",
        "edits",
        "prod/",
    )
    assert data["COLLAGE_JOBS_MAX_IN_FLIGHT"] == "16" and data["COLLAGE_LOG_LEVEL"] == "DEBUG"
    job = only(objects, "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["envFrom"][1] == {"secretRef": {"name": "collage-credentials"}}
    serve_service = only(objects, "RayService")["spec"]["serveService"]
    assert serve_service["spec"]["type"] == "LoadBalancer"
    assert serve_service["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}


def test_seaweedfs_gets_the_same_generated_keys_as_the_service(rendered):
    objects = rendered["seaweedfs"]
    secret = only(objects, "Secret")["stringData"]
    assert re.fullmatch(r"[A-Za-z0-9]{20}", secret["AWS_ACCESS_KEY_ID"])
    assert re.fullmatch(r"[A-Za-z0-9]{40}", secret["AWS_SECRET_ACCESS_KEY"])
    assert secret["COLLAGE_WEBHOOK_SECRET"] == "hmac-key"
    from service.config import Settings

    assert [k.model_dump(exclude_none=True) for k in Settings(api_keys=json.loads(secret["COLLAGE_API_KEYS"])).api_keys] == [API_KEY]
    statefulset = only(objects, "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {"collage"}
    assert "-s3.config=/tmp/s3.json" in container["args"][0] and "-s3.port=8333" in container["args"][0]
    service = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "collage-seaweedfs")
    assert service["spec"]["selector"] == statefulset["spec"]["template"]["metadata"]["labels"]
    assert only(objects, "ConfigMap")["data"]["COLLAGE_S3_ENDPOINT_URL"] == "http://collage-seaweedfs.collage.svc:8333"
    assert only(objects, "Job")["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "collage",
        "storage",
        "init",
        "--no-checkpoints",
    ]


def test_service_monitor_scrapes_every_ray_pod_and_budgets_select_their_pods(rendered):
    objects = rendered["monitored"]
    monitor = only(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    metrics = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "collage-metrics")
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(metrics["metadata"]["labels"].items())
    templates = pod_templates(only(objects, "RayService"))
    kuberay_label = {"ray.io/is-ray-node": "yes"}
    for template in templates.values():
        assert set(metrics["spec"]["selector"].items()) <= set((template["metadata"]["labels"] | kuberay_label).items())
        assert any(p["name"] == "metrics" and p["containerPort"] == 8080 for p in template["spec"]["containers"][0]["ports"])
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    workers, head = budgets["collage-workers"], budgets["collage-head"]
    assert set(workers["spec"]["selector"]["matchLabels"].items()) <= set(templates["cpu"]["metadata"]["labels"].items())
    assert not set(workers["spec"]["selector"]["matchLabels"].items()) <= set(templates["head"]["metadata"]["labels"].items())
    assert set(head["spec"]["selector"]["matchLabels"].items()) <= set(templates["head"]["metadata"]["labels"].items())
    assert [o["metadata"]["name"] for o in rendered["cpu-only"] if o["kind"] == "PodDisruptionBudget"] == ["collage-workers"]


def test_each_ingress_replica_of_the_chart_enforces_its_share_of_a_keys_rate_limit(rendered):
    """``ingress_replicas`` is both the Ingress's ``num_replicas`` and, in every pod's settings, the divisor of each
    replica's share of a key's rate limit (service/auth.py): the shares add up to the key's limit."""
    from service import auth

    objects = rendered["autoscaling-off"]
    settings = settings_from_configmap(only(objects, "ConfigMap"))
    ingress = _deployments(objects)["Ingress"]
    with mock.patch.object(auth, "get_settings", return_value=settings):
        _, _, limiter = auth._ProcessAuth().current()
    assert limiter.replicas == ingress["num_replicas"] == 2


def test_helm_test_pod_waits_for_readyz_through_the_http_service(rendered):
    pod = only(rendered["cpu-only"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert {"name": "COLLAGE_URL", "value": "http://collage:8000"} in container["env"]
    assert '"$COLLAGE_URL/healthz"' in container["args"][0] and '"$COLLAGE_URL/readyz"' in container["args"][0]


# ---- KubeRay's conventions for the Ray pods -----------------------------------------------------
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_ray_pod_keeps_its_logs_on_a_volume_at_tmp_ray(rendered, value_set):
    for group, template in pod_templates(only(rendered[value_set], "RayService")).items():
        spec = template["spec"]
        mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["/tmp/ray"] == "ray-logs", group  # KubeRay's own name: its autoscaler sidecar mounts the same one
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["ray-logs"], group
        assert set(mounts.values()) <= set(volumes), group


def test_the_log_volume_source_is_configurable(rendered):
    for template in pod_templates(only(rendered["everything-on"], "RayService")).values():
        assert {"name": "ray-logs", "emptyDir": {"sizeLimit": "10Gi"}} in template["spec"]["volumes"]


def test_ray_pods_run_restricted_by_default(rendered):
    """The image's user (Dockerfile USER 1000) is the pods' user, so runAsNonRoot holds; nothing privileged."""
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    image_user = re.findall(r"^USER (\S+)", dockerfile, re.M)[-1]
    assert image_user == str(RESTRICTED_POD["runAsUser"])
    assert re.search(rf"useradd --uid {image_user}\b", dockerfile)
    rayservice = only(rendered["cpu-only"], "RayService")
    for group, template in pod_templates(rayservice).items():
        assert template["spec"]["securityContext"] == RESTRICTED_POD, group
        assert template["spec"]["containers"][0]["securityContext"] == RESTRICTED_CONTAINER, group
        assert "serviceAccountName" not in template["spec"], "no account set: the namespace's default"
    assert rayservice["spec"]["rayClusterConfig"]["autoscalerOptions"]["securityContext"] == RESTRICTED_CONTAINER
    job = only(rendered["cpu-only"], "Job")["spec"]["template"]["spec"]
    assert job["securityContext"] == RESTRICTED_POD and job["containers"][0]["securityContext"] == RESTRICTED_CONTAINER


def test_a_groups_own_security_context_replaces_the_common_one(rendered):
    templates = pod_templates(only(rendered["everything-on"], "RayService"))
    worker = templates["cpu"]["spec"]
    assert worker["securityContext"] == {"runAsNonRoot": True, "runAsUser": 2000, "seccompProfile": {"type": "RuntimeDefault"}}
    assert worker["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert templates["head"]["spec"]["securityContext"] == RESTRICTED_POD


def test_service_account_is_created_or_named(rendered, chart):
    objects = rendered["everything-on"]
    account = only(objects, "ServiceAccount")
    assert account["metadata"]["name"] == "collage"
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/collage"}
    templates = pod_templates(only(objects, "RayService"))
    assert templates["head"]["spec"]["serviceAccountName"] == "collage"
    assert templates["cpu"]["spec"]["serviceAccountName"] == "collage-workers", "a group's own account wins"
    assert only(objects, "Job")["spec"]["template"]["spec"]["serviceAccountName"] == "collage"
    existing = render(chart, _with(serviceAccount={"create": False, "name": "ray-pods"}))
    assert not [o for o in existing if o["kind"] == "ServiceAccount"]
    assert {t["spec"]["serviceAccountName"] for t in pod_templates(only(existing, "RayService")).values()} == {"ray-pods"}
    assert not [o for o in rendered["cpu-only"] if o["kind"] == "ServiceAccount"]


def test_pod_labels_annotations_and_env_add_to_the_charts(rendered):
    rayservice = only(rendered["everything-on"], "RayService")
    templates = pod_templates(rayservice)
    head, worker = templates["head"], templates["cpu"]
    assert head["metadata"]["labels"] | {"team": "imaging", "tier": "control"} == head["metadata"]["labels"]
    assert worker["metadata"]["labels"]["team"] == "imaging" and "tier" not in worker["metadata"]["labels"]
    assert worker["metadata"]["labels"]["app.kubernetes.io/component"] == "ray-worker", "selector labels stay the chart's"
    assert head["metadata"]["annotations"]["example.com/owner"] == "imaging"
    assert head["metadata"]["annotations"]["example.com/scrape"] == "false"
    assert "checksum/settings" in worker["metadata"]["annotations"]
    assert head["spec"]["containers"][0]["env"] == [
        {"name": "HF_HOME", "value": "/tmp/hf"},
        {"name": "RAY_GRAFANA_HOST", "value": "http://grafana.monitoring.svc"},
    ]
    assert worker["spec"]["containers"][0]["env"] == [{"name": "HF_HOME", "value": "/tmp/hf"}]
    assert {"name": "ray-config", "mountPath": "/etc/ray-extra", "readOnly": True} in head["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "scratch", "mountPath": "/tmp/collage"} in worker["spec"]["containers"][0]["volumeMounts"]
    assert "env" not in pod_templates(only(rendered["cpu-only"], "RayService"))["head"]["spec"]["containers"][0]


def test_topology_spread_counts_the_groups_own_pods_unless_told_otherwise(rendered):
    default_group = pod_templates(only(rendered["cpu-only"], "RayService"))["cpu"]
    [spread] = default_group["spec"]["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["whenUnsatisfiable"], spread["maxSkew"]) == ("kubernetes.io/hostname", "ScheduleAnyway", 1)
    own = spread["labelSelector"]["matchLabels"]
    assert own.pop("ray.io/group") == "cpu"  # the label KubeRay puts on every pod of the group
    assert set(own.items()) <= set(default_group["metadata"]["labels"].items())
    zone, host = pod_templates(only(rendered["everything-on"], "RayService"))["cpu"]["spec"]["topologySpreadConstraints"]
    assert zone["topologyKey"] == "topology.kubernetes.io/zone" and zone["labelSelector"]["matchLabels"]["ray.io/group"] == "cpu"
    assert host["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": "collage"}}


def test_gcs_fault_tolerance_is_off_by_default_and_uses_the_external_redis(rendered):
    assert "gcsFaultToleranceOptions" not in only(rendered["cpu-only"], "RayService")["spec"]["rayClusterConfig"]
    options = only(rendered["everything-on"], "RayService")["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    assert options == {
        "redisAddress": "redis.redis.svc:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "collage-redis", "key": "redis-password"}}},
        "externalStorageNamespace": "collage-prod",
    }


def test_gcs_fault_tolerance_without_a_password(chart):
    values = _with(gcsFaultTolerance={"enabled": True, "redisAddress": "redis://redis:6379"})
    rayservice = only(render(chart, values), "RayService")
    _validate_kuberay_crd(rayservice)
    assert rayservice["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"] == {"redisAddress": "redis://redis:6379"}


def test_upgrade_strategy(rendered, chart):
    assert only(rendered["cpu-only"], "RayService")["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    incremental = only(rendered["everything-on"], "RayService")["spec"]["upgradeStrategy"]
    assert incremental == {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {"gatewayClassName": "istio", "intervalSeconds": 30, "stepSizePercent": 25, "maxSurgePercent": 50},
    }
    none = only(render(chart, _with(upgradeStrategy={"type": "None"})), "RayService")
    _validate_kuberay_crd(none)
    assert none["spec"]["upgradeStrategy"] == {"type": "None"}


# ---- bad values fail at render time -------------------------------------------------------------
BASE = VALUE_SETS["cpu-only"]


def _with(**changes: Any) -> dict[str, Any]:
    values = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = values
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


BAD_VALUES = [
    pytest.param(_with(config__batch_max_size=0), r"/config/batch_max_size.*minimum", True, id="batch size 0"),
    pytest.param(_with(config__accel_precision="fp8"), r"/config/accel_precision", True, id="unknown precision"),
    pytest.param(_with(config__family_num_gpus=-0.5), r"/config/family_num_gpus", True, id="negative gpus"),
    pytest.param(_with(config__batch_max_size="eight"), r"/config/batch_max_size", True, id="batch size not a number"),
    pytest.param(_with(config__family_resources={"collage_family": 0}), r"/config/family_resources", True, id="zero resource"),
    pytest.param(_with(config__max_batch_size=8), r"max_batch_size", False, id="not a setting"),
    pytest.param(_with(config__webhook_secret="s"), r"webhook_secret", False, id="secret in config"),
    pytest.param(_with(families__dream={"enabled": True}), r"dream", False, id="unknown family"),
    pytest.param(_with(families__style={"enabled": True, "num_gpu": 1}), r"num_gpu", False, id="misspelled family option"),
    pytest.param(
        _with(families__style={"enabled": True, "min_replicas": 5}),
        r"families.style: min_replicas 5 is above max_replicas 4",
        False,
        id="family min above max",
    ),
    pytest.param(_with(head__rayStartParams={"num-cpus": 0}), r"num-cpus", False, id="ray start flag not a string"),
    pytest.param(
        _with(workerGroups=[cpu_group(minReplicas=3)]), r"minReplicas 3 is above maxReplicas 2", False, id="worker group min above max"
    ),
    pytest.param(
        _with(workerGroups=[{"name": "gpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 2, "gpus": 0.5, "resources": CPU_RESOURCES}]),
        r"gpus",
        False,
        id="fractional gpus per pod",
    ),
    pytest.param(_with(config__s3_endpoint_url=None), r"set config.s3_endpoint_url", False, id="no storage"),
    pytest.param(_with(seaweedfs={"enabled": True}), r"both set", False, id="two storages"),
    pytest.param(
        _with(
            families__style={"enabled": False},
            families__collage={"enabled": False},
            families__inpaint={"enabled": False},
            families__warp={"enabled": False},
            families__ingan={"enabled": False},
            families__person={"enabled": False},
        ),
        r"enable at least one family",
        False,
        id="no family",
    ),
    pytest.param(_with(gcsFaultTolerance={"enabled": True}), r"redisAddress", False, id="fault tolerance without redis"),
    pytest.param(
        _with(gcsFaultTolerance={"enabled": True, "redisAddress": "redis.svc"}), r"redisAddress", False, id="redis address without port"
    ),
    pytest.param(_with(gcsFaultTolerance={"enabled": True, "redis": "r:6379"}), r"redis", False, id="misspelled fault tolerance value"),
    pytest.param(_with(upgradeStrategy={"type": "Rolling"}), r"upgradeStrategy", False, id="unknown upgrade strategy"),
    pytest.param(
        _with(upgradeStrategy={"type": "NewClusterWithIncrementalUpgrade"}),
        r"clusterUpgradeOptions",
        False,
        id="incremental upgrade without its options",
    ),
    pytest.param(
        _with(
            upgradeStrategy={
                "type": "NewCluster",
                "clusterUpgradeOptions": {"gatewayClassName": "g", "intervalSeconds": 1, "stepSizePercent": 5},
            }
        ),
        r"upgradeStrategy",
        False,
        id="incremental options without incremental upgrade",
    ),
    pytest.param(_with(head__volumeMounts=[{"name": "x"}]), r"mountPath", False, id="volume mount without a path"),
    pytest.param(_with(head__containerEnv=[{"value": "1"}]), r"name", False, id="env entry without a name"),
    pytest.param(_with(common__logVolume={"name": "logs", "emptyDir": {}}), r"logVolume", False, id="log volume names itself"),
    pytest.param(_with(common__labels={"tier": 1}), r"labels", False, id="numeric pod label"),
    pytest.param(_with(serviceAccount={"create": True, "name": "Ray_Pods"}), r"serviceAccount", False, id="account name not DNS"),
    pytest.param(
        _with(workerGroups=[cpu_group(topologySpreadConstraints=[{"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}])]),
        r"topologyKey",
        False,
        id="spread without a topology key",
    ),
]


@pytest.mark.parametrize(("values", "message", "settings_reject"), BAD_VALUES)
def test_bad_values_fail_at_render_with_a_message_naming_them(chart, values, message, settings_reject):
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values=copy.deepcopy(values), name="collage", namespace="collage")
    if settings_reject:  # the chart rejects what the service would reject, before any pod starts
        with pytest.raises(ValidationError):
            Settings(**{k: v for k, v in values["config"].items() if v is not None})


def test_a_release_name_kuberay_would_refuse_fails(chart):
    with pytest.raises(helm.HelmError, match="longer than the 47 characters"):
        chart.render(values=copy.deepcopy(BASE), name="a" * 45, namespace="collage")
    assert only(render(chart, BASE, release="edit-collage"), "RayService")["metadata"]["name"] == "edit-collage"
    assert only(render(chart, BASE, release="prod"), "RayService")["metadata"]["name"] == "prod-collage"


# ---- the image ---------------------------------------------------------------------------------
def test_dockerfile_installs_the_package_with_the_pinned_torch_and_ships_the_checkpoints():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    torch_pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    ray_pin = re.search(r'"ray\[serve\]==([^"]+)"', pyproject).group(1)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", dockerfile, re.M))
    assert args["TORCH_VERSION"] == torch_pin and args["TORCH_VARIANT"] == "cpu"
    assert f"pip install torch=={torch_pin}" in (REPO_ROOT / "README.md").read_text()
    assert 'pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"' in dockerfile
    assert re.search(r"^RUN pip install -c constraints\.txt \. ", dockerfile, re.M), "the package itself, with its pinned dependencies"
    assert re.search(r"apt-get install .*\bwget\b", dockerfile), "KubeRay's probes run wget in the Ray container"
    with helm.Chart.load(CHART) as loaded:
        assert loaded.values["rayVersion"] == ray_pin

    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1)
    copied = dict((dest.removeprefix("./"), src) for src, dest in re.findall(r"^COPY (\S+) (\S+)$", dockerfile, re.M))
    assert copied["checkpoints"] == "checkpoints"
    assert re.search(rf"COLLAGE_CHECKPOINTS_DIR={re.escape(workdir)}/checkpoints\b", dockerfile)
    # every local package the installed code imports is copied before `pip install .`
    local = {p.name for p in REPO_ROOT.iterdir() if (p / "__init__.py").is_file()}
    imported = {
        m
        for package in ("service", "deployments", "schemas")
        for path in (REPO_ROOT / package).rglob("*.py")
        for m in re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.M)
    }
    assert imported & local <= set(copied.values()), imported & local - set(copied.values())
    # and .dockerignore (an allowlist) lets every copied source into the build context
    allowed = {line.strip("!/") for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert set(copied.values()) <= allowed
