"""Structured JSON logs, one object per line, carrying the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import time

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("collage_request_id", default=None)

_STD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_level = "INFO"  # of every collage logger of this process (set_level: the settings' log_level)


def get_logger(name: str, level: str | None = None) -> logging.Logger:
    """A logger writing JSON lines to stderr at ``level`` (None: the process's, :func:`set_level`);
    idempotent, so replicas can call it on every start."""
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level or _level)
    return logger


def set_level(level: str) -> None:
    """The level of every collage logger of this process, made and to be made (``log_level``: WARNING
    drops the ingress's line per request)."""
    global _level
    _level = level
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("collage.") and isinstance(logger, logging.Logger):
            logger.setLevel(level)
