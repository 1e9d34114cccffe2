"""service.images' own PNG writer: any decoder reads back exactly the array it was given (no Ray)."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from service.images import PNG_SIGNATURE, decode_image, encode_image, encode_png

RNG = np.random.default_rng(7)
SHAPES = [(1, 1), (1, 9), (9, 1), (37, 53), (64, 64, 1), (3, 5, 2), (37, 53, 3), (1, 1, 3), (20, 31, 4)]
PILLOW_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _channels(shape: tuple[int, ...]) -> int:
    return 1 if len(shape) == 2 else shape[2]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("content", ["noise", "flat", "ramps"])
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_pillow_reads_back_the_array_bit_for_bit(shape, content, level):
    if content == "noise":
        array = RNG.integers(0, 256, shape, dtype=np.uint8)  # every byte difference, wrap-around included
    elif content == "flat":
        array = np.full(shape, 255, np.uint8)
    else:
        array = (np.add.outer(np.arange(shape[0]) * 7, np.arange(shape[1]) * 3) % 256).astype(np.uint8)
        if len(shape) == 3:
            array = np.repeat(array[..., None], shape[2], axis=2)
    png = encode_png(array, level)
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        image.verify()  # chunk CRCs and structure
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.mode == PILLOW_MODES[_channels(shape)]
        assert image.size == (shape[1], shape[0])
        back = np.asarray(image)
    assert np.array_equal(back.reshape(array.shape), array)


def test_a_strided_view_is_written_as_its_pixels():
    whole = RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    view = whole[5:30:2, 7:44]  # output.region cuts views like this
    assert np.array_equal(decode_image(encode_png(view), 1 << 20, "RGB"), view)


def test_the_zlib_level_is_the_setting():
    array = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    stored, fast = encode_png(array, 0), encode_png(array, 1)
    assert len(stored) > 64 * 257  # level 0: the scanlines stored, uncompressed
    assert len(fast) < len(stored) // 10  # every row repeats the last: Up makes them zeros
    idat = fast[fast.index(b"IDAT") + 4 :]
    assert zlib.decompressobj().decompress(idat)[:2] == b"\x02\x00"  # filter type Up, then the first byte


def test_encode_image_writes_png_through_it_and_the_lossy_formats_through_pillow():
    array = RNG.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    assert encode_image(array, "png", png_compress_level=1) == encode_png(array, 1)
    for fmt, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        assert encode_image(array, fmt, quality=80).startswith(magic)
    with pytest.raises(AssertionError):
        encode_png(np.zeros((4, 4, 5), np.uint8))
