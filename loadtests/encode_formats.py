"""Size, encode time and fidelity of each result format (``output.format`` / ``png_compress_level``).

    python -m loadtests.encode_formats [--sizes 64,256,1024] [--repeats 20] [--out docs/perf/encode]

Encodes a photograph (scikit-image's astronaut) resized to each side with ``service.images.encode_image``,
the function a family replica encodes results with, in one thread: PNG at compression levels 0, 1
(the default), 6 and 9, WebP and JPEG at quality 75, 90 (the default) and 95; and, for comparison in
the same run, Pillow's own PNG writer at levels 1 and 6 (what the service used before its own
writer, ``service.images.encode_png``). Prints the median encode
time of ``--repeats`` runs, the size, and the PSNR of the decoded image against the original
(lossless: inf). Writes ``encode.json``, ``encode.md`` and ``encode.png`` to --out.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = [
    ("png", {"png_compress_level": 0}),
    ("png", {"png_compress_level": 1}),
    ("png", {"png_compress_level": 6}),
    ("png", {"png_compress_level": 9}),
    ("pillow-png", {"png_compress_level": 1}),
    ("pillow-png", {"png_compress_level": 6}),
    ("webp", {"quality": 75}),
    ("webp", {"quality": 90}),
    ("webp", {"quality": 95}),
    ("jpeg", {"quality": 75}),
    ("jpeg", {"quality": 90}),
    ("jpeg", {"quality": 95}),
]


def label(fmt: str, options: dict[str, int]) -> str:
    if fmt == "pillow-png":
        return f"png level {options['png_compress_level']}, Pillow's writer (before)"
    return f"png level {options['png_compress_level']}" if fmt == "png" else f"{fmt} q{options['quality']}"


def pillow_png(image: np.ndarray, png_compress_level: int) -> bytes:
    """Pillow's PNG writer, which tries every filter on every row (the service's encoder until 2026-12)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=png_compress_level)
    return buffer.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def encode_variant(image: np.ndarray, fmt: str, options: dict[str, int]) -> bytes:
    from service.images import encode_image

    return pillow_png(image, **options) if fmt == "pillow-png" else encode_image(image, fmt, **options)


def measure(sizes: list[int], repeats: int) -> dict[str, Any]:
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    results: dict[str, Any] = {}
    for side in sizes:
        image = np.asarray(photo.resize((side, side), Image.BICUBIC))
        for fmt, options in VARIANTS:
            encoded = encode_variant(image, fmt, options)
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                encode_variant(image, fmt, options)
                times.append(time.perf_counter() - started)
            decoded = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
            results.setdefault(str(side), {})[label(fmt, options)] = {
                "bytes": len(encoded),
                "encode_ms": 1e3 * statistics.median(times),
                "psnr_db": psnr(decoded, image),
            }
    return results


def markdown(results: dict[str, Any], command: str) -> str:
    sides = list(results)
    lines = [
        f"`{command}` · median encode ms (one thread) · KB · PSNR dB against the original",
        "",
        "| format | " + " | ".join(f"{s} px: ms / KB / PSNR" for s in sides) + " |",
        "|---|" + "---:|" * len(sides),
    ]
    for name in results[sides[0]]:
        cells = []
        for side in sides:
            r = results[side][name]
            fidelity = "lossless" if r["psnr_db"] == float("inf") else f"{r['psnr_db']:.1f}"
            cells.append(f"{r['encode_ms']:.2f} / {r['bytes'] / 1024:.1f} / {fidelity}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for k, side in enumerate(results):
        rows = results[side]
        ax.scatter([r["bytes"] / 1024 for r in rows.values()], [r["encode_ms"] for r in rows.values()], color=f"C{k}", label=f"{side} px")
        for name, r in rows.items():
            ax.annotate(name, (r["bytes"] / 1024, r["encode_ms"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("size (KB)")
    ax.set_ylabel("encode ms")
    ax.legend(fontsize=7)
    ax.set_title("result encodings: size vs encode time", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from loadtests.bench import write_report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,256,1024")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default="bench-out/encode")
    args = parser.parse_args(argv)
    command = "python -m loadtests.encode_formats " + " ".join(argv if argv is not None else sys.argv[1:])
    results = measure([int(s) for s in args.sizes.split(",")], args.repeats)
    write_report(args.out, "encode", {"command": command, "sizes": results}, markdown(results, command), lambda r, p: chart(r["sizes"], p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
