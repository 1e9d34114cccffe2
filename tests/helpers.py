"""Image bytes for tests: valid ones and a corpus of hostile ones; and the CLI's own output lines, apart from Ray's."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
from PIL import Image

# A Ray driver left connected by an earlier test forwards its workers' output to this process's stdout and
# stderr ("(ServeReplica:collage:Ingress pid=N) ..."), at any moment, so a captured CLI output may hold them.
RAY_WORKER_LINE = re.compile(r"^(\x1b\[[0-9;]*m)?\([\w:.-]+ pid=\d+")


def own_lines(text: str) -> str:
    """`text` without the lines Ray forwarded from its workers."""
    return "\n".join(line for line in text.splitlines() if not RAY_WORKER_LINE.match(line))


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def random_png(height: int = 32, width: int = 48, seed: int = 0) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims a huge 1-bit image (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = compressor.compress(row * 64) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png16() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_png() -> bytes:
    return random_png(64, 64)[:300]


def _saved(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def palette_png(height: int = 40, width: int = 36, seed: int = 0) -> bytes:
    """An 8-bit palette (mode P) PNG of random colours."""
    rgb = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    return _saved(rgb.quantize(colors=16), "PNG")


def rgba_png(height: int = 40, width: int = 36, seed: int = 0) -> bytes:
    """An RGBA PNG whose left half is fully transparent."""
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    array[:, : width // 2, 3] = 0
    return png_bytes(array)


def grey_alpha_png(height: int = 40, width: int = 36, seed: int = 0) -> bytes:
    """A grey + alpha (mode LA) PNG."""
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 2), dtype=np.uint8)
    return _saved(Image.fromarray(array, mode="LA"), "PNG")


def animated_png(frames: int = 3) -> bytes:
    """An APNG with several frames."""
    images = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(frames)]
    return _saved(images[0], "PNG", save_all=True, append_images=images[1:], duration=100)


def animated_webp(frames: int = 3) -> bytes:
    images = [Image.new("RGB", (16, 16), (0, 40 * i, 0)) for i in range(frames)]
    return _saved(images[0], "WEBP", save_all=True, append_images=images[1:], duration=100, lossless=True)


def animated_gif(frames: int = 3) -> bytes:
    images = [Image.new("P", (16, 16), i) for i in range(frames)]
    return _saved(images[0], "GIF", save_all=True, append_images=images[1:], duration=100)


def wrong_magic_png() -> bytes:
    """A PNG whose 8-byte signature is damaged (the rest of the file intact)."""
    data = bytearray(random_png(32, 32))
    data[1:4] = b"JPG"
    return bytes(data)


def jpeg_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A small JPEG whose frame header claims huge dimensions (the SOF0 size fields patched)."""
    data = bytearray(_saved(Image.new("RGB", (8, 8), (200, 10, 10)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_image() -> bytes:
    """A valid image in a format the service does not accept."""
    return _saved(Image.new("RGB", (16, 16), (1, 2, 3)), "TIFF")


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """A valid 8x8 RGB PNG with one extra chunk right after IHDR (33 bytes: signature + IHDR)."""
    plain = png_bytes(np.zeros((8, 8, 3), dtype=np.uint8))
    return plain[:33] + _png_chunk(kind, payload) + plain[33:]


def inflating_chunk_png(kind: bytes = b"iCCP", inflated_bytes: int = 4 << 20) -> bytes:
    """A ~4 KB PNG whose ICC profile (or zTXt text) inflates to ``inflated_bytes``, past Pillow's chunk limit."""
    compressed = zlib.compress(b"\0" * inflated_bytes, 9)
    return png_with_chunk(kind, b"profile\0\0" + compressed)


def hostile_images() -> dict[str, tuple[bytes, int, str]]:
    """name -> (bytes, expected upload status, text the problem detail must contain); 201 = accepted."""
    return {
        "not-an-image": (b"hello, not an image", 422, "not a readable image"),
        "empty": (b"", 422, "empty"),
        "wrong-magic": (wrong_magic_png(), 422, "not a readable image"),
        "truncated-png": (truncated_png(), 422, "truncated"),
        "png-bomb": (png_bomb(), 413, "pixels"),
        "jpeg-bomb": (jpeg_bomb(), 413, "pixels"),
        "jpeg-over-pixel-cap": (jpeg_bomb(1500, 1500), 413, "pixels"),  # under Pillow's own bomb limit, over the service's
        "png-16-bit": (png16(), 422, "mode"),
        "cmyk-jpeg": (cmyk_jpeg(), 422, "mode"),
        "animated-png": (animated_png(), 422, "animated"),
        "animated-webp": (animated_webp(), 422, "animated"),
        "animated-gif": (animated_gif(), 422, "not a readable image"),
        "tiff": (tiff_image(), 422, "not a readable image"),
        "png-iccp-bomb": (inflating_chunk_png(b"iCCP"), 413, "ICC profile"),
        "png-ztxt-bomb": (inflating_chunk_png(b"zTXt"), 413, "ICC profile"),
        "png-bad-chunk-crc": (png_with_chunk(b"tEXt", b"k\0v")[:-30] + b"\0" * 30, 422, ""),
        "palette-png": (palette_png(), 201, ""),
        "rgba-png": (rgba_png(), 201, ""),
        "grey-alpha-png": (grey_alpha_png(), 201, ""),
    }
