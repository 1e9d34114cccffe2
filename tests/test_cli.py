"""The `collage` CLI as a client: edit through the API, register a public-format checkpoint, serve two models."""

from __future__ import annotations

import concurrent.futures as cf
import io

import numpy as np
import pytest
import torch
from PIL import Image

from deployments.style.checkpoint import save_rosinality
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from service.tools.cli import main
from tests.helpers import png_bytes
from tests.test_api import MODEL


def test_cli_edit_writes_the_result_png(service, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(
        ["edit", "--url", service.url, "--model", MODEL, "--op", "sample", "--seed", "9", "--params", '{"truncation": 0.5}', "-o", str(out)]
    )
    assert code == 0
    assert '"seed": 9' in capsys.readouterr().out
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)


def test_cli_edit_reports_problems(service, capsys):
    assert main(["edit", "--url", service.url, "--model", MODEL, "--op", "sample", "--params", '{"truncation": 9}']) == 1
    assert "truncation" in capsys.readouterr().err


def test_models_upload_registers_a_rosinality_checkpoint_that_is_served_beside_the_demo(service, client, tmp_path):
    torch.manual_seed(3)
    generator = Generator(StyleGAN2Config(resolution=32, style_dim=64, n_mlp=2, channel_max=32))
    source = tmp_path / "tiny.pt"
    save_rosinality(generator, source)
    assert main(["models", "upload", str(source), "--name", "tiny-32", "--description", "cli test"]) == 0

    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["tiny-32"]["resolution"] == 32 and listed["tiny-32"]["arch"]["style_dim"] == 64

    bodies = [{"model": name, "op": "sample", "inputs": {"seed": seed}} for seed in range(6) for name in ("tiny-32", MODEL)]
    with cf.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda b: client.post("/v1/edits", json=b), bodies))
    assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
    sizes = {(r.json()["model"], r.json()["width"]) for r in results}
    assert sizes == {("tiny-32", 32), (MODEL, 64)}
    png = client.get(results[0].json()["url"]).content
    assert Image.open(io.BytesIO(png)).size == (32, 32)


def test_models_upload_converts_a_chainer_sngan_npz(service, client, tmp_path):
    from deployments.collage.checkpoint import save_sngan_npz
    from tests.test_collage_ops import random_sngan

    source = tmp_path / "gen.npz"
    save_sngan_npz(random_sngan(seed=5), source, prefix="updater/model:gen/")
    classes = tmp_path / "classes.txt"
    classes.write_text("tabby\nbeagle\nbarn_owl\nred_fox\n")
    args = ["models", "upload", str(source), "--name", "sngan-cli", "--format", "sngan-chainer", "--classes", str(classes)]
    assert main(args) == 0
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}["sngan-cli"]
    assert listed["family"] == "collage" and listed["classes"] == ["tabby", "beagle", "barn_owl", "red_fox"]
    response = client.post("/v1/edits", json={"model": "sngan-cli", "op": "sample", "inputs": {"seed": 1, "class_id": "red_fox"}})
    assert response.status_code == 200 and response.json()["width"] == 32, response.text


def test_models_upload_converts_pytorch_pretrained_biggan_and_serves_a_collage(service, client, tmp_path):
    from deployments.collage.biggan_deep import BigGANDeepConfig, random_biggan_deep
    from deployments.collage.checkpoint import save_pretrained_biggan

    config = BigGANDeepConfig(
        output_dim=32,
        z_dim=8,
        class_embed_dim=8,
        channel_width=4,
        num_classes=3,
        layers=((False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1), (False, 1, 1), (True, 1, 1)),
        attention_layer_position=2,
    )
    save_pretrained_biggan(random_biggan_deep(config, seed=2), tmp_path / "biggan")
    args = ["models", "upload", str(tmp_path / "biggan"), *"--name biggan-cli --format pytorch-pretrained-biggan --classes a,b,c".split()]
    assert main(args) == 0
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    upload = client.post("/v1/assets", files={"file": ("m.png", png_bytes(mask), "image/png")}).json()
    body = {
        "model": "biggan-cli",
        "op": "label_collage",
        "params": {"truncation": 0.5, "layers": [0, 1]},
        "inputs": {"base": {"seed": 3, "class_id": "a"}, "regions": [{"mask": upload["asset_id"], "class_id": "c"}]},
    }
    response = client.post("/v1/edits", json=body)
    assert response.status_code == 200 and response.json()["width"] == 32, response.text
    assert main(["models", "upload", str(tmp_path), "--name", "nothing-here", "--format", "pytorch-pretrained-biggan"]) == 2


def test_models_upload_converts_official_edgeconnect_files(service, client, tmp_path):
    from deployments.inpaint.checkpoint import save_official
    from tests.test_edgeconnect import random_edgeconnect

    save_official(random_edgeconnect(seed=6), tmp_path / "edgeconnect")
    assert main(["models", "upload", str(tmp_path / "edgeconnect"), "--name", "edgeconnect-cli", "--format", "edgeconnect-official"]) == 0
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}["edgeconnect-cli"]
    assert listed["family"] == "inpaint" and listed["arch"] == {"channels": 4, "residual_blocks": 2}
    image = np.full((16, 20, 3), 90, np.uint8)
    mask = np.zeros((16, 20), np.uint8)
    mask[4:10, 4:12] = 255
    ids = [client.post("/v1/assets", files={"file": ("a.png", png_bytes(a), "image/png")}).json()["asset_id"] for a in (image, mask)]
    response = client.post("/v1/edits", json={"model": "edgeconnect-cli", "op": "inpaint", "inputs": {"image": ids[0], "mask": ids[1]}})
    assert response.status_code == 200 and (response.json()["width"], response.json()["height"]) == (20, 16), response.text


def test_storage_init_creates_the_bucket_and_registers_the_shipped_checkpoints(s3_server, tmp_path):
    """What the Helm chart's post-install Job runs against a fresh bucket; a second run changes nothing."""
    import shutil
    import uuid

    from service.config import REPO_ROOT, get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore
    from tests.conftest import patched_environ

    shutil.copytree(REPO_ROOT / "checkpoints" / "style-faces", tmp_path / "style-faces")
    bucket = f"init-{uuid.uuid4().hex[:12]}"
    with patched_environ({"COLLAGE_S3_BUCKET": bucket, "COLLAGE_CHECKPOINTS_DIR": str(tmp_path)}):
        assert main(["storage", "init", "--no-checkpoints"]) == 0
        registry = ModelRegistry(AssetStore(get_settings()))
        assert registry.list_manifests() == [], "bucket only"
        assert main(["storage", "init"]) == 0
        assert [m["name"] for m in registry.list_manifests()] == ["style-faces"]
        assert registry.sync_dir(tmp_path) == [], "registered as shipped"


def test_keys_new_prints_a_token_and_the_settings_entry_that_accepts_it(capsys):
    import json

    from service.auth import KeyRing
    from service.config import Settings

    assert main(["keys", "new", "--id", "shop", "--scopes", "edit,jobs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    token = lines[0].rsplit(" ", 1)[-1]
    entry = json.loads(lines[-1])
    assert entry["id"] == "shop" and entry["scopes"] == ["edit", "jobs"] and token not in lines[-1]
    principal = KeyRing(Settings(auth="required", api_keys=[entry])).authenticate(f"Bearer {token}")
    assert principal.key_id == "shop" and principal.scopes == {"edit", "jobs"}
    assert main(["keys", "new", "--id", "x", "--scopes", "root"]) == 1


def test_local_runs_disable_auth_only_when_nothing_else_is_configured():
    from service.config import get_settings, patched_environ
    from service.runtime import disable_auth_for_local_run

    with patched_environ({}, cleared=("COLLAGE_AUTH",)):
        disable_auth_for_local_run()
        assert get_settings().auth == "disabled"
    with patched_environ({"COLLAGE_AUTH": "required"}):
        disable_auth_for_local_run()
        assert get_settings().auth == "required"


def _checkpoint_copy(tmp_path, name: str, **arch_changes):
    """checkpoints/style-demo-random copied under a new name (its arch changed as given, so the weights no longer fit)."""
    import json
    import shutil
    from pathlib import Path

    source = Path(__file__).parent.parent / "checkpoints" / "style-demo-random"
    directory = tmp_path / name
    shutil.copytree(source, directory)
    manifest = json.loads((directory / "model.json").read_text())
    manifest.update(name=name, arch={**manifest["arch"], **arch_changes})
    (directory / "model.json").write_text(json.dumps(manifest))
    return directory


def test_models_upload_refuses_weights_that_do_not_load(service, client, tmp_path, capsys):
    pickled = _checkpoint_copy(tmp_path, "pickle-as-safetensors")
    torch.save({"w": torch.zeros(3)}, pickled / "weights.safetensors")  # a pickle under the safetensors name
    assert main(["models", "upload", str(pickled), "--name", "pickle-as-safetensors"]) == 2
    assert "weights.safetensors is not a safetensors file" in capsys.readouterr().err
    misfit = _checkpoint_copy(tmp_path, "misfit-arch", style_dim=64)  # real safetensors, shapes of another arch
    assert main(["models", "upload", str(misfit), "--name", "misfit-arch"]) == 2
    assert "the style family cannot load it" in capsys.readouterr().err
    for name in ("pickle-as-safetensors", "misfit-arch"):
        assert client.get(f"/v1/models/{name}").status_code == 404, "nothing is registered"


def test_a_registered_model_that_does_not_load_is_marked_broken_and_answers_422_until_fixed(service, client, tmp_path):
    import time

    from service.config import get_settings
    from service.errors import Unprocessable
    from service.registry import ModelRegistry
    from service.storage import AssetStore
    from tests.test_api import assert_problem

    registry = ModelRegistry(AssetStore(get_settings()))
    with pytest.raises(Unprocessable, match="not a safetensors file"):  # the registry checks the format itself too
        registry.register(
            {"name": "pickled", "family": "style", "format": "stylegan2", "ops": ["sample"], "arch": {}}, b"\x80\x04\x95" + b"\0" * 64
        )
    misfit = _checkpoint_copy(tmp_path, "broken-style", style_dim=64)
    registry.register_dir(misfit)  # past the CLI's trial load, as a hand-written upload would be
    body = {"model": "broken-style", "op": "sample", "inputs": {"seed": 1}}
    first = client.post("/v1/edits", json=body)
    problem = assert_problem(first, 422, "broken-style")
    assert problem["type"].endswith("/model-broken") and "cannot be loaded" in problem["detail"]
    deadline = time.monotonic() + 30  # the ingress sees the replica's record once its manifest cache (5 s) expires
    while not client.get("/v1/models/broken-style").json().get("broken") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "state dict does not match" in client.get("/v1/models/broken-style").json()["broken"]
    assert_problem(client.post("/v1/edits", json={**body, "inputs": {"seed": 2}}), 422, "cannot be loaded")

    registry.register_dir(_checkpoint_copy(tmp_path / "fixed", "broken-style"))  # working weights under the same name
    deadline = time.monotonic() + 30
    while (response := client.post("/v1/edits", json={**body, "inputs": {"seed": 3}})).status_code != 200:
        assert response.status_code == 422 and time.monotonic() < deadline, response.text
        time.sleep(0.5)
    assert client.get("/v1/models/broken-style").json().get("broken") is None


@pytest.mark.server
def test_collage_serve_stopped_by_sigterm_while_starting_leaves_no_process_behind(s3_server, tmp_path):
    """SIGTERM during the first minute (Ray up, Serve still deploying) must stop Serve, Ray and the embedded S3 too:
    they sit in other process groups and would outlive the driver."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import uuid
    from pathlib import Path

    from tests.conftest import TEST_BUCKET, _free_port

    mark = f"collage-sigterm-{uuid.uuid4().hex}"

    def marked() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(os.getpid()):
                try:
                    if mark.encode() in (entry / "environ").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    env = {
        **os.environ,
        "COLLAGE_TEST_MARK": mark,
        "COLLAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "COLLAGE_S3_BUCKET": TEST_BUCKET,
        "COLLAGE_S3_PREFIX": f"sigterm-{uuid.uuid4().hex[:8]}/",
        "COLLAGE_HTTP_PORT": str(_free_port()),
        "COLLAGE_RAY_METRICS_PORT": str(_free_port()),
        "COLLAGE_DATA_DIR": str(tmp_path / "data"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "COLLAGE_AUTH": "disabled",
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.tools.cli", "serve", "--families", "collage"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=Path(__file__).parent.parent,
    )
    deadline = time.monotonic() + 120
    while len(marked()) < 4 and time.monotonic() < deadline:  # the driver plus Ray's own processes are up
        time.sleep(0.5)
    assert len(marked()) >= 4, (tmp_path / "serve.log").read_text()[-2000:]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    deadline = time.monotonic() + 60
    while marked() and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:80] for pid in marked()}
    assert not left, f"still running after collage serve exited: {left}"
