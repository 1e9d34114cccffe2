"""Screenshots of the playground (``GET /playground``), one per family, for docs/playground.md.

    python -m service.tools.playground_shots --out docs/img/playground            # starts a local service
    python -m service.tools.playground_shots --url http://127.0.0.1:8000 --out …   # or uses a running one

For each family it opens the view of the family's first model (``#model=<name>``: the page picks the
model's first op with something to draw), uses the canvas tool the page offers (a stroke on every mask
or edge layer, a moved keypoint, a dragged output corner, a reference shift), runs the edit and saves
the 1280x800 viewport from the form's top. Then one shot at phone width (390x844). It drives Debian's
chromium (``/usr/bin/chromium``) through Playwright; it never downloads a browser. It names no family:
the families and models come from ``GET /v1/models``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    """Debian's chromium, or the browser named by COLLAGE_CHROMIUM."""
    for candidate in (os.environ.get("COLLAGE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("no chromium found: apt-get install -y chromium (or set COLLAGE_CHROMIUM)")


def launch(playwright: Any):
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])


def open_view(page: Any, url: str, model: str, key: str | None = None, op: str | None = None) -> None:
    """The playground on ``model`` (and ``op``), connected with ``key`` when the service needs one."""
    fragment = f"#model={model}" + (f"&op={op}" if op else "")
    page.goto(f"{url}/playground{fragment}")
    page.wait_for_selector("body[data-ready=true]", timeout=60_000)
    if key:
        page.fill("#api-key", key)
        page.click("#connect")
    page.wait_for_function("m => window.playground.model && window.playground.model.name === m", arg=model, timeout=30_000)
    if op:
        page.wait_for_function("o => window.playground.op && window.playground.op.name === o", arg=op, timeout=30_000)
    wait_settled(page)


def wait_settled(page: Any) -> None:
    """Image pickers loaded and the base image (or example) under the canvas."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.image-field')].every(f => !f.querySelector('[aria-required]') || "
        "f.querySelector('img.thumb').complete && !f.querySelector('img.thumb').hidden)",
        timeout=60_000,
    )
    page.wait_for_timeout(600)  # the debounced base-image preview


def canvas_point(page: Any, fx: float, fy: float) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy


def drag(page: Any, start: tuple[float, float], end: tuple[float, float], steps: int = 10) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def native_to_page(page: Any, x: float, y: float) -> tuple[float, float]:
    """A point in the canvas's own pixels (the mask's, the image's, the output frame's) -> page coordinates,
    with the canvas scrolled into view (mouse events land in the viewport only)."""
    page.locator("#canvas").scroll_into_view_if_needed()
    cx, cy = page.evaluate("([x, y]) => playground.clientPoint(x, y)", [x, y])
    return cx, cy


def exercise(page: Any) -> list[str]:
    """Use every canvas tool the current view offers, once; returns the tools used."""
    used = []
    page.locator("#canvas").scroll_into_view_if_needed()
    tools = page.eval_on_selector_all("#toolbar button[id^=tool-]", "bs => bs.map(b => b.id.slice(5))")
    layers = page.evaluate("() => playground.layers.map(l => [l.id, l.kind])")
    for i, (layer_id, kind) in enumerate(layers):
        if page.locator("#active-layer").count():
            page.select_option("#active-layer", layer_id)
        page.click("#tool-stroke" if kind == "edges" else "#tool-brush")
        y = 0.35 + 0.2 * (i % 3)
        drag(page, canvas_point(page, 0.3, y), canvas_point(page, 0.65, y + 0.08))
        used.append("stroke" if kind == "edges" else "brush")
    if "keypoints" in tools:
        page.click("#tool-keypoints")
        # a wrist or an elbow if one is visible (COCO-18: 4, 7, 3, 6), else the first visible point; moved inside the frame
        index, (x, y) = page.evaluate(
            "() => { const p = playground.pose.points; const i = [4, 7, 3, 6].find(j => p[j]) ?? p.findIndex(q => q); return [i, p[i]]; }"
        )
        width, height = page.evaluate("() => playground.bgSize || [64, 64]")
        target = (min(width - 1, x + width * 0.2), max(1, min(height - 1, y - height * 0.1)))
        drag(page, native_to_page(page, x, y), native_to_page(page, *target))
        used.append("keypoints")
    if "shift" in tools:
        page.click("#tool-shift")
        drag(page, canvas_point(page, 0.5, 0.5), canvas_point(page, 0.6, 0.5))
        used.append("shift")
    if "resize" in tools:
        page.click("#tool-resize")
        corner = page.evaluate("() => { const c = playground.boxes.items[0].control.controls; return [c.width.get(), c.height.get()]; }")
        drag(page, native_to_page(page, *corner), native_to_page(page, corner[0] * 1.2, corner[1]))
        used.append("resize")
    return used


def run_edit(page: Any, timeout_ms: int = 180_000) -> str:
    """Click Run and wait for a result; returns its result id (raises with the page's error text)."""
    before = page.evaluate("() => playground.runs")
    page.click("#run")
    page.wait_for_function("b => playground.runs > b && document.getElementById('result-image').complete", arg=before, timeout=timeout_ms)
    error = page.inner_text("#err-general")
    if error:
        raise RuntimeError(f"the edit failed: {error}")
    return page.get_attribute("#result-figure", "data-result-id")


def shrink(path: Path) -> None:
    """A screenshot as a 256-colour PNG: a third of the bytes, no visible change for a page of flat colours."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def one_model_per_family(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    import httpx

    models = httpx.get(f"{url}/v1/models", headers=headers, timeout=60).json()["models"]
    chosen: dict[str, dict[str, Any]] = {}
    for model in sorted(models, key=lambda m: m["name"]):
        if model.get("broken") or model.get("random_init"):
            continue
        chosen.setdefault(model["family"], model)
    return [chosen[f] for f in sorted(chosen)]


def take(url: str, out: Path, key: str | None = None, say=print) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    written = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for model in one_model_per_family(url, headers):
                page = browser.new_page(viewport=DESKTOP)
                open_view(page, url, model["name"], key)
                used = exercise(page)
                result = run_edit(page)
                page.locator("#form-panel").scroll_into_view_if_needed()
                page.evaluate("() => window.scrollTo(0, document.querySelector('.workspace').offsetTop - 8)")
                path = out / f"{model['family']}.png"
                page.screenshot(path=str(path))
                shrink(path)
                written.append(path)
                say(f"{path}: {model['name']} {page.eval_on_selector('#op', 'e => e.value')}, tools {used}, result {result[:12]}")
                page.close()
            phone = browser.new_page(viewport=PHONE, device_scale_factor=1)
            first = one_model_per_family(url, headers)
            target = next(
                (m for m in first if any("mask" in (op.get("inputs_schema") or {}).get("properties", {}) for op in m["ops"])), first[0]
            )
            open_view(phone, url, target["name"], key)
            exercise(phone)
            run_edit(phone)
            phone.evaluate("() => window.scrollTo(0, document.getElementById('editor').offsetTop - 8)")
            path = out / "phone.png"
            phone.screenshot(path=str(path))
            shrink(path)
            written.append(path)
            say(f"{path}: {target['name']} at {PHONE['width']}x{PHONE['height']}")
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/playground", help="folder for the PNGs")
    parser.add_argument("--url", help="a running service (default: start a local one)")
    parser.add_argument("--key", default=os.environ.get("COLLAGE_CLIENT_TOKEN"), help="API key, if the service needs one")
    args = parser.parse_args(argv)
    if args.url:
        take(args.url.rstrip("/"), Path(args.out), args.key)
        return 0
    from service.runtime import LocalService

    print("no --url given: starting a local service …", file=sys.stderr)
    with LocalService() as service:
        take(service.url, Path(args.out), args.key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
