"""Shared pytest fixtures.

Storage: the tests talk to a real S3 server, SeaweedFS started by :class:`service.s3server.EmbeddedS3`
once per session in a temporary directory. The session fixture points this process's environment
(and so :func:`service.config.get_settings`, boto3, and any Ray worker started later) at it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from service.config import Settings, get_settings
from service.s3server import EmbeddedS3
from service.storage import AssetStore

TEST_BUCKET = "collage-test"

# Variables the S3 session fixture sets or clears; all restored at session end.
_S3_ENV_CLEARED = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "COLLAGE_S3_PREFIX",
)


# ------------------------------------------------------------------------------ storage
@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A real SeaweedFS S3 server for the whole session; os.environ points at it meanwhile."""
    server = EmbeddedS3(tmp_path_factory.mktemp("s3"), stop_timeout=2)
    server.start(timeout=90)
    env = {
        **server.env(),
        "AWS_REGION": server.region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "COLLAGE_S3_BUCKET": TEST_BUCKET,
    }
    saved = {name: os.environ.get(name) for name in (*env, *_S3_ENV_CLEARED)}
    for name in _S3_ENV_CLEARED:
        os.environ.pop(name, None)
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        AssetStore(get_settings()).ensure_bucket()
        yield server
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        get_settings.cache_clear()
        server.stop()


@pytest.fixture
def store(s3_server: EmbeddedS3) -> AssetStore:
    """An AssetStore on the test bucket with a prefix of its own (``t-<uuid>/``), so tests never collide."""
    settings = Settings(
        s3_endpoint_url=s3_server.endpoint_url,
        s3_bucket=TEST_BUCKET,
        s3_prefix=f"t-{uuid.uuid4().hex}/",
    )
    asset_store = AssetStore(settings)
    asset_store.ensure_bucket()
    return asset_store
