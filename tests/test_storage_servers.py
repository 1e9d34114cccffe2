"""AssetStore's behaviour against a second real S3 server, rclone's ``serve s3`` (tests/rclone_s3.py), in both
addressing styles and through both request paths: boto3 alone (``s3_fast_path=false``) and the signed fast
path for HEAD and PUT (service/s3_fast.py).

The path-style server is given by address with ``s3_addressing_style`` unset, so it also checks the default
for an endpoint given by URL (path). The virtual-hosted one serves only ``bucket.localhost:PORT`` (rclone
reads the bucket from the Host header there), so any request that went out path-style would miss the
bucket: every passing call proves the style. Where rclone lacks what SeaweedFS and AWS have (write
conditions, server-side checksum verification; tests/rclone_s3.py lists them), the test says so in its
name and checks what Collage does there instead.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest

from service.config import Settings, patched_environ
from service.errors import IntegrityError, NotFound
from service.job_lease import conditional_writes_work
from service.storage import AssetStore
from tests.rclone_s3 import RcloneS3, localhost_subdomains_resolve

pytestmark = pytest.mark.server  # starts servers of its own: not one of the numeric reruns

BUCKET = "collage-test"
_CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "COLLAGE_S3_PREFIX")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def rclone_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RcloneS3]]:
    servers = {"path": RcloneS3(tmp_path_factory.mktemp("rclone-path"), path_style=True)}
    servers["virtual"] = RcloneS3(tmp_path_factory.mktemp("rclone-virtual"), path_style=False)
    try:
        with localhost_subdomains_resolve():
            for server in servers.values():
                server.start()
            yield servers
    finally:
        for server in servers.values():
            server.stop()


def _settings(server: RcloneS3, style: str, fast: bool, prefix: str) -> Settings:
    return Settings(
        s3_endpoint_url=server.endpoint_url,
        s3_bucket=BUCKET,
        s3_prefix=prefix,
        s3_region=server.region,
        # unset for the path-style server: what an endpoint given by URL gets by default
        s3_addressing_style=None if style == "path" else "virtual",
        s3_fast_path=fast,
        s3_max_attempts=1,
    )


@pytest.fixture(params=["path-boto3", "path-fast", "virtual-boto3", "virtual-fast"])
def store(request: pytest.FixtureRequest, rclone_servers: dict[str, RcloneS3]) -> Iterator[AssetStore]:
    """An AssetStore on one rclone server with a prefix of its own; the environment holds that server's keys
    while the test runs (the fast path resolves credentials on its first request)."""
    style, path = request.param.split("-")
    server = rclone_servers[style]
    env = {**server.env(), "AWS_EC2_METADATA_DISABLED": "true"}
    with patched_environ(env, _CLEARED):
        asset_store = AssetStore(_settings(server, style, path == "fast", f"t-{uuid.uuid4().hex}/"))
        asset_store.ensure_bucket()
        yield asset_store


@pytest.fixture
def server_of(rclone_servers: dict[str, RcloneS3]):
    return lambda store: rclone_servers["path" if store.addressing_style == "auto" else store.addressing_style]


def test_requests_use_the_configured_addressing_style(store: AssetStore, server_of) -> None:
    server = server_of(store)
    url = httpx.URL(store.presign_get(store.key("x"), expires_s=60))
    if store.addressing_style == "virtual":
        assert (url.host, url.path) == (f"{BUCKET}.localhost", f"/{store.prefix}x")
    else:  # unset for an endpoint given by URL: path style, as botocore and Collage always did
        assert store.addressing_style == "auto" and store.client.meta.config.s3 == {"addressing_style": "auto"}
        assert (url.host, url.path) == ("127.0.0.1", f"/{BUCKET}/{store.prefix}x")
    if store.settings.s3_fast_path:
        expected = (
            (f"{BUCKET}.localhost:{server.port}", "") if store.addressing_style == "virtual" else (f"127.0.0.1:{server.port}", f"/{BUCKET}")
        )
        assert (store._fast.host_header, store._fast.base_path) == expected
    else:
        assert store._fast is None


def test_put_get_head_round_trip(store: AssetStore) -> None:
    data = b"\x89PNG fake image bytes" * 40 + uuid.uuid4().bytes
    key = store.asset_key(sha(data))
    with _FastAnswers(store) as fast:
        assert store.put(key, data, content_type="image/png", metadata={"width": "64", "source": "upload"}) == sha(data)
        info = store.head(key)
    assert fast.answers == ([200, 200] if store._fast else [])  # the fast path answered both itself
    assert store.get(key, verify=True) == data
    assert info is not None and info["size"] == len(data) and info["content_type"] == "image/png"
    assert info["metadata"] == {"width": "64", "source": "upload", "sha256": sha(data)}
    assert info["etag"] == hashlib.md5(data).hexdigest()  # rclone's ETag is the MD5, as S3's for a single PUT
    # rclone takes x-amz-checksum-sha256 (no NotImplemented, so no fallback), keeps it and answers it
    assert store.checksums_supported is True
    assert info["checksum_sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert store.exists(key)


def test_missing_keys_are_not_found(store: AssetStore) -> None:
    missing = store.asset_key("ab" * 32)
    with pytest.raises(NotFound, match="^asset abab"):
        store.get(missing)
    assert store.head(missing) is None and not store.exists(missing)
    assert store.get_with_etag(missing) is None
    store.delete(missing)  # deleting a missing key is fine
    with pytest.raises(NotFound):
        store.copy(missing, store.key("elsewhere"))


def test_put_if_absent_copy_delete(store: AssetStore) -> None:
    data = b"content addressed " + uuid.uuid4().bytes
    key = store.asset_key(sha(data))
    assert store.put_if_absent(key, data, content_type="image/png") is True
    assert store.put_if_absent(key, b"other bytes", content_type="image/png") is False  # its HEAD found the key
    assert store.get(key, verify=True) == data
    dst = store.job_key("job-1", "results", "0.png")
    store.copy(key, dst)
    assert store.get(dst, verify=True) == data and store.head(dst)["content_type"] == "image/png"
    store.delete(dst)
    assert not store.exists(dst)


def test_rclone_ignores_write_conditions(store: AssetStore) -> None:
    """rclone's serve s3 does not evaluate If-None-Match or If-Match: every conditional write lands.

    For ``put_new`` (results, content-addressed) that is harmless: a second writer of a key writes the same
    bytes, and the call reports it wrote. Job leases (``put_conditional``, ``delete_if_match``) rest on the
    conditions; the job runner's probe finds they are ignored, and with jobs_runner_replicas above 1 a
    runner then stops instead of sharing jobs unsafely (docs/architecture/jobs.md); one runner needs none."""
    data = b"a computed result " + uuid.uuid4().bytes
    key = store.result_key(sha(data))
    assert store.put_new(key, data, "image/png") is True
    assert store.put_new(key, data, "image/png") is True  # SeaweedFS and AWS: False (412), tests/test_storage.py
    assert store.get(key, verify=True) == data

    lease = store.job_key("job-2", "lease.json")
    first = store.put_conditional(lease, b'{"holder": "a"}')
    assert first
    second = store.put_conditional(lease, b'{"holder": "b"}')  # should fail: the key exists
    assert second and second != first
    assert store.put_conditional(lease, b'{"holder": "c"}', if_match=first)  # should fail: stale ETag
    assert store.delete_if_match(lease, first) is True and not store.exists(lease)
    assert conditional_writes_work(store) is False


def test_list_keys_and_pages(store: AssetStore) -> None:
    job = "job-" + uuid.uuid4().hex[:8]
    expected = sorted(f"jobs/{job}/results/{i:02d}.json" for i in range(7))
    for rel in expected:
        store.put(store.key(rel), b"{}", content_type="application/json")
    store.put(store.job_key(job + "x", "request.json"), b"{}")  # sibling prefix, not listed
    assert store.list_keys(f"jobs/{job}/", page_size=2) == expected
    assert store.list_keys(f"jobs/{job}/results/05") == [f"jobs/{job}/results/05.json"]
    assert store.list_keys("nothing-here/") == []
    assert store.list_page(f"jobs/{job}/", start_after=expected[4], max_keys=10) == expected[5:]
    assert store.list_page(f"jobs/{job}/", max_keys=3) == expected[:3]


def test_presigned_put_then_get(store: AssetStore) -> None:
    data = b"uploaded through a presigned URL " + uuid.uuid4().bytes
    key = store.asset_key(sha(data))
    url = store.presign_put(key, "image/png", expires_s=60)
    assert httpx.put(url, content=data, headers={"Content-Type": "image/png"}).status_code == 200
    assert httpx.put(url, content=data, headers={"Content-Type": "text/plain"}).status_code == 403  # the type is signed
    get_url = store.presign_get(key, expires_s=60, filename="my image.png")
    answer = httpx.get(get_url)
    assert answer.status_code == 200 and answer.content == data
    assert answer.headers["content-disposition"] == 'attachment; filename="my image.png"'
    assert httpx.get(get_url.replace(sha(data), "0" * 64)).status_code == 403


def test_presigned_put_bound_to_sha256_is_checked_on_a_verified_read(store: AssetStore) -> None:
    """The URL signs the metadata sha256 and x-amz-checksum-sha256; rclone checks the signature but not the
    checksum against the bytes: it stores other bytes with the checksum sent, and a read refuses them
    (botocore validates the body against that checksum). SeaweedFS and AWS refuse the upload itself
    (BadDigest, tests/test_storage.py)."""
    data = b"exact bytes only " + uuid.uuid4().bytes
    key = store.asset_key(sha(data))
    url = store.presign_put(key, "image/png", expires_s=60, sha256=sha(data))
    headers = store.presigned_put_headers("image/png", sha256=sha(data))
    assert httpx.put(url, content=data, headers={**headers, "x-amz-meta-sha256": "0" * 64}).status_code == 403
    assert httpx.put(url, content=b"different bytes", headers=headers).status_code == 200
    with pytest.raises(IntegrityError, match="failed its stored checksum on read"):
        store.get(key)
    assert httpx.put(url, content=data, headers=headers).status_code == 200
    assert store.get(key, verify=True) == data


def test_metadata_is_lost_when_rclone_restarts(tmp_path: Path) -> None:
    """rclone keeps x-amz-meta-* in memory only: after a restart the bytes are there, Collage's sha256 is not,
    and a verified read refuses the object rather than trust it."""
    server = RcloneS3(tmp_path)
    env = {**server.env(), "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        server.start()
        with patched_environ(env, _CLEARED):
            store = AssetStore(_settings(server, "path", True, "restart/"))
            store.ensure_bucket()
            key = store.key("kept")
            store.put(key, b"bytes on disk", metadata={"owner": "shop"})
            assert store.head(key)["metadata"]["owner"] == "shop"
            server.stop()
            server.start()
            store = AssetStore(_settings(server, "path", True, "restart/"))
            assert store.get(key) == b"bytes on disk" and store.head(key)["metadata"] == {}
            with pytest.raises(IntegrityError, match="no recorded sha256"):
                store.get(key, verify=True)
    finally:
        server.stop()


class _FastAnswers:
    """Records the status of each request the fast path answered itself (a None answer went to boto3)."""

    def __init__(self, store: AssetStore) -> None:
        self.store = store
        self.answers: list[int | None] = []

    def __enter__(self) -> "_FastAnswers":
        if self.store._fast is None:
            self._patch = None
            return self
        original = self.store._fast.request

        def request(*args, **kwargs):
            answer = original(*args, **kwargs)
            self.answers.append(None if answer is None else answer[0])
            return answer

        self._patch = mock.patch.object(self.store._fast, "request", side_effect=request)
        self._patch.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._patch is not None:
            self._patch.stop()
