"""The `collage` CLI as a client: edit through the API, register a public-format checkpoint, serve two models."""

from __future__ import annotations

import concurrent.futures as cf
import io

import numpy as np
import torch
from PIL import Image

from deployments.style.checkpoint import save_rosinality
from deployments.style.stylegan2 import Generator, StyleGAN2Config
from service.cli import main
from tests.test_api import MODEL


def test_cli_edit_writes_the_result_png(service, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["edit", "--url", service.url, "--model", MODEL, "--op", "sample", "--seed", "9",
                 "--params", '{"truncation": 0.5}', "-o", str(out)])
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
