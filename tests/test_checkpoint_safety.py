"""Checkpoints never run code and never load corrupted: every torch-format converter refuses a pickle
that names anything but tensors and plain containers (before any of it runs), and the registry
refuses weights whose bytes differ from the sha256 their manifest records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deployments.collage.checkpoint import PRETRAINED_BIGGAN_CONFIG, PRETRAINED_BIGGAN_WEIGHTS, load_pretrained_biggan
from deployments.inpaint.checkpoint import EDGE_FILE, load_official
from deployments.safe_load import load_torch_checkpoint
from deployments.style.checkpoint import read_rosinality
from service.errors import IntegrityError
from service.registry import ModelRegistry
from tests.test_api import CHECKPOINT
from tests.test_biggan_deep import TINY


def _run_payload(marker: str) -> None:  # what the malicious pickle would call while being loaded
    Path(marker).write_text("code ran")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_run_payload, (self.marker,))


def _write_malicious(path: Path, marker: Path) -> None:
    torch.save({"generator": {"w": torch.zeros(2)}, "g_ema": {"w": torch.zeros(2)}, "payload": _Payload(marker)}, path)


def _biggan_dir(tmp_path: Path, marker: Path) -> Path:
    (tmp_path / PRETRAINED_BIGGAN_CONFIG).write_text(json.dumps(TINY.to_dict()))
    _write_malicious(tmp_path / PRETRAINED_BIGGAN_WEIGHTS, marker)
    return tmp_path


def _edgeconnect_dir(tmp_path: Path, marker: Path) -> Path:
    _write_malicious(tmp_path / EDGE_FILE, marker)
    return tmp_path


LOADERS = {
    "generic": lambda tmp, marker: load_torch_checkpoint(_write_malicious(tmp / "x.pt", marker) or tmp / "x.pt"),
    "generic-bytes": lambda tmp, marker: load_torch_checkpoint(_write_malicious(tmp / "x.pt", marker) or (tmp / "x.pt").read_bytes()),
    "stylegan2-rosinality": lambda tmp, marker: read_rosinality(_write_malicious(tmp / "x.pt", marker) or tmp / "x.pt"),
    "biggan-pytorch-pretrained": lambda tmp, marker: load_pretrained_biggan(_biggan_dir(tmp, marker)),
    "edgeconnect-official": lambda tmp, marker: load_official(_edgeconnect_dir(tmp, marker)),
}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_malicious_pickle_is_refused_with_a_clear_error_and_never_runs(tmp_path, loader):
    marker = tmp_path / "marker"
    with pytest.raises(ValueError, match="pickled objects other than tensors") as caught:
        LOADERS[loader](tmp_path, marker)
    assert "weights_only=True" in str(caught.value)
    assert not marker.exists(), "the pickled payload was executed"


def test_a_plain_state_dict_still_loads(tmp_path):
    torch.save({"generator": {"w": torch.ones(3)}, "iteration": 4}, tmp_path / "ok.pt")
    loaded = load_torch_checkpoint(tmp_path / "ok.pt")
    assert loaded["iteration"] == 4 and torch.equal(loaded["generator"]["w"], torch.ones(3))
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_torch_checkpoint(b"not a checkpoint at all")


def test_registry_refuses_weights_that_do_not_match_their_manifest(store):
    registry = ModelRegistry(store)
    manifest = registry.register_dir(CHECKPOINT)
    name = manifest["name"]
    good = registry.load_weights(name)
    assert len(good) == manifest["weights_bytes"]
    store.put(store.model_key(name, "weights.safetensors"), good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped in S3
    with pytest.raises(IntegrityError, match="do not match the sha256") as info:
        registry.load_weights(name)
    problem = info.value.to_problem()
    assert (problem["status"], problem["title"]) == (500, "Checkpoint Integrity Failure")
    assert problem["type"].endswith("/checkpoint-integrity")
    unchecked = {k: v for k, v in manifest.items() if k != "weights_sha256"}
    store.put(store.model_key(name, "model.json"), json.dumps(unchecked).encode(), "application/json")
    registry.invalidate(name)
    with pytest.raises(IntegrityError, match="no weights_sha256"):
        registry.load_weights(name)


@pytest.mark.parametrize(
    "subject, slug, title",
    [
        ("object", "integrity", "Stored Object Failed Integrity Check"),
        ("checkpoint", "checkpoint-integrity", "Checkpoint Integrity Failure"),
    ],
)
def test_integrity_errors_keep_their_problem_across_pickling(subject, slug, title):
    """Family replicas raise them; Ray pickles them to the ingress, which must answer the same problem."""
    import pickle

    error = IntegrityError("bytes do not match", subject=subject, sha256="ab" * 32)
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is IntegrityError and again.subject == subject
    assert (
        again.to_problem()
        == error.to_problem()
        == {
            "type": f"https://collage.dev/problems/{slug}",
            "title": title,
            "status": 500,
            "detail": "bytes do not match",
            "sha256": "ab" * 32,
        }
    )
    with pytest.raises(ValueError, match="subject"):
        IntegrityError("x", subject="weights")
