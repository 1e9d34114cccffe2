"""The ``collage`` command: serve, demo, edit, jobs, models, keys, storage, serve-config, and the
commands families add (``collage.cli`` entry points: ``catalog`` of the style family)."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx

from service.families import CLI_GROUP, CONVERTERS_GROUP, load_plugin, plugin_names

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_FORMAT = "rosinality-stylegan2"  # `models upload` without --format, where a family registers it


def _say(message: str) -> None:
    print(message, flush=True)


def _client(url: str, timeout_s: float) -> httpx.Client:
    """An HTTP client of the service that sends the COLLAGE_CLIENT_TOKEN API key, if one is set."""
    from service.auth import client_headers

    return httpx.Client(base_url=url, timeout=timeout_s, headers=client_headers())


def _missing_embedded_s3() -> str | None:
    """Why the embedded S3 server cannot start (its binary is not installed), when the settings need it; else None.

    Checked before anything starts, so a missing ``embedded`` extra is one line naming it, not a traceback from inside
    the service's start."""
    from service.config import get_settings

    get_settings.cache_clear()
    if not get_settings().embedded_s3:
        return None
    from service.s3server import find_weed

    try:
        find_weed()
    except RuntimeError as exc:
        return str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from service.runtime import LocalService

    if args.port is not None:
        os.environ["COLLAGE_HTTP_PORT"] = str(args.port)
    missing = _missing_embedded_s3()
    if missing:
        print(f"collage serve: {missing}", file=sys.stderr)
        return 2
    service = LocalService(families=args.families)
    stop = threading.Event()
    waiting = False

    def on_signal(*_) -> None:
        # SIGINT or SIGTERM: while idle, end the wait; while starting or running the demo, interrupt it. Either way
        # the `finally` below stops Serve, Ray and the embedded S3, which would outlive this process otherwise.
        stop.set()
        if not waiting:
            raise KeyboardInterrupt

    def handle_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)

    handle_signals()
    try:
        _say("starting Collage: storage, Ray, Serve app (first start takes a minute) …")
        service.start()
        handle_signals()  # ray.init put in its own SIGTERM handler (sys.exit), caught below while starting
        _say(f"Collage is ready at {service.url}  (API docs: {service.url}/docs, metrics: {service.url}/metrics)")
        if args.demo:
            from service.tools.demo import run_demo

            run_demo(service.url, Path(args.out), say=_say)
        if not args.exit_after_demo:
            _say("serving; press Ctrl-C to stop")
            waiting = True
            stop.wait()
    except (KeyboardInterrupt, SystemExit):  # SystemExit: Ray's SIGTERM handler, during the start
        pass
    finally:
        waiting = True  # a second signal while stopping must not interrupt the stop
        _say("stopping …")
        service.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from service.tools.demo import run_demo

    if args.url:
        run_demo(args.url, Path(args.out), say=_say)
        return 0
    from service.runtime import LocalService

    _say("no --url given: starting a local service for the demo …")
    with LocalService() as service:
        run_demo(service.url, Path(args.out), say=_say)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    body = {"model": args.model, "op": args.op, "params": json.loads(args.params), "inputs": json.loads(args.inputs)}
    if args.seed is not None:
        body["inputs"]["seed"] = args.seed
    with _client(args.url, 300) as client:
        response = client.post("/v1/edits", json=body)
        if response.status_code != 200:
            print(json.dumps(response.json(), indent=2), file=sys.stderr)
            return 1
        result = response.json()
        if args.output:
            Path(args.output).write_bytes(client.get(result["url"]).content)
            result["saved_to"] = args.output
    print(json.dumps(result, indent=2))
    return 0


# ---- jobs ------------------------------------------------------------------------------------
TERMINAL_JOB_STATES = ("succeeded", "completed_with_errors", "failed", "cancelled")


def _problem_exit(response: httpx.Response) -> int:
    print(json.dumps(response.json(), indent=2) if response.content else response.reason_phrase, file=sys.stderr)
    return 1


def _upload_data(client: httpx.Client, path: Path) -> str:
    """Upload a file as a 'data' asset (presigned PUT when it is larger than a request body may be); its asset id."""
    data = path.read_bytes()
    if len(data) <= 8 * 1024 * 1024:
        response = client.post("/v1/assets", files={"file": (path.name, data, "application/x-ndjson")}, data={"kind": "data"})
    else:
        slot = client.post("/v1/assets/uploads", json={"content_type": "application/x-ndjson", "kind": "data", "size": len(data)})
        slot.raise_for_status()
        httpx.put(slot.json()["url"], content=data, headers=slot.json()["headers"], timeout=300).raise_for_status()
        response = client.post(f"/v1/assets/uploads/{slot.json()['upload_id']}/complete")
    if response.status_code not in (200, 201):
        raise SystemExit(_problem_exit(response))
    return response.json()["asset_id"]


def progress_line(status: dict, elapsed_s: float, width: int = 30) -> str:
    """``[#######.......] 120/200 · 3 failed · 14.2 items/s · ETA 6 s · running``; a fit job counts iterations."""
    fit = status.get("fit") or {}
    if fit.get("iterations") and status["state"] not in TERMINAL_JOB_STATES:
        filled = int(width * fit.get("iteration", 0) / fit["iterations"])
        parts = [f"[{'#' * filled}{'.' * (width - filled)}] iteration {fit.get('iteration', 0)}/{fit['iterations']}"]
        if fit.get("it_per_s"):
            parts.append(f"{fit['it_per_s']:.1f} it/s · ETA {fit.get('eta_s') or 0:.0f} s")
        return " · ".join(parts + [f"fitting {fit.get('model', '')}", status["state"]])
    counts = status["counts"]
    done = counts["total"] - counts["pending"]
    filled = int(width * done / max(1, counts["total"]))
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] {done}/{counts['total']}"]
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if counts["cancelled"]:
        parts.append(f"{counts['cancelled']} cancelled")
    if rate > 0:
        parts.append(f"{rate:.1f} items/s")
        if counts["pending"] and status["state"] == "running":
            parts.append(f"ETA {counts['pending'] / rate:.0f} s")
    parts.append(status["state"])
    return " · ".join(parts)


def _wait_job(client: httpx.Client, job_id: str, interval_s: float = 0.5) -> dict:
    """Poll until the job is finished, drawing a progress bar on stderr (one line every 5 s when not a terminal)."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    last_print = 0.0
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        response.raise_for_status()
        status = response.json()
        finished = status["state"] in TERMINAL_JOB_STATES
        line = progress_line(status, time.monotonic() - started)
        if tty:
            print("\r" + line.ljust(100), end="\n" if finished else "", file=sys.stderr, flush=True)
        elif finished or time.monotonic() - last_print >= 5:
            print(line, file=sys.stderr, flush=True)
            last_print = time.monotonic()
        if finished:
            return status
        time.sleep(interval_s)


def cmd_jobs_submit(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 1
    with _client(args.url, 120) as client:
        body: dict = {"manifest": {"asset_id": _upload_data(client, path)}}
        if args.webhook:
            body["webhook_url"] = args.webhook
        headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
        response = client.post("/v1/jobs", json=body, headers=headers)
        if response.status_code not in (200, 202):
            return _problem_exit(response)
        status = response.json()
        _say(
            f"job {status['job_id']}: {status['counts']['total']} edits ({'submitted' if response.status_code == 202 else 'submitted before'})"
        )
        if args.wait:
            status = _wait_job(client, status["job_id"])
            print(json.dumps(status, indent=2))
            return 0 if status["state"] == "succeeded" else 2
    print(json.dumps(status, indent=2))
    return 0


def cmd_jobs_fit(args: argparse.Namespace) -> int:
    """Upload an image and start a fit job (InGAN); with --wait, a progress bar until the model is registered."""
    path = Path(args.image)
    if not path.is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 1
    with _client(args.url, 120) as client:
        uploaded = client.post("/v1/assets", files={"file": (path.name, path.read_bytes(), "application/octet-stream")})
        if uploaded.status_code not in (200, 201):
            return _problem_exit(uploaded)
        fit = {
            "image": uploaded.json()["asset_id"],
            "iterations": args.iterations,
            "scale_min": args.scale_min,
            "scale_max": args.scale_max,
            "size": args.size,
            "seed": args.seed,
            **({"name": args.name} if args.name else {}),
        }
        response = client.post("/v1/jobs", json={"fit": fit})
        if response.status_code not in (200, 202):
            return _problem_exit(response)
        status = response.json()
        _say(f"job {status['job_id']}: fit on {path.name} ({args.iterations} iterations)")
        if args.wait:
            status = _wait_job(client, status["job_id"])
            if status["state"] == "succeeded":
                item = client.get(f"/v1/jobs/{status['job_id']}/results").json()["items"][0]
                _say(f"model {item['model']} registered (identity PSNR {item['extras']['identity_psnr_db']} dB); preview: {item['url']}")
            print(json.dumps(status, indent=2))
            return 0 if status["state"] == "succeeded" else 2
    print(json.dumps(status, indent=2))
    return 0


def cmd_jobs_status(args: argparse.Namespace) -> int:
    with _client(args.url, 60) as client:
        if args.wait:
            status = _wait_job(client, args.job_id)
        else:
            response = client.get(f"/v1/jobs/{args.job_id}")
            if response.status_code != 200:
                return _problem_exit(response)
            status = response.json()
    print(json.dumps(status, indent=2))
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with _client(args.url, 60) as client:
        response = client.delete(f"/v1/jobs/{args.job_id}")
    if response.status_code != 202:
        return _problem_exit(response)
    print(json.dumps(response.json(), indent=2))
    return 0


def cmd_jobs_results(args: argparse.Namespace) -> int:
    """Every item as one JSON line on stdout; with --out, the result PNGs as <index>.png too."""
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    with _client(args.url, 120) as client:
        cursor: int | None = 0
        while cursor is not None:
            response = client.get(f"/v1/jobs/{args.job_id}/results", params={"cursor": cursor, "limit": 500})
            if response.status_code != 200:
                return _problem_exit(response)
            page = response.json()
            for item in page["items"]:
                if out and item.get("url"):
                    (out / f"{item['index']:06d}.png").write_bytes(httpx.get(item["url"], timeout=60).content)
                print(json.dumps(item))
            cursor = page["next_cursor"]
    return 0


@contextlib.contextmanager
def _registry() -> Iterator["object"]:
    """The model registry on the configured S3; in embedded mode, the local server (started if not running)."""
    from service.config import get_settings
    from service.registry import ModelRegistry
    from service.storage import AssetStore

    settings = get_settings()
    server = None
    if settings.embedded_s3:
        from service.errors import ProblemError
        from service.s3server import EmbeddedS3

        embedded = EmbeddedS3(Path(settings.data_dir) / "s3", port=settings.embedded_s3_port)
        os.environ.update(embedded.env())
        get_settings.cache_clear()
        settings = get_settings()
        try:
            AssetStore(settings).ping()  # a running `collage serve` already holds the data dir
        except ProblemError:
            server = embedded.start()
    try:
        store = AssetStore(settings)
        store.ensure_bucket()
        yield ModelRegistry(store)
    finally:
        if server is not None:
            server.stop()


def _convert(source: Path, out: Path, args: argparse.Namespace) -> None:
    """Public checkpoint -> project format in ``out``: the --format's converter, a family's
    ``collage.converters`` entry point (service/families.py), imported only now. Its signature is
    ``(source, out_dir, name, *, description, [classes])``; class names go to those that take them."""
    classes = None
    if args.classes:
        path = Path(args.classes)
        classes = (
            [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if path.is_file()
            else [c.strip() for c in args.classes.split(",")]
        )
    convert = load_plugin(CONVERTERS_GROUP, args.format)
    extra = {"classes": classes} if "classes" in inspect.signature(convert).parameters else {}
    convert(source, out, args.name, description=args.description, **extra)


def load_problem(directory: Path) -> str | None:
    """Why the project-format checkpoint in ``directory`` would not load on its family's replica (None: it
    loads). The weights must be safetensors, and the family's ``load_model`` must build its generator
    from them, here on the CPU, so wrong shapes or keys for the manifest's ``arch`` are refused at upload,
    not found by the first edit. (``load_model`` uses nothing of its deployment but ``self.device``.)"""
    import types

    import torch

    from service.families import load_deployment
    from service.registry import MANIFEST, WEIGHTS, safetensors_problem

    manifest = json.loads((directory / MANIFEST).read_text())
    weights = (directory / WEIGHTS).read_bytes()
    problem = safetensors_problem(weights)
    if problem:
        return f"{WEIGHTS} is not a safetensors file: {problem}"
    deployment = load_deployment(manifest["family"])
    family_class = getattr(deployment, "func_or_class", deployment)  # the class under Serve's decorator
    try:
        family_class.load_model(types.SimpleNamespace(device=torch.device("cpu")), manifest, weights)
    except Exception as exc:  # whatever the family's loader raises is the checkpoint's fault
        return f"the {manifest['family']} family cannot load it: {type(exc).__name__}: {exc}"[:800]
    return None


def cmd_models_upload(args: argparse.Namespace) -> int:
    source = Path(args.path)
    with _registry() as registry, tempfile.TemporaryDirectory() as tmp:
        directory = source
        if not (source / "model.json").is_file():  # not yet in the project format
            directory = Path(tmp)
            try:
                _convert(source, directory, args)
            except (ValueError, FileNotFoundError) as exc:
                print(f"cannot convert {source} as {args.format}: {exc}", file=sys.stderr)
                return 2
        problem = load_problem(directory)
        if problem:
            print(f"cannot register {source}: {problem}", file=sys.stderr)
            return 2
        manifest = registry.register_dir(directory, name=args.name)
    _say(
        f"registered {manifest['name']} ({manifest['family']}, {manifest['weights_bytes']} bytes, sha256 {manifest['weights_sha256'][:12]}…)"
    )
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    with _registry() as registry:
        for manifest in registry.list_manifests():
            flag = " [random-init]" if manifest.get("random_init") else ""
            _say(f"{manifest['name']:32s} {manifest['family']:8s} res={manifest.get('resolution')} ops={','.join(manifest['ops'])}{flag}")
    return 0


def cmd_storage_init(args: argparse.Namespace) -> int:
    from service.config import get_settings

    with _registry() as registry:  # creates the bucket when it is missing
        _say(f"bucket {get_settings().s3_bucket!r} ready")
        if args.checkpoints:
            synced = registry.sync_dir(Path(get_settings().checkpoints_dir))
            _say(f"registered shipped checkpoints: {', '.join(synced) if synced else 'all up to date'}")
    return 0


def cmd_serve_config(args: argparse.Namespace) -> int:
    import yaml

    from service.config import get_settings
    from service.tools.serve_config import serve_config

    text = yaml.safe_dump(serve_config(get_settings(), args.families), sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    from service.auth import key_entry, new_token

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    token = new_token()
    try:
        entry = key_entry(args.id, token, scopes, args.rate_limit)
    except ValueError as exc:
        _say(f"error: {exc}")
        return 1
    _say(f"token (give it to the client; it is not stored anywhere): {token}")
    _say("add this entry to the COLLAGE_API_KEYS JSON list (or the chart's secrets.apiKeys):")
    _say(json.dumps(entry.model_dump(exclude_none=True)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collage", description="Collage: spatially controlled GAN image editing service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the service (embedded S3 when no endpoint is configured)")
    serve.add_argument("--port", type=int, help="HTTP port (default COLLAGE_HTTP_PORT or 8000)")
    serve.add_argument("--families", help="comma-separated families to deploy (default: all)")
    serve.add_argument("--demo", action="store_true", help="run the demo once the service is ready")
    serve.add_argument("--exit-after-demo", action="store_true", help="stop after the demo instead of serving on")
    serve.add_argument("--out", default="demo-out", help="demo output folder")
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="upload sample assets, run every op, write PNGs and an HTML gallery")
    demo.add_argument("--url", help="running service; default: start one locally for the demo")
    demo.add_argument("--out", default="demo-out", help="output folder")
    demo.set_defaults(func=cmd_demo)

    edit = sub.add_parser("edit", help="run one edit through the REST API")
    edit.add_argument("--url", default=DEFAULT_URL)
    edit.add_argument("--model", required=True)
    edit.add_argument("--op", required=True)
    edit.add_argument("--params", default="{}", help="JSON object of op parameters")
    edit.add_argument("--inputs", default="{}", help="JSON object of op inputs")
    edit.add_argument("--seed", type=int, help="shortcut for inputs.seed")
    edit.add_argument("-o", "--output", help="write the result PNG here")
    edit.set_defaults(func=cmd_edit)

    jobs = sub.add_parser("jobs", help="async batch edit jobs").add_subparsers(dest="jobs_command", required=True)
    submit = jobs.add_parser("submit", help="upload a JSON Lines file of edit requests and start a job")
    submit.add_argument("file", help="JSON Lines: one POST /v1/edits body per line")
    submit.add_argument("--url", default=DEFAULT_URL)
    submit.add_argument("--wait", action="store_true", help="show a progress bar until the job finishes (exit 2 unless all succeeded)")
    submit.add_argument("--webhook", help="URL POSTed the signed final status")
    submit.add_argument("--idempotency-key", help="resubmitting with the same key returns the same job")
    submit.set_defaults(func=cmd_jobs_submit)
    fit = jobs.add_parser("fit", help="upload an image and train an InGAN model on it (a fit job); `retarget` serves it after")
    fit.add_argument("image", help="the training image (PNG, JPEG or WebP)")
    fit.add_argument("--url", default=DEFAULT_URL)
    fit.add_argument("--iterations", type=int, default=2000)
    fit.add_argument("--scale-min", type=float, default=0.5, help="smallest output/input ratio per side in training")
    fit.add_argument("--scale-max", type=float, default=2.0, help="largest output/input ratio per side in training")
    fit.add_argument("--size", type=int, default=96, help="the image's longer side in training")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--name", help="model name (default ingan-<asset id prefix>)")
    fit.add_argument("--wait", action="store_true", help="show a progress bar until the model is registered (exit 2 unless it is)")
    fit.set_defaults(func=cmd_jobs_fit)
    for name, func, text in [
        ("status", cmd_jobs_status, "state and counts of a job"),
        ("cancel", cmd_jobs_cancel, "cancel a job"),
        ("results", cmd_jobs_results, "every item as a JSON line (and --out DIR: the PNGs)"),
    ]:
        command = jobs.add_parser(name, help=text)
        command.add_argument("job_id")
        command.add_argument("--url", default=DEFAULT_URL)
        if name == "status":
            command.add_argument("--wait", action="store_true", help="show a progress bar until the job finishes")
        if name == "results":
            command.add_argument("--out", help="folder for the result PNGs")
        command.set_defaults(func=func)

    models = sub.add_parser("models", help="model registry").add_subparsers(dest="models_command", required=True)
    upload = models.add_parser("upload", help="convert and register a checkpoint")
    upload.add_argument(
        "path",
        help="public checkpoint in a --format format (a file or directory; docs/families/ says "
        "which) or a converted directory (with model.json)",
    )
    upload.add_argument("--name", required=True)
    formats = plugin_names(CONVERTERS_GROUP)  # the families' converters
    upload.add_argument(
        "--format", default=DEFAULT_FORMAT if DEFAULT_FORMAT in formats else None, choices=formats, required=DEFAULT_FORMAT not in formats
    )
    upload.add_argument("--classes", help="class names of a conditional model: a file (one per line) or a comma-separated list")
    upload.add_argument("--description", default="")
    upload.set_defaults(func=cmd_models_upload)
    listing = models.add_parser("list", help="list registered models")
    listing.set_defaults(func=cmd_models_list)

    for name in plugin_names(CLI_GROUP):  # families' own commands (e.g. part catalogs of style models)
        load_plugin(CLI_GROUP, name)(sub, say=_say, registry=_registry)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    new_key = keys.add_parser("new", help="mint a bearer token and print it with its COLLAGE_API_KEYS entry (sha256 only)")
    new_key.add_argument("--id", required=True, help="name of the key (owner of what it uploads and runs)")
    new_key.add_argument("--scopes", default="edit,jobs", help="comma-separated: edit, jobs, admin")
    new_key.add_argument("--rate-limit", type=float, default=None, help="requests/s for this key (default: rate_limit_per_s)")
    new_key.set_defaults(func=cmd_keys_new)

    storage = sub.add_parser("storage", help="the S3 bucket").add_subparsers(dest="storage_command", required=True)
    init = storage.add_parser(
        "init",
        help="create the bucket if missing and register the shipped checkpoints (the Helm chart runs this after every install and upgrade)",
    )
    init.add_argument("--no-checkpoints", dest="checkpoints", action="store_false", help="only create the bucket")
    init.set_defaults(func=cmd_storage_init)

    serve_config = sub.add_parser(
        "serve-config",
        help="write the Ray Serve config (serve build format) of the current "
        "COLLAGE_* settings, for `serve deploy` on a Ray cluster; the Helm chart renders the same",
    )
    serve_config.add_argument("--families", help="comma-separated families to deploy (default: all)")
    serve_config.add_argument("-o", "--output", help="write it here instead of stdout")
    serve_config.set_defaults(func=cmd_serve_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
