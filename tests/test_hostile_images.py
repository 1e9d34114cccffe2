"""A corpus of hostile images (tests/helpers.py ``hostile_images``): each one is a 4xx problem or a
correct edit, never a crash, in the decoder alone and through the HTTP API (upload, then inpaint)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service.errors import ProblemError
from service.images import decode_image
from tests.conftest import TEST_MAX_IMAGE_PIXELS
from tests.helpers import hostile_images, png_bytes
from tests.test_api import assert_problem, decode
from tests.test_inpaint_api import MODEL as INPAINT_MODEL
from tests.test_inpaint_api import model  # noqa: F401  (the random-init inpaint model, registered once per module)

CORPUS = hostile_images()
ACCEPTED = [name for name, (_, status, _) in CORPUS.items() if status == 201]


def _expected_rgb(data: bytes) -> np.ndarray:
    """What the service promises for an accepted image: alpha composited over white, then RGB."""
    image = Image.open(io.BytesIO(data)).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, image).convert("RGB"))


@pytest.mark.parametrize("name", list(CORPUS))
def test_decoder_gives_a_4xx_or_the_right_pixels(name):
    data, status, _ = CORPUS[name]
    for mode in ("RGB", "L"):
        if status == 201:
            array = decode_image(data, TEST_MAX_IMAGE_PIXELS, mode=mode)
            assert array.dtype == np.uint8 and array.ndim == (3 if mode == "RGB" else 2)
            if mode == "RGB":
                np.testing.assert_array_equal(array, _expected_rgb(data))
        else:
            with pytest.raises(ProblemError) as caught:
                decode_image(data, TEST_MAX_IMAGE_PIXELS, mode=mode)
            assert 400 <= caught.value.status < 500 and caught.value.status == (status if data else 422)


@pytest.mark.parametrize("name", list(CORPUS))
def test_upload_gives_a_4xx_problem_or_stores_the_image(client, name):
    data, status, detail = CORPUS[name]
    response = client.post("/v1/assets", files={"file": ("x.png", data, "image/png")})
    if status == 201:
        assert response.status_code in (200, 201), response.text
        assert response.json()["width"] == Image.open(io.BytesIO(data)).width
    else:
        assert_problem(response, status, detail)


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_odd_images_are_edited_correctly(client, model, name):  # noqa: F811  (model is the fixture)
    data = CORPUS[name][0]
    expected = _expected_rgb(data)
    height, width = expected.shape[:2]
    hole = np.zeros((height, width), np.uint8)
    hole[10:20, 8:20] = 255
    image_id = client.post("/v1/assets", files={"file": ("x.png", data, "image/png")}).json()["asset_id"]
    mask_id = client.post("/v1/assets", files={"file": ("m.png", png_bytes(hole), "image/png")}).json()["asset_id"]
    response = client.post(
        "/v1/edits",
        json={
            "model": INPAINT_MODEL,
            "op": "inpaint",
            "inputs": {"image": image_id, "mask": mask_id},
            "params": {"dilate": 0},
            "output": {"inline": True},
        },
    )
    assert response.status_code == 200, response.text
    result = decode(base64.b64decode(response.json()["image_base64"]))
    outside = hole == 0
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result[outside], expected[outside])  # outside the hole: the input, bit for bit


def _mutations(data: bytes, count: int, seed: int):
    """Seeded corruptions of one valid file: flipped bytes, cuts, repeated and zeroed spans."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        mutated = bytearray(data)
        kind = rng.integers(4)
        if kind == 0:
            for position in rng.integers(0, len(mutated), size=rng.integers(1, 9)):
                mutated[position] = int(rng.integers(256))
        elif kind == 1:
            mutated = mutated[: rng.integers(1, len(mutated))]
        elif kind == 2:
            start = int(rng.integers(len(mutated)))
            span = mutated[start : start + int(rng.integers(1, 64))]
            mutated[start:start] = span * int(rng.integers(2, 50))
        else:
            start = int(rng.integers(len(mutated)))
            mutated[start : start + int(rng.integers(1, 32))] = b"\xff" * min(32, len(mutated) - start)
        yield bytes(mutated)


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP"])
def test_corrupted_files_of_every_accepted_format_decode_or_give_a_4xx(format):
    """Whatever Pillow raises on a damaged file of a format it reads is the client's fault: a 4xx."""
    rng = np.random.default_rng(1)
    valid = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(valid, format=format)
    outcomes = {"decoded": 0, "refused": 0}
    for data in _mutations(valid.getvalue(), 300, seed=sum(map(ord, format))):
        for mode in ("RGB", "L"):
            try:
                array = decode_image(data, TEST_MAX_IMAGE_PIXELS, mode=mode)
            except ProblemError as exc:
                assert 400 <= exc.status < 500, (exc.status, exc.detail)
                outcomes["refused"] += 1
            else:
                assert array.dtype == np.uint8
                outcomes["decoded"] += 1
    assert outcomes["refused"] > 0, outcomes
