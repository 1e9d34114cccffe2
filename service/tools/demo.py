"""``collage demo``: upload sample assets, run every available op, write PNGs and an HTML gallery."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import html
import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
from PIL import Image, ImageDraw

from service.auth import client_headers


def sample_images() -> dict[str, np.ndarray]:
    """Offline sample photos shipped with scikit-image."""
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}


def demo_requests(model: dict[str, Any], assets: dict[str, str]) -> list[dict[str, Any]]:
    """The edits the demo runs for one model, by op; `assets` maps sample-image names to asset ids."""
    requests: list[dict[str, Any]] = []
    ops = {op["name"] for op in model["ops"]}
    if model["family"] == "collage":  # class-conditional: a few seeds of every class
        classes = model.get("classes") or []
        for name in classes[:8]:
            for seed in range(4):
                requests.append({"model": model["name"], "op": "sample", "params": {}, "inputs": {"seed": seed, "class_id": name}})
        return requests
    if "sample" in ops:
        for psi in (1.0, 0.7):
            for seed in range(8):
                requests.append({"model": model["name"], "op": "sample", "params": {"truncation": psi}, "inputs": {"seed": seed}})
        requests.append({"model": model["name"], "op": "sample", "params": {"truncation": 0.0}, "inputs": {"seed": 0}})
    if "retarget" in ops:  # InGAN: its one image wider, narrower, taller and with its top narrowed, as one strip
        outputs = [
            {"height": 64, "width": 96},
            {"height": 64, "width": 48},
            {"height": 64, "width": 192},
            {"height": 128, "width": 96},
            {"height": 64, "width": 96, "top_left": 0.2, "top_right": -0.2},
        ]
        requests.append({"model": model["name"], "op": "retarget", "params": {"outputs": outputs}, "inputs": {}})
    if "project" in ops:
        for name in ("astronaut", "chelsea"):
            requests.append(
                {"model": model["name"], "op": "project", "params": {"steps": 100, "resize": True}, "inputs": {"image": assets[name]}}
            )
    return requests


def short(document: dict[str, Any]) -> str:
    """JSON with asset ids cut to 12 characters, for progress lines and captions."""
    return json.dumps({k: (v[:12] + "…" if isinstance(v, str) and len(v) == 64 else v) for k, v in document.items()}, ensure_ascii=False)


def run_demo(url: str, out_dir: Path, concurrency: int = 8, say: Callable[[str], None] = print) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    client = httpx.Client(base_url=url, timeout=300, headers=client_headers())
    say(f"demo against {url}, writing to {out_dir}")

    uploaded = []
    for name, array in sample_images().items():
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        response = client.post("/v1/assets", files={"file": (f"{name}.png", buffer.getvalue(), "image/png")})
        response.raise_for_status()
        info = response.json()
        uploaded.append((name, info))
        Image.fromarray(array).save(out_dir / f"input-{name}.png")
        say(f"  uploaded {name}: asset {info['asset_id'][:12]}… {info['width']}x{info['height']}")

    listing = client.get("/v1/models").json()
    deployed = {family["name"] for family in listing["families"] if family["deployed"]}
    skipped = sorted({m["family"] for m in listing["models"]} - deployed)
    if skipped:
        say(f"skipping the models of families not deployed here (--families): {', '.join(skipped)}")
    models = [m for m in listing["models"] if m["family"] in deployed]
    cards: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = []
    for model in models:
        if model["family"] == "inpaint":  # one before/after grid says it all
            filename = f"{model['name']}-inpaint.png"
            say(f"model {model['name']} [inpaint]: holes in two photos, each filled along its completed edges")
            inpaint_grid(client, model, say).save(out_dir / filename)
            say(f"  inpainting grid (input with hole, completed edges, result, original): {out_dir / filename}")
            grids.append({"file": filename, "model": model["name"], "random_init": model["random_init"], "title": "Inpainting"})
            continue
        if model["family"] == "warp":
            filename = f"{model['name']}-pose-transfer.png"
            say(f"model {model['name']} [warp]: each example person moved into its own target pose and into another's pose")
            pose_transfer_grid(client, model, say).save(out_dir / filename)
            say(f"  pose transfer grid (person, target pose, result, predicted parsing; twice per row): {out_dir / filename}")
            grids.append({"file": filename, "model": model["name"], "random_init": model["random_init"], "title": "Pose transfer"})
            continue
        if model["family"] == "person":
            say(f"model {model['name']} [person]: example people recomposed from each other's factors, sampled, interpolated")
            person_grids = {
                "recompose": ("Disentangled person generation", person_grid),
                "interpolate": ("Factor interpolation (rows: foreground, background, pose)", interpolation_grid),
            }
            for kind, (title, draw_grid) in person_grids.items():
                filename = f"{model['name']}-{kind}.png"
                draw_grid(client, model, say).save(out_dir / filename)
                say(f"  {title} grid: {out_dir / filename}")
                grids.append({"file": filename, "model": model["name"], "random_init": model["random_init"], "title": title})
            continue
        requests = demo_requests(model, {name: info["asset_id"] for name, info in uploaded})
        if not requests:
            continue
        label = " (RANDOM-INIT weights: structured noise, not a trained model)" if model["random_init"] else ""
        say(f"model {model['name']} [{model['family']}]{label}: {len(requests)} edits, {concurrency} at a time")
        done = 0

        def run(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            response = client.post("/v1/edits", json=request)
            if response.status_code != 200:
                raise RuntimeError(f"edit failed: {response.status_code} {response.text}")
            return request, response.json()

        started = time.perf_counter()
        with cf.ThreadPoolExecutor(concurrency) as pool:
            for request, result in pool.map(run, requests):
                done += 1
                image = client.get(result["url"]).content if result["url"].startswith("http") else b""
                filename = f"{model['name']}-{request['op']}-{done:02d}.png"
                (out_dir / filename).write_bytes(image)
                t = result["timings"]
                how = "cached" if result["cached"] else f"batch {t['batch_size']}, compute {t['compute_ms']:.0f} ms"
                say(
                    f"  [{done}/{len(requests)}] {request['op']} {short(request['inputs'])} {short(request['params'])}"
                    f" -> {how}, total {t['total_ms']:.0f} ms"
                )
                cards.append(
                    {
                        "file": filename,
                        "model": model["name"],
                        "op": request["op"],
                        "request": request,
                        "timings": t,
                        "random_init": model["random_init"],
                        "cached": result["cached"],
                    }
                )
        elapsed = time.perf_counter() - started
        repeat = client.post("/v1/edits", json=requests[0]).json()
        say(f"  {len(requests)} edits in {elapsed:.1f} s; repeating the first: cached={repeat['cached']}")
        if {"local_transfer", "part_map"} <= {op["name"] for op in model["ops"]}:
            filename = f"{model['name']}-editing-in-style.png"
            editing_in_style_grid(client, model, say).save(out_dir / filename)
            say(f"  Editing in Style grid (S, R, S with R's part ..., S's part map): {out_dir / filename}")
            grids.append({"file": filename, "model": model["name"], "random_init": model["random_init"], "title": "Editing in Style"})
        if model["family"] == "collage":
            filename = f"{model['name']}-neural-collage.png"
            neural_collage_grid(client, model, say).save(out_dir / filename)
            say(f"  Neural Collage grid (base, eyes -> each other class, late blocks only, feature collage): {out_dir / filename}")
            grids.append({"file": filename, "model": model["name"], "random_init": model["random_init"], "title": "Neural Collage"})

    if cards:
        contact_sheet([out_dir / card["file"] for card in cards]).save(out_dir / "contact_sheet.png")
        say(f"contact sheet: {out_dir / 'contact_sheet.png'}")
    page = out_dir / "index.html"
    page.write_text(render_gallery(cards, uploaded, grids))
    say(f"gallery: {page}")
    return page


def contact_sheet(files: list[Path], columns: int = 8, cell: int = 128) -> Image.Image:
    """All result PNGs on one grid, scaled to `cell` pixels with nearest-neighbour (pixels stay visible)."""
    rows = (len(files) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell, rows * cell), "white")
    for index, path in enumerate(files):
        image = Image.open(path).convert("RGB").resize((cell, cell), Image.NEAREST)
        sheet.paste(image, ((index % columns) * cell, (index // columns) * cell))
    return sheet


def _edit_png(client: httpx.Client, body: dict[str, Any]) -> tuple[Image.Image, dict[str, Any]]:
    response = client.post("/v1/edits", json={**body, "output": {"inline": True}})
    if response.status_code != 200:
        raise RuntimeError(f"edit failed: {response.status_code} {response.text}")
    result = response.json()
    return Image.open(io.BytesIO(base64.b64decode(result["image_base64"]))).convert("RGB"), result


def editing_in_style_grid(
    client: httpx.Client,
    model: dict[str, Any],
    say: Callable[[str], None] = print,
    pairs: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8)),
    cell: int = 128,
) -> Image.Image:
    """One row per (S, R) seed pair: S, R, S with R's part for up to three parts, S's part map.

    A model without a catalog gets one first (the `catalog` op, 6 parts from 64 samples)."""
    name = model["name"]
    catalog = model.get("catalog")
    if catalog is None:
        say(f"  {name} has no part catalog: building one (catalog op, k=6, 64 samples) …")
        _, result = _edit_png(client, {"model": name, "op": "catalog", "params": {"k": 6, "n_samples": 64}})
        catalog = result["extras"]["catalog"]
    preferred = [label for label in ("eyes", "mouth", "hair") if label in catalog["labels"]]
    parts = preferred or list(dict.fromkeys(catalog["labels"]))[:3]
    header = ["S (target)", "R (reference)", *[f"S + R's {part}" for part in parts], "part map of S"]
    font_h = 18
    grid = Image.new("RGB", (cell * len(header), font_h + cell * len(pairs)), "white")
    draw = ImageDraw.Draw(grid)
    for column, text in enumerate(header):
        draw.text((column * cell + 4, 3), text, fill="black")
    for row, (s, r) in enumerate(pairs):
        target, reference = {"seed": s}, {"seed": r}
        tiles = [
            _edit_png(client, {"model": name, "op": "sample", "inputs": target})[0],
            _edit_png(client, {"model": name, "op": "sample", "inputs": reference})[0],
        ]
        for part in parts:
            image, result = _edit_png(
                client,
                {"model": name, "op": "local_transfer", "params": {"parts": [part]}, "inputs": {"target": target, "reference": reference}},
            )
            tiles.append(image)
            say(f"    seeds {s} <- {r}: {part}: {result['extras']['total_channels_changed']} channels changed")
        tiles.append(_edit_png(client, {"model": name, "op": "part_map", "inputs": {"target": target}})[0])
        for column, tile in enumerate(tiles):
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (column * cell, font_h + row * cell))
    return grid


def _upload_png(client: httpx.Client, array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    response = client.post("/v1/assets", files={"file": ("mask.png", buffer.getvalue(), "image/png")})
    response.raise_for_status()
    return response.json()["asset_id"]


def collage_masks(model: dict[str, Any]) -> dict[str, np.ndarray]:
    """Region masks of a collage model: the shipped ``checkpoints/<name>/masks/*.png`` (written by
    ``training.collage_locality --write-masks``), else a centred box as "the middle"."""
    from service.config import get_settings

    resolution = int(model["resolution"])
    folder = Path(get_settings().checkpoints_dir) / model["name"] / "masks"
    masks = {p.stem: np.asarray(Image.open(p).convert("L")) for p in sorted(folder.glob("*.png"))} if folder.is_dir() else {}
    masks = {name: m for name, m in masks.items() if m.shape == (resolution, resolution)}
    if not masks:
        box = np.zeros((resolution, resolution), np.uint8)
        box[resolution // 4 : 3 * resolution // 4, resolution // 4 : 3 * resolution // 4] = 255
        masks = {"middle": box}
    return masks


def neural_collage_grid(
    client: httpx.Client, model: dict[str, Any], say: Callable[[str], None] = print, seeds: tuple[int, ...] = (1, 2, 3, 4), cell: int = 96
) -> Image.Image:
    """One row per base (seed, class), each tile captioned: the base; its region (eyes if the model
    ships an eyes mask) turned into every other class by label_collage (all blocks); the same with
    the last block only; a reference of another class; its region's features pasted into the base
    (feature_collage); the mask."""
    name, classes = model["name"], list(model.get("classes") or [])[:4]
    masks = collage_masks(model)
    part = "eyes" if "eyes" in masks else sorted(masks)[0]
    mask_id = _upload_png(client, masks[part])
    last = len(model.get("layers") or []) - 1
    caption_h = 14
    columns = len(classes) + 4
    grid = Image.new("RGB", (cell * columns, (caption_h + cell) * len(seeds)), "white")
    draw = ImageDraw.Draw(grid)
    for row, seed in enumerate(seeds):
        base_class = classes[row % len(classes)]
        others = [c for c in classes if c != base_class]
        base = {"seed": seed, "class_id": base_class}
        reference = {"seed": seed + 100, "class_id": others[-1]}
        tiles = [(_edit_png(client, {"model": name, "op": "sample", "inputs": base})[0], f"{base_class} {seed}")]
        for target in others:
            tiles.append(
                (
                    _edit_png(
                        client,
                        {
                            "model": name,
                            "op": "label_collage",
                            "inputs": {"base": base, "regions": [{"mask": mask_id, "class_id": target}]},
                        },
                    )[0],
                    f"{part}->{target}",
                )
            )
        tiles.append(
            (
                _edit_png(
                    client,
                    {
                        "model": name,
                        "op": "label_collage",
                        "params": {"layers": [last]},
                        "inputs": {"base": base, "regions": [{"mask": mask_id, "class_id": others[0]}]},
                    },
                )[0],
                f"{part}->{others[0]} b{last}",
            )
        )
        tiles.append((_edit_png(client, {"model": name, "op": "sample", "inputs": reference})[0], f"ref {others[-1]} {seed + 100}"))
        tiles.append(
            (
                _edit_png(
                    client,
                    {"model": name, "op": "feature_collage", "inputs": {"base": base, "references": [{**reference, "mask": mask_id}]}},
                )[0],
                f"ref {part} pasted",
            )
        )
        tiles.append((Image.fromarray(masks[part]).convert("RGB"), f"mask: {part}"))
        say(f"    base seed {seed} ({base_class}): {part} -> {', '.join(others)}; features from seed {seed + 100} ({others[-1]})")
        top = row * (caption_h + cell)
        for column, (tile, caption) in enumerate(tiles):
            draw.text((column * cell + 2, top + 1), caption, fill="black")
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (column * cell, top + caption_h))
    return grid


def demo_holes(size: int) -> dict[str, np.ndarray]:
    """Two masks (white = hole) of a square image: a rectangle and free-hand strokes."""
    rectangle = Image.new("L", (size, size), 0)
    ImageDraw.Draw(rectangle).rectangle([size * 0.3, size * 0.35, size * 0.62, size * 0.6], fill=255)
    strokes = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(strokes)
    width = max(2, size // 14)
    for points in ([(0.15, 0.2), (0.4, 0.45), (0.55, 0.3), (0.85, 0.5)], [(0.2, 0.8), (0.45, 0.6), (0.8, 0.85)]):
        draw.line([(x * size, y * size) for x, y in points], fill=255, width=width, joint="curve")
    return {"rectangle": np.asarray(rectangle), "strokes": np.asarray(strokes)}


def inpaint_grid(
    client: httpx.Client, model: dict[str, Any], say: Callable[[str], None] = print, size: int = 128, cell: int = 160
) -> Image.Image:
    """Rows: (photo, hole); columns: the input with its hole white, the completed edge map, the
    inpainted result, the original. Photos: skimage's chelsea and rocket, centre crops at ``size``."""
    from skimage import data

    photos = {}
    for name, array in (("chelsea", data.chelsea()), ("rocket", data.rocket())):
        image = Image.fromarray(array)
        scale = size / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        photos[name] = np.asarray(image.crop((left, top, left + size, top + size)).convert("RGB"))
    header = ["input (hole white)", "completed edges", "inpainted", "original"]
    caption_h = 16
    rows = [(p, h) for p in photos for h in ("rectangle", "strokes")]
    grid = Image.new("RGB", (cell * len(header), caption_h + cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for column, text in enumerate(header):
        draw.text((column * cell + 3, 2), text, fill="black")
    holes = demo_holes(size)
    for row, (photo_name, hole_name) in enumerate(rows):
        photo, hole = photos[photo_name], holes[hole_name]
        image_id, mask_id = _upload_png(client, photo), _upload_png(client, hole)
        result, response = _edit_png(client, {"model": model["name"], "op": "inpaint", "inputs": {"image": image_id, "mask": mask_id}})
        edges = client.get(f"/v1/assets/{response['extras']['edges_asset_id']}").json()
        edge_map = Image.open(io.BytesIO(client.get(edges["url"]).content)).convert("RGB")
        masked = photo.copy()
        masked[hole > 127] = 255
        tiles = [Image.fromarray(masked), edge_map, result, Image.fromarray(photo)]
        say(
            f"    {photo_name} + {hole_name} hole ({100 * response['extras']['hole_share']:.0f}% of the image): "
            f"compute {response['timings'].get('compute_ms') or 0:.0f} ms"
        )
        for column, tile in enumerate(tiles):
            grid.paste(tile.resize((cell, cell), Image.NEAREST), (column * cell, caption_h + row * cell))
    return grid


def skeleton_image(keypoints: list, height: int, width: int) -> Image.Image:
    """The visible bones of COCO-18 keypoints (18 x [x, y] or None), white on black."""
    from schemas.warp import SKELETON

    image = Image.new("RGB", (width, height), "black")
    draw = ImageDraw.Draw(image)
    for a, b in SKELETON:
        if keypoints[a] is not None and keypoints[b] is not None:
            draw.line([tuple(keypoints[a]), tuple(keypoints[b])], fill=(255, 255, 255), width=1)
    return image


def pose_transfer_grid(client: httpx.Client, model: dict[str, Any], say: Callable[[str], None] = print, scale: int = 3) -> Image.Image:
    """One row per example person of the model: (person, target pose, result, predicted parsing) for the
    example's own target pose, then the same for the next example's pose."""
    height, width = model["image_size"]
    examples = list(model["examples"].items())
    rows = []
    for row, (image_id, example) in enumerate(examples):
        person = Image.open(io.BytesIO(client.get(client.get(f"/v1/assets/{image_id}").json()["url"]).content)).convert("RGB")
        targets = [example["target_keypoints"], examples[(row + 1) % len(examples)][1]["keypoints"]]
        tiles = []
        for target in targets:
            result, response = _edit_png(
                client, {"model": model["name"], "op": "pose_transfer", "inputs": {"image": image_id, "target_keypoints": target}}
            )
            parsing_url = client.get(f"/v1/assets/{response['extras']['parsing_asset_id']}").json()["url"]
            parsing = Image.open(io.BytesIO(client.get(parsing_url).content)).convert("RGB")
            tiles += [person, skeleton_image(target, height, width), result, parsing]
            say(
                f"    example {row}: compute {response['timings'].get('compute_ms') or 0:.0f} ms, batch {response['timings']['batch_size']}"
            )
        rows.append(tiles)
    return _grid(rows, ["person", "target pose", "result", "parsing"] * 2, width * scale, height * scale)


def _grid(rows: list[list[Image.Image]], header: list[str], cell_w: int, cell_h: int) -> Image.Image:
    """Tiles (nearest-upscaled to cell_w x cell_h) in rows under a caption line."""
    caption_h = 16
    grid = Image.new("RGB", (cell_w * len(header), caption_h + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for column, text in enumerate(header):
        draw.text((column * cell_w + 2, 2), text, fill="black")
    for row, tiles in enumerate(rows):
        for column, tile in enumerate(tiles):
            grid.paste(tile.resize((cell_w, cell_h), Image.NEAREST), (column * cell_w, caption_h + row * cell_h))
    return grid


def person_grid(client: httpx.Client, model: dict[str, Any], say: Callable[[str], None] = print, scale: int = 3) -> Image.Image:
    """One row per example person P (the next two examples N1, N2): P, N1, P on N1's background,
    P in N2's pose, N1's person in P's pose on P's background, then sampled: P's person on a new
    background, a new person in P's pose and scene, everything new."""
    height, width = model["image_size"]
    ids = list(model["examples"])
    header = ["person P", "other N", "P on N's bg", "P in N2's pose", "N's fg into P", "new bg", "new person", "all new"]
    people = {i: Image.open(io.BytesIO(client.get(client.get(f"/v1/assets/{i}").json()["url"]).content)).convert("RGB") for i in ids}
    rows = []
    for row, image_id in enumerate(ids):
        other, third = ids[(row + 1) % len(ids)], ids[(row + 2) % len(ids)]
        edits = [
            ("recompose", {"foreground": image_id, "background": other}, {}),
            ("recompose", {"foreground": image_id, "background": image_id, "pose": third}, {}),
            ("recompose", {"foreground": other, "background": image_id, "pose": image_id}, {}),
            ("sample", {"image": image_id, "seed": row}, {"keep": ["foreground", "pose"]}),
            ("sample", {"image": image_id, "seed": row}, {"keep": ["background", "pose"]}),
            ("sample", {"seed": row}, {}),
        ]
        tiles = [people[image_id], people[other]]
        for op, inputs, params in edits:
            image, response = _edit_png(client, {"model": model["name"], "op": op, "inputs": inputs, "params": params})
            tiles.append(image)
        say(f"    example {row}: {len(edits)} edits, last compute {response['timings'].get('compute_ms') or 0:.0f} ms")
        rows.append(tiles)
    return _grid(rows, header, width * scale, height * scale)


def interpolation_grid(
    client: httpx.Client, model: dict[str, Any], say: Callable[[str], None] = print, scale: int = 3, steps: int = 6
) -> Image.Image:
    """Three strips from the first example to the example whose pose differs most from it: foreground,
    background, pose interpolated (the other factors stay the first example's)."""
    height, width = model["image_size"]
    examples = model["examples"]
    start = next(iter(examples))

    def pose_distance(other: str) -> float:
        pairs = [(p, q) for p, q in zip(examples[start]["keypoints"], examples[other]["keypoints"]) if p and q]
        return sum(((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2) ** 0.5 for p, q in pairs) / max(len(pairs), 1)

    end = max((i for i in examples if i != start), key=pose_distance)
    rows = []
    for factor in ("foreground", "background", "pose"):
        strip, response = _edit_png(
            client,
            {
                "model": model["name"],
                "op": "interpolate",
                "inputs": {"start": start, "end": end},
                "params": {"factor": factor, "steps": steps},
            },
        )
        rows.append([strip.crop((s["x"], 0, s["x"] + width, height)) for s in response["extras"]["steps"]])
        say(f"    {factor}: {steps} steps, compute {response['timings'].get('compute_ms') or 0:.0f} ms")
    return _grid(rows, [f"t={s['t']:.2f}" for s in response["extras"]["steps"]], width * scale, height * scale)


def render_gallery(
    cards: list[dict[str, Any]], uploaded: list[tuple[str, dict[str, Any]]], grids: list[dict[str, Any]] | None = None
) -> str:
    items = []
    for card in cards:
        t = card["timings"]
        caption = (
            f"{card['model']} · {card['op']}<br>inputs {html.escape(short(card['request']['inputs']))}"
            f"<br>params {html.escape(json.dumps(card['request']['params']))}"
            + (" · cached" if card["cached"] else f"<br>batch {t['batch_size']} · compute {t['compute_ms']:.0f} ms")
        )
        warn = '<div class="warn">random-init weights</div>' if card["random_init"] else ""
        items.append(f'<figure><img src="{html.escape(card["file"])}" width="128">{warn}<figcaption>{caption}</figcaption></figure>')
    style_grids = "".join(
        f"<h2>{html.escape(g['title'])}: {html.escape(g['model'])}</h2>"
        + ('<div class="warn">random-init weights: structured noise</div>' if g["random_init"] else "")
        + f'<img src="{html.escape(g["file"])}" style="max-width:100%">'
        for g in (grids or [])
    )
    assets = "".join(
        f'<figure><img src="input-{html.escape(n)}.png" height="128"><figcaption>{html.escape(n)}: '
        f"<code>{i['asset_id'][:16]}…</code> {i['width']}x{i['height']}</figcaption></figure>"
        for n, i in uploaded
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Collage demo</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:6px;width:180px;vertical-align:top;font-size:11px}}
img{{image-rendering:pixelated;border:1px solid #ccc;max-width:170px}} .warn{{color:#b00;font-weight:bold}}</style></head><body>
<h1>Collage demo</h1><p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} by <code>collage demo</code>.</p>
<h2>Uploaded assets</h2>{assets}{style_grids}<h2>Edits</h2>{"".join(items)}</body></html>"""
