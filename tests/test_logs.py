"""service.logs: JSON lines with the request id, and one level for every collage logger of a process."""

from __future__ import annotations

import io
import json
import logging

import pytest

from service import logs
from service.config import Settings


@pytest.fixture
def restored_level():
    yield
    logs.set_level("INFO")


def test_a_line_is_one_json_object_with_the_request_id_and_the_extras():
    logger = logs.get_logger("collage.test-lines")
    stream = io.StringIO()
    logger.handlers[0].setStream(stream)
    token = logs.request_id_var.set("req-1")
    try:
        logger.info("request", extra={"route": "/v1/edits", "status": 200})
    finally:
        logs.request_id_var.reset(token)
    entry = json.loads(stream.getvalue())
    assert entry["msg"] == "request" and entry["request_id"] == "req-1" and (entry["route"], entry["status"]) == ("/v1/edits", 200)


def test_the_settings_level_reaches_every_collage_logger_made_before_and_after(restored_level):
    before = logs.get_logger("collage.test-before")
    logs.set_level(Settings(log_level="WARNING").log_level)
    after = logs.get_logger("collage.test-after")
    assert before.level == after.level == logging.WARNING
    assert not before.isEnabledFor(logging.INFO), "the ingress's line per request is an INFO line: dropped"
    assert logging.getLogger("someone.else").level != logging.WARNING, "only collage's loggers"
    assert logs.get_logger("collage.test-explicit", "DEBUG").level == logging.DEBUG


def test_an_unknown_level_is_refused_with_the_settings():
    with pytest.raises(ValueError):
        Settings(log_level="LOUD")
