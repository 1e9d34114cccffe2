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
    response = client.post("/v1/edits", json={"model": INPAINT_MODEL, "op": "inpaint", "inputs": {"image": image_id, "mask": mask_id},
                                              "params": {"dilate": 0}, "output": {"inline": True}})
    assert response.status_code == 200, response.text
    result = decode(base64.b64decode(response.json()["image_base64"]))
    outside = hole == 0
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result[outside], expected[outside])  # outside the hole: the input, bit for bit
