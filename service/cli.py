"""The ``collage`` command: serve, demo, edit, models."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


def _say(message: str) -> None:
    print(message, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from service.runtime import LocalService

    if args.port is not None:
        os.environ["COLLAGE_HTTP_PORT"] = str(args.port)
    service = LocalService()
    _say("starting Collage: storage, Ray, Serve app (first start takes a minute) …")
    service.start()
    _say(f"Collage is ready at {service.url}  (API docs: {service.url}/docs, metrics: {service.url}/metrics)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.demo:
            from service.demo import run_demo

            run_demo(service.url, Path(args.out), say=_say)
        if not args.exit_after_demo:
            _say("serving; press Ctrl-C to stop")
            stop.wait()
    finally:
        _say("stopping …")
        service.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from service.demo import run_demo

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
    with httpx.Client(base_url=args.url, timeout=300) as client:
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


def cmd_models_upload(args: argparse.Namespace) -> int:
    from deployments.style.checkpoint import convert_rosinality

    source = Path(args.path)
    with _registry() as registry, tempfile.TemporaryDirectory() as tmp:
        if source.is_dir():
            manifest = registry.register_dir(source, name=args.name)
        elif args.format == "rosinality-stylegan2":
            convert_rosinality(source, Path(tmp), args.name, description=args.description)
            manifest = registry.register_dir(Path(tmp), name=args.name)
        else:
            print(f"unknown --format {args.format!r}", file=sys.stderr)
            return 2
    _say(f"registered {manifest['name']} ({manifest['family']}, {manifest['weights_bytes']} bytes, sha256 {manifest['weights_sha256'][:12]}…)")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    with _registry() as registry:
        for manifest in registry.list_manifests():
            flag = " [random-init]" if manifest.get("random_init") else ""
            _say(f"{manifest['name']:32s} {manifest['family']:8s} res={manifest.get('resolution')} ops={','.join(manifest['ops'])}{flag}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collage", description="Collage: spatially controlled GAN image editing service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the service (embedded S3 when no endpoint is configured)")
    serve.add_argument("--port", type=int, help="HTTP port (default COLLAGE_HTTP_PORT or 8000)")
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

    models = sub.add_parser("models", help="model registry").add_subparsers(dest="models_command", required=True)
    upload = models.add_parser("upload", help="convert and register a checkpoint")
    upload.add_argument("path", help="public checkpoint file (e.g. rosinality .pt) or a converted directory")
    upload.add_argument("--name", required=True)
    upload.add_argument("--format", default="rosinality-stylegan2", choices=["rosinality-stylegan2"])
    upload.add_argument("--description", default="")
    upload.set_defaults(func=cmd_models_upload)
    listing = models.add_parser("list", help="list registered models")
    listing.set_defaults(func=cmd_models_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
