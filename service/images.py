"""Image bytes at the edge: decode with limits, encode PNG (our own writer), WebP and JPEG. Generators never see undecoded bytes."""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from schemas.edits import DEFAULT_QUALITY
from service.errors import PayloadTooLarge, Unprocessable

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
ACCEPTED_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


# What Pillow's PNG, JPEG and WebP plugins raise on malformed bytes: besides OSError and ValueError,
# SyntaxError (a broken chunk), struct.error, EOFError, IndexError, KeyError, TypeError and
# ZeroDivisionError have all been seen from crafted files. Every one is about the client's bytes.
_DECODER_ERRORS = (Exception,)


def _too_large_metadata(exc: BaseException) -> bool:
    """Pillow's refusal of an ancillary chunk (text, ICC profile) that inflates past its chunk limit."""
    return isinstance(exc, ValueError) and "Decompressed data too large" in str(exc)


@contextlib.contextmanager
def _client_decoding(max_pixels: int, unreadable: Callable[[BaseException], Unprocessable]) -> Iterator[None]:
    """Pillow work on a client's bytes: a decompression bomb (warning or error) and metadata past the
    decoder's limits are 413, any other failure ``unreadable(exc)`` (a 422); none is a 5xx."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise PayloadTooLarge(f"image is too large to decode: {exc}; the limit is {max_pixels} pixels") from None
    except _DECODER_ERRORS as exc:
        if _too_large_metadata(exc):
            raise PayloadTooLarge(METADATA_TOO_LARGE) from None
        raise unreadable(exc) from None


def _not_an_image(exc: BaseException) -> Unprocessable:
    return Unprocessable("the bytes are not a readable image; send a PNG, JPEG or WebP file", accepted_formats=list(ACCEPTED_FORMATS))


def _damaged(exc: BaseException) -> Unprocessable:
    return Unprocessable(f"the image is damaged or truncated and cannot be decoded ({type(exc).__name__}: {exc})"[:300])


def inspect_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and check format and size before any pixel is decoded."""
    with _client_decoding(max_pixels, _not_an_image):
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels, downscale it first",
            width=width,
            height=height,
            max_pixels=max_pixels,
        )
    if getattr(image, "n_frames", 1) > 1:
        raise Unprocessable("animated images are not accepted; send a single frame")
    if image.mode not in ACCEPTED_MODES:
        raise Unprocessable(
            f"image mode {image.mode!r} is not accepted (16-bit, CMYK, float ...); convert it to 8-bit RGB or grayscale",
            accepted_modes=list(ACCEPTED_MODES),
        )
    return image


METADATA_TOO_LARGE = (
    "a text chunk or ICC profile of the image decompresses past the decoder's limit; strip the image's metadata and send it again"
)


def decode_image(data: bytes, max_pixels: int, mode: str = "RGB") -> np.ndarray:
    """Bytes -> uint8 array (H, W, 3) for mode 'RGB' or (H, W) for mode 'L'. Every failure is a 4xx."""
    image = inspect_image(data, max_pixels)
    with _client_decoding(max_pixels, _damaged):
        image.load()
        if image.mode in ("P", "LA", "RGBA") and mode == "RGB":
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert(mode)
    return np.asarray(image, dtype=np.uint8)


ENCODERS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}  # output.format -> Pillow format


def encode_image(array: np.ndarray, format: str = "png", quality: int = DEFAULT_QUALITY, png_compress_level: int = 1) -> bytes:
    """uint8 (H, W, 3) or (H, W) -> image bytes in ``format`` (png | webp | jpeg); ``quality`` for the lossy two."""
    assert array.dtype == np.uint8 and array.ndim in (2, 3), f"expected uint8 HxW[x3], got {array.dtype} {array.shape}"
    if format == "png":
        return encode_png(array, png_compress_level)
    buffer = io.BytesIO()
    options: dict = {"quality": quality}
    if format == "webp":
        options["method"] = 4  # Pillow's default speed/size trade-off
    Image.fromarray(array).save(buffer, format=ENCODERS[format], **options)
    return buffer.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: grey, grey+alpha, RGB, RGBA
PNG_FILTER_UP = 2  # each byte minus the byte above it (PNG filter type 2)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 (H, W), (H, W, 1|2|3|4) -> PNG bytes, 8 bits per channel, zlib at ``compress_level``.

    Written here rather than through Pillow because encoding sits on every edit's path: Pillow tries
    all five PNG filters on every row to pick one, which costs more than the compression itself
    (128x128 RGB: 2.2 ms at level 1, still 1.1 ms stored uncompressed). One filter for every row,
    Up (a row minus the row above: one numpy subtraction), at the same zlib level is 1.8-2.9x faster
    on a photograph for files 2-5 % larger (loadtests.encode_formats, docs/api.md). Any PNG decoder reads it; tests/test_images.py checks Pillow gets the array back.
    """
    assert array.dtype == np.uint8 and array.ndim in (2, 3), f"expected uint8 HxW[xC], got {array.dtype} {array.shape}"
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    assert channels in PNG_COLOUR_TYPES and height > 0 and width > 0, f"cannot write a PNG of shape {array.shape}"
    rows = np.ascontiguousarray(array).reshape(height, width * channels)
    scanlines = np.empty((height, 1 + width * channels), np.uint8)
    scanlines[:, 0] = PNG_FILTER_UP
    scanlines[0, 1:] = rows[0]  # the first row has nothing above it: Up leaves it as it is
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])  # uint8 wraps modulo 256, as PNG's filters do
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    pixels = zlib.compress(scanlines.data, compress_level)
    return PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")
