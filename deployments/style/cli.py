"""The style family's commands of the ``collage`` CLI: ``collage catalog build`` and ``collage catalog label``.

Registered as the ``catalog`` entry point of the ``collage.cli`` group (pyproject.toml); the CLI
(service/tools/cli.py) calls :func:`add_commands` with its subparsers, its ``say`` and its
``registry`` (a context manager yielding the model registry on the configured S3). Torch is
imported only when a command runs.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any, Callable, ContextManager

from schemas.style import CATALOG, relabel

Say = Callable[[str], None]
Registry = Callable[[], ContextManager[Any]]


def _catalog_from_weights(weights: bytes, manifest: dict, args: argparse.Namespace, say: Say) -> tuple[bytes, dict]:
    from deployments.style.catalog import build_catalog
    from deployments.style.checkpoint import load_generator

    generator, latent_avg = load_generator(weights, manifest["arch"])
    say(f"building a {args.k}-part catalog of {manifest['name']} from {args.samples} samples (seed {args.seed}) …")
    catalog = build_catalog(
        generator,
        k=args.k,
        n_samples=args.samples,
        seed=args.seed,
        cluster_layer=args.layer,
        truncation=args.truncation,
        mean_w=latent_avg,
        iterations=args.iterations,
    )
    if args.labels:
        labels = args.labels.split(",")
        if len(labels) != args.k:
            raise SystemExit(f"--labels names {len(labels)} clusters but --k is {args.k}")
        catalog.labels = labels
    return catalog.to_bytes(), catalog.meta(generator.style_layers)


def _parse_labels(pairs: list[str]) -> dict[int, str]:
    import re

    from schemas.style import LABEL_PATTERN

    labels = {}
    for pair in pairs:
        index, sep, label = pair.partition("=")
        if not sep or not index.isdigit() or not re.fullmatch(LABEL_PATTERN, label):
            raise SystemExit(f"labels are INDEX=NAME with NAME matching {LABEL_PATTERN}, e.g. 3=eyes; got {pair!r}")
        labels[int(index)] = label
    return labels


def cmd_catalog_build(args: argparse.Namespace, say: Say, registry: Registry) -> int:
    """Offline catalog build: into a checkpoint directory (--dir) or the registry (S3)."""
    if args.dir:
        import hashlib

        from deployments.style.catalog import save_meta

        directory = Path(args.dir)
        manifest = json.loads((directory / "model.json").read_text())
        weights = (directory / "weights.safetensors").read_bytes()
        data, meta = _catalog_from_weights(weights, manifest, args, say)
        meta.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), weights_sha256=hashlib.sha256(weights).hexdigest())
        (directory / "catalog.safetensors").write_bytes(data)
        (directory / "catalog.json").write_bytes(save_meta(meta))
        say(f"wrote {directory}/catalog.safetensors and catalog.json (labels {meta['labels']})")
        return 0
    with registry() as store:
        manifest = store.get_manifest(args.model)
        data, meta = _catalog_from_weights(store.load_weights(args.model), manifest, args, say)
        meta = store.put_attachment(args.model, CATALOG, data, meta)
    say(f"stored the catalog of {args.model} (sha256 {meta['sha256'][:12]}…, labels {meta['labels']})")
    return 0


def cmd_catalog_label(args: argparse.Namespace, say: Say, registry: Registry) -> int:
    labels = _parse_labels(args.labels)
    if args.dir:
        from deployments.style.catalog import save_meta

        path = Path(args.dir) / "catalog.json"
        meta = json.loads(path.read_text())
        try:
            meta["labels"] = relabel(meta["labels"], labels)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        path.write_bytes(save_meta(meta))
    else:
        with registry() as store:
            meta = store.edit_attachment(args.model, CATALOG, lambda current: {**current, "labels": relabel(current["labels"], labels)})
    say(f"labels: {dict(enumerate(meta['labels']))}")
    return 0


def add_commands(sub: Any, *, say: Say, registry: Registry) -> None:
    """Add ``catalog build`` and ``catalog label`` to the CLI's subparsers."""
    catalog = sub.add_parser("catalog", help="part catalogs of style models (Editing in Style)").add_subparsers(
        dest="catalog_command", required=True
    )
    build = catalog.add_parser("build", help="cluster a model's activations into parts and store the catalog")
    build.add_argument("model", help="registered model name (ignored with --dir)")
    build.add_argument("--dir", help="build into this checkpoint directory instead of the registry")
    build.add_argument("--k", type=int, default=8, help="number of parts")
    build.add_argument("--samples", type=int, default=200, help="generated samples to cluster")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--layer", default=None, help="style layer to cluster (default: plain conv at half resolution)")
    build.add_argument("--truncation", type=float, default=1.0)
    build.add_argument("--iterations", type=int, default=50, help="k-means iterations at most")
    build.add_argument("--labels", default=None, help="comma-separated names of the k clusters")
    build.set_defaults(func=functools.partial(cmd_catalog_build, say=say, registry=registry))
    label = catalog.add_parser("label", help="name clusters, e.g. `collage catalog label MODEL 3=eyes 5=mouth`")
    label.add_argument("model")
    label.add_argument("labels", nargs="+", help="INDEX=NAME pairs")
    label.add_argument("--dir", help="edit this checkpoint directory's catalog.json instead of the registry")
    label.set_defaults(func=functools.partial(cmd_catalog_label, say=say, registry=registry))
