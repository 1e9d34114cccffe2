"""Reading public torch checkpoints without running their pickles.

``torch.save`` files are pickles, and unpickling runs whatever callables the file names. Every
converter reads them through :func:`load_torch_checkpoint`: ``torch.load(weights_only=True)``
rebuilds tensors and plain containers only (plus the extra classes a format needs, passed as
``allowed``), and a file naming anything else is refused with a :class:`ValueError` that says why,
before any of its code runs. The project's own format is safetensors, which holds no code at all.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from typing import Any, Iterable

import torch

REFUSED_PICKLE = ("refused to load the checkpoint: it contains pickled objects other than tensors and plain "
                  "containers, which are never unpickled (torch.load weights_only=True)")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


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
