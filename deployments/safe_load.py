"""Reading public torch checkpoints without running their pickles.

``torch.save`` files are pickles, and unpickling runs whatever callables the file names. Every
converter reads them through :func:`load_torch_checkpoint`: ``torch.load(weights_only=True)``
rebuilds tensors and plain containers only (plus the extra classes a format needs, passed as
``allowed``), and a file naming anything else is refused with a :class:`ValueError` that says why,
before any of its code runs. Plain pickles of NVlabs networks are read by :func:`load_restricted_pickle`
(an allow-list unpickler, at the end of this module). The project's own format is safetensors, which
holds no code at all.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch

REFUSED_PICKLE = (
    "refused to load the checkpoint: it contains pickled objects other than tensors and plain "
    "containers, which are never unpickled (torch.load weights_only=True)"
)
_UNSUPPORTED_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)")  # both of torch's wordings


def load_torch_checkpoint(source: str | os.PathLike | bytes, allowed: Iterable[type] = ()) -> Any:
    """The object ``torch.save`` wrote to ``source`` (a path or the file's bytes), rebuilt with
    ``weights_only=True``. Raises ValueError for a file holding other pickled objects or no checkpoint."""
    where = source if not isinstance(source, (bytes, bytearray)) else "checkpoint bytes"
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _UNSUPPORTED_GLOBAL.search(str(exc))
        if refused:
            raise ValueError(f"{REFUSED_PICKLE}: {where} names {refused.group(1)}") from None
        raise ValueError(f"{where} is not a readable torch checkpoint (the unpickler stopped at an unsupported opcode)") from None
    except (RuntimeError, EOFError) as exc:
        raise ValueError(f"{where} is not a readable torch checkpoint: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Plain pickles of NVlabs networks (stylegan2-ada-pytorch / stylegan3 network-snapshot-*.pkl)
# ---------------------------------------------------------------------------------------------
#
# Those files are ``pickle.dump`` of a dict whose networks are ``torch_utils.persistence`` classes:
# each is pickled as a call ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where meta
# holds the class's module SOURCE CODE (which NVlabs' own loader execs) and the module's __dict__
# (``state``: ``_parameters``/``_buffers``/``_modules`` plus hyperparameters). Tensors inside use
# torch's reducers, each storage a legacy ``torch.save`` blob passed to ``torch.storage._load_from_bytes``.
#
# :func:`load_restricted_pickle` reads them with an unpickler that resolves only the names in
# ``RESTRICTED_PICKLE_GLOBALS``, each to a function of this module that rebuilds data and nothing else.
# ``_reconstruct_persistent_obj`` becomes a :class:`PersistentRecord` (class name + state); the source
# code is dropped unread. Any other global (os.system, builtins.eval, a class, ...) stops the load with
# a ValueError naming it before anything is called.


@dataclass(frozen=True, slots=True)
class PersistentRecord:
    """What a ``torch_utils.persistence`` object is rebuilt as: its class name and its ``__dict__``.

    ``state`` maps attribute names to the rebuilt values: ``_parameters`` / ``_buffers`` dicts of
    tensors, ``_modules`` a dict of further records, hyperparameters as plain values. Frozen with
    slots, so a pickle cannot set attributes on it (BUILD fails).
    """

    class_name: str
    state: dict[str, Any]

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.state.get("_parameters") or {})

    @property
    def buffers(self) -> dict[str, Any]:
        return dict(self.state.get("_buffers") or {})

    @property
    def modules(self) -> dict[str, Any]:
        return dict(self.state.get("_modules") or {})

    def tensors(self) -> dict[str, Any]:
        """Parameters and buffers of this record alone (not of its submodules), None entries dropped."""
        return {k: v for k, v in {**self.parameters, **self.buffers}.items() if v is not None}


_PERSISTENCE_VERSIONS = (6,)  # torch_utils.persistence._version of every stylegan2-ada / stylegan3 release


def _persistent_record(meta: Any) -> PersistentRecord:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: a record, never the class.

    ``meta["module_src"]`` (the pickled source code) is neither run, parsed nor kept.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"persistent object: expected a meta dict, got {type(meta).__name__}")
    if meta.get("type") != "class":
        raise ValueError(f"persistent object of type {meta.get('type')!r}: only 'class' objects are known")
    if meta.get("version") not in _PERSISTENCE_VERSIONS:
        raise ValueError(f"torch_utils.persistence version {meta.get('version')!r}; known: {_PERSISTENCE_VERSIONS}")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise ValueError(f"persistent object: class_name must be an identifier, got {class_name!r}")
    if not isinstance(state, dict):
        raise ValueError(f"persistent object {class_name}: state must be a dict, got {type(state).__name__}")
    return PersistentRecord(class_name, dict(state))


def _no_hooks(hooks: Any, what: str) -> None:
    if hooks:  # an empty OrderedDict in every file torch writes; anything else would be callables
        raise ValueError(f"refused to unpickle a {what} with backward hooks")


def _rebuild_tensor(
    storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False, backward_hooks: Any = None, metadata: Any = None
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` with its arguments checked to be a storage and ints."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise ValueError(f"tensor: expected a storage, got {type(storage).__name__}")
    ints = (storage_offset, *tuple(size), *tuple(stride))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or len(size) != len(stride):
        raise ValueError(f"tensor: bad geometry offset={storage_offset!r} size={size!r} stride={stride!r}")
    _no_hooks(backward_hooks, "tensor")
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"tensor: metadata must be a dict, got {type(metadata).__name__}")
    return torch._utils._rebuild_tensor_v2(
        storage, storage_offset, tuple(size), tuple(stride), bool(requires_grad), OrderedDict(), metadata
    )


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_parameter[_with_state]``: the parameter's data as a plain tensor."""
    if not isinstance(data, torch.Tensor):
        raise ValueError(f"parameter: expected a tensor, got {type(data).__name__}")
    _no_hooks(backward_hooks, "parameter")
    if state:
        raise ValueError("refused to unpickle a parameter with extra Python state")
    return data


def _storage_from_bytes(blob: Any) -> torch.storage.TypedStorage:
    """``torch.storage._load_from_bytes``: a legacy torch.save blob, read with weights_only=True."""
    if not isinstance(blob, (bytes, bytearray)):
        raise ValueError(f"storage: expected bytes, got {type(blob).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation notices, once per tensor
        storage = load_torch_checkpoint(bytes(blob))
    if not isinstance(storage, torch.storage.TypedStorage):
        raise ValueError(f"storage bytes hold a {type(storage).__name__}, not a storage")
    return storage


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype(spec, align, copy)`` for a type string (e.g. 'f8'); object dtypes refused."""
    if not isinstance(spec, str):
        raise ValueError(f"numpy dtype: expected a type string, got {type(spec).__name__}")
    dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dtype.hasobject:
        raise ValueError(f"refused to unpickle a numpy object dtype ({spec!r})")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar``: a numpy scalar from its dtype and raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise ValueError("numpy scalar: expected a non-object dtype and its raw bytes")
    return np.frombuffer(data, dtype=dtype)[0].copy()


class _NumpyArray(np.ndarray):
    """What ``numpy.core.multiarray._reconstruct`` yields; its BUILD state is checked to be plain
    numeric data. Turned back into a plain ndarray when the load ends (:func:`_plain`)."""

    def __setstate__(self, state: Any) -> None:
        dtype = state[-3] if isinstance(state, tuple) and len(state) in (4, 5) else None
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(state[-1], (bytes, bytearray)):
            raise ValueError("refused to unpickle a numpy array that is not plain numeric data")
        super().__setstate__(state)


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')``: an empty array that BUILD fills."""
    if subtype is not np.ndarray:
        raise ValueError(f"numpy array: only numpy.ndarray is rebuilt, got {subtype!r}")
    return np.ndarray.__new__(_NumpyArray, (0,), np.uint8)


def _numpy_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (how protocol 5 pickles arrays): a copy of numeric data."""
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise ValueError("refused to unpickle a numpy array that is not plain numeric data")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in tuple(shape)) or order not in ("C", "F", "K"):
        raise ValueError(f"numpy array: bad shape {shape!r} or order {order!r}")
    array = np.frombuffer(bytes(buf), dtype=dtype)
    if order == "K" and axis_order is not None:
        return array.reshape(tuple(shape), order="C").transpose(tuple(axis_order)).copy()
    return array.reshape(tuple(shape), order="C" if order == "K" else order).copy()


# (module, name) -> what it resolves to. Nothing here runs code named by the file or imports a module.
RESTRICTED_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,  # only ever passed to _reconstruct, which checks it
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,  # numpy < 2 spelling
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
}

_HINTS = {"dnnlib.tflib": "this is a TensorFlow StyleGAN pickle; convert it to a PyTorch pickle with NVlabs' legacy.py first"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ``RESTRICTED_PICKLE_GLOBALS`` and no persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        found = RESTRICTED_PICKLE_GLOBALS.get((module, name))
        if found is None:
            hint = next((h for prefix, h in _HINTS.items() if module == prefix or module.startswith(prefix + ".")), None)
            raise ValueError(
                f"refused to unpickle: the file names the global {module}.{name}, which is not a tensor, "
                f"plain container or network record (nothing in the file was run)" + (f"; {hint}" if hint else "")
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError(
            f"refused to unpickle: persistent id {str(pid)[:80]!r} (a plain pickle has none; "
            "a torch.save file is read by the format's .pt converter)"
        )


def _plain(obj: Any) -> Any:
    """The loaded structure with rebuilt numpy arrays as plain ndarrays (recursively, in place)."""
    if isinstance(obj, _NumpyArray):
        return obj.view(np.ndarray)
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _plain(value)
    elif isinstance(obj, list):
        obj[:] = [_plain(v) for v in obj]
    elif isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    elif isinstance(obj, PersistentRecord):
        _plain(obj.state)
    return obj


def load_restricted_pickle(source: str | os.PathLike | bytes) -> Any:
    """The object a plain pickle holds (path or bytes), rebuilt by :class:`RestrictedUnpickler`.

    Raises ValueError naming the refused global for a file that names anything outside the
    allow-list, and ValueError for a file that is not a pickle.
    """
    where = "pickle bytes" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            return _plain(RestrictedUnpickler(io.BytesIO(source)).load())
        with open(source, "rb") as f:
            return _plain(RestrictedUnpickler(f).load())
    except ValueError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"{where} is not a readable pickle of NVlabs networks: {type(exc).__name__}: {exc}") from None
