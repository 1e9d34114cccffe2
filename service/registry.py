"""Model registry: checkpoints in S3 under ``models/<name>/`` with a ``model.json`` manifest.

Writes put the weights first and the manifest last, so a model is listed only once complete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from schemas.models import ModelManifest
from service.auth import AccessIndex
from service.errors import IntegrityError, NotFound, Unprocessable
from service.families import get_op, model_attachments
from service.storage import AssetStore

MANIFEST = "model.json"
WEIGHTS = "weights.safetensors"
EXAMPLES_DIR = "examples"  # example input images shipped with a checkpoint, stored as assets at registration
BROKEN = "broken.json"  # written by a family replica whose load of these weights failed; merged as "broken"

# safetensors dtypes and their sizes in bytes (the format's own table)
_SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_SAFETENSORS_MAX_HEADER = 100 << 20  # the reference implementation's limit


def safetensors_problem(data: bytes) -> str | None:
    """Why ``data`` is not a well-formed safetensors file (None: it is). Reads the header only: an
    8-byte little-endian length, a JSON object of tensors (dtype, shape, data_offsets) whose byte
    ranges tile the rest of the file exactly."""
    if len(data) < 8:
        return f"{len(data)} bytes is too short for a safetensors file"
    length = int.from_bytes(data[:8], "little")
    if not 2 <= length <= min(_SAFETENSORS_MAX_HEADER, len(data) - 8):
        return f"its header length field ({length}) does not fit the file (a pickle or another format?)"
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    ranges = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in _SAFETENSORS_DTYPES:
            return f"tensor {name!r} has no known dtype"
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            return f"tensor {name!r} has no valid shape"
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"tensor {name!r} has no valid data_offsets"
        size = _SAFETENSORS_DTYPES[entry["dtype"]]
        for dim in shape:
            size *= dim
        if offsets[1] - offsets[0] != size:
            return f"tensor {name!r} of shape {shape} needs {size} bytes, its data_offsets give {offsets[1] - offsets[0]}"
        ranges.append(offsets)
    position = 0
    for start, end in sorted(ranges):
        if start != position:
            return "its tensors' byte ranges overlap or leave gaps"
        position = end
    if position != len(data) - 8 - length:
        return f"its tensors hold {position} bytes, the file {len(data) - 8 - length}"
    return None


class ModelRegistry:
    def __init__(self, store: AssetStore, cache_ttl_s: float = 5.0) -> None:
        self.store = store
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    # ---- reading -----------------------------------------------------------------------
    def get_manifest(self, name: str) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
            if hit and now - hit[0] < self.cache_ttl_s:
                return hit[1]
        try:
            raw = self.store.get(self.store.model_key(name, MANIFEST))
        except NotFound:
            raise NotFound(f"model {name!r} is not registered; GET /v1/models lists the available ones") from None
        manifest = json.loads(raw)
        broken = self._read_json(self.store.model_key(name, BROKEN))
        if broken is not None and broken.get("weights_sha256") == manifest.get("weights_sha256"):
            manifest["broken"] = broken["reason"]  # these very weights failed to load: no edit dispatched to them
        for attachment in model_attachments(manifest.get("family")).values():
            meta = self._read_json(self.store.model_key(name, attachment.meta_file))
            # An attachment describes one set of weights; after re-registration it is stale until rebuilt.
            if meta is not None and meta.get("weights_sha256") == manifest.get("weights_sha256"):
                manifest[attachment.name] = meta
        with self._lock:
            self._cache[name] = (now, manifest)
        return manifest

    def cached_family(self, name: str) -> str | None:
        """The family of ``name`` if its manifest is in this process's cache, fresh or not (no I/O)."""
        hit = self._cache.get(name)
        return hit[1].get("family") if hit else None

    def invalidate(self, name: str) -> None:
        """Forget the cached manifest of ``name`` (after this process learns it changed)."""
        with self._lock:
            self._cache.pop(name, None)

    def list_manifests(self) -> list[dict[str, Any]]:
        names = sorted({key.split("/")[1] for key in self.store.list_keys("models/") if key.endswith("/" + MANIFEST)})
        manifests = []
        for name in names:
            try:
                manifests.append(self.get_manifest(name))
            except NotFound:  # deleted between list and get
                continue
        return manifests

    def load_weights(self, name: str, filename: str = WEIGHTS) -> bytes:
        """Weight bytes, checked against the manifest's sha256 so a corrupted object never loads."""
        manifest = self.get_manifest(name)
        data = self.store.get(self.store.model_key(name, filename))
        if filename != WEIGHTS:
            return data
        expected = manifest.get("weights_sha256")
        if not expected:  # register() always records it: a manifest without one was not written by this service
            raise IntegrityError(f"model {name!r} has no weights_sha256 in its manifest; register it again", subject="checkpoint")
        if hashlib.sha256(data).hexdigest() != expected:
            raise IntegrityError(f"weights of model {name!r} do not match the sha256 in its manifest", subject="checkpoint")
        return data

    def _read_json(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.store.get(key))
        except NotFound:
            return None

    def mark_broken(self, name: str, weights_sha256: str | None, reason: str) -> None:
        """Record that ``name``'s weights (of that sha256) do not load; registering weights again supersedes it."""
        body = {
            "weights_sha256": weights_sha256,
            "reason": reason[:500],
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.store.put(self.store.model_key(name, BROKEN), json.dumps(body).encode(), content_type="application/json")
        self.invalidate(name)

    def _attachment(self, name: str, attachment: str) -> tuple[dict[str, Any], Any]:
        """(manifest, ``ModelAttachment``) of a model and one attachment its family declares; 404 otherwise."""
        manifest = self.get_manifest(name)  # 404 for an unknown model
        declared = model_attachments(manifest.get("family")).get(attachment)
        if declared is None:
            raise NotFound(f"model {name!r} (family {manifest.get('family')!r}) has no attachment {attachment!r}")
        return manifest, declared

    def load_attachment(self, name: str, attachment: str) -> tuple[bytes, dict[str, Any]]:
        """(tensor bytes, metadata) of a model's attachment, the bytes checked against the metadata's sha256."""
        manifest, declared = self._attachment(name, attachment)
        # the stored metadata, not the cached manifest: a rebuilt attachment must match its own sha256
        meta = self._read_json(self.store.model_key(name, declared.meta_file))
        if meta is None or meta.get("weights_sha256") != manifest.get("weights_sha256"):
            raise NotFound(f"model {name!r} has no {declared.title}; {declared.how_to_build}")
        data = self.store.get(self.store.model_key(name, declared.data_file))
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            raise IntegrityError(
                f"{declared.title} of model {name!r} does not match the sha256 in its {declared.meta_file}", subject="checkpoint"
            )
        return data, meta

    # ---- writing -----------------------------------------------------------------------
    def put_attachment(self, name: str, attachment: str, data: bytes, meta: dict[str, Any]) -> dict[str, Any]:
        """Store an attachment next to the model, for its current weights: tensors first, then the JSON that makes it visible."""
        manifest, declared = self._attachment(name, attachment)
        meta = {**meta, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "weights_sha256": manifest.get("weights_sha256")}
        meta.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        self.store.put(self.store.model_key(name, declared.data_file), data, content_type="application/octet-stream")
        self._write_meta(name, declared.meta_file, meta)
        return meta

    def edit_attachment(self, name: str, attachment: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Replace an attachment's metadata with ``change(metadata)`` (a ValueError of it is a 422); the tensors stay."""
        manifest, declared = self._attachment(name, attachment)
        meta = manifest.get(declared.name)
        if meta is None:
            raise NotFound(f"model {name!r} has no {declared.title} to edit; {declared.how_to_build}")
        try:
            meta = change(meta)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        self._write_meta(name, declared.meta_file, meta)
        return meta

    def _write_meta(self, name: str, filename: str, meta: dict[str, Any]) -> None:
        body = json.dumps(meta, indent=2, sort_keys=True).encode()
        self.store.put(self.store.model_key(name, filename), body, content_type="application/json")
        with self._lock:
            self._cache.pop(name, None)

    def register(self, manifest: dict[str, Any], weights: bytes, extra_files: dict[str, bytes] | None = None) -> dict[str, Any]:
        manifest = dict(manifest)
        manifest["weights_sha256"] = hashlib.sha256(weights).hexdigest()
        manifest["weights_bytes"] = len(weights)
        manifest.setdefault("registered_at", dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        try:
            checked = ModelManifest.model_validate(manifest)
        except ValueError as exc:
            raise Unprocessable(f"model manifest is invalid: {exc}") from None
        for op, defaults in checked.param_defaults.items():  # a bad default would fail every request that relies on it
            spec = get_op(checked.family, op)
            if spec is None or op not in checked.ops:
                raise Unprocessable(f"model manifest is invalid: param_defaults names op {op!r}, which the model does not serve")
            try:  # params models forbid unknown fields, so a misspelt default is refused here too
                spec.params_model.model_validate(defaults)
            except ValueError as exc:
                raise Unprocessable(f"model manifest is invalid: param_defaults.{op}: {exc}") from None
        name = checked.name
        problem = safetensors_problem(weights)
        if problem:
            raise Unprocessable(f"model {name!r}: {WEIGHTS} is not a safetensors file: {problem}")
        self.store.put(self.store.model_key(name, WEIGHTS), weights, content_type="application/octet-stream")
        for filename, data in (extra_files or {}).items():
            self.store.put(self.store.model_key(name, filename), data)
        self.store.put(
            self.store.model_key(name, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True).encode(), content_type="application/json"
        )
        self.store.delete(self.store.model_key(name, BROKEN))  # whatever failed before, these weights get their own try
        with self._lock:
            self._cache.pop(name, None)
        return manifest

    def register_dir(self, directory: Path, name: str | None = None) -> dict[str, Any]:
        """Register a converted checkpoint directory (model.json + weights.safetensors [+ extras])."""
        manifest = json.loads((directory / MANIFEST).read_text())
        if name:
            manifest["name"] = name
        extras = {
            p.name: p.read_bytes()
            for p in sorted(directory.iterdir())
            if p.is_file() and p.name not in (MANIFEST, WEIGHTS) and p.suffix in (".safetensors", ".json", ".md")
        }
        for example in sorted((directory / EXAMPLES_DIR).glob("*.png")):
            self.store_example_asset(example.read_bytes())
        return self.register(manifest, (directory / WEIGHTS).read_bytes(), extras)

    def store_example_asset(self, png: bytes) -> str:
        """Store an image that ships with a checkpoint (``examples/*.png``) as a content-addressed asset,
        as an upload of it would, so the model's example inputs can be named by asset id."""
        from PIL import Image

        with Image.open(io.BytesIO(png)) as image:
            asset_id = self.store.put_png_asset(png, image.width, image.height, image.mode)
        AccessIndex(self.store).grant_public(asset_id)  # every key may name the model's examples
        return asset_id

    def sync_dir(self, checkpoints_dir: Path) -> list[str]:
        """Register every shipped checkpoint whose weights or manifest fields differ from what the store holds."""
        registered = []
        for directory in sorted(p for p in checkpoints_dir.iterdir() if (p / MANIFEST).is_file()):
            manifest = json.loads((directory / MANIFEST).read_text())
            sha = hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()
            try:
                current = self.get_manifest(manifest["name"])
            except NotFound:
                current = {}
            stale = current.get("weights_sha256") != sha or any(current.get(k) != v for k, v in manifest.items())
            if stale:
                self.register_dir(directory)
                registered.append(manifest["name"])
            else:
                # A shipped attachment fills a gap only: one built or edited in the store wins.
                shipped = [a for a in model_attachments(manifest.get("family")).values() if a.name not in current]
                shipped = [a for a in shipped if (directory / a.meta_file).is_file()]
                for attachment in shipped:
                    data = (directory / attachment.data_file).read_bytes()
                    self.store.put(self.store.model_key(manifest["name"], attachment.data_file), data)
                    self._write_meta(manifest["name"], attachment.meta_file, json.loads((directory / attachment.meta_file).read_text()))
                if shipped:
                    registered.append(manifest["name"])
        return registered
