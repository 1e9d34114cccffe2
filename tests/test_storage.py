"""AssetStore and EmbeddedS3 against a real SeaweedFS server (see tests/conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from service.config import Settings, get_settings
from service.errors import BadRequest, IntegrityError, NotFound, StorageUnavailable
from service.s3server import EmbeddedS3, find_weed
from service.storage import AssetStore
from tests.conftest import TEST_BUCKET


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raw_client(endpoint_url: str, access_key: str, secret_key: str):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


# ------------------------------------------------------------------------------ round trips
def test_settings_point_at_embedded_server(s3_server: EmbeddedS3) -> None:
    settings = get_settings()
    assert settings.resolved_endpoint_url == s3_server.endpoint_url
    assert os.environ["AWS_ACCESS_KEY_ID"] == s3_server.access_key
    assert AssetStore.from_settings().ping() < 3


def test_put_get_head_round_trip(store: AssetStore) -> None:
    data = b"\x89PNG fake image bytes" * 50
    key = store.asset_key(sha(data))
    assert key == f"{store.prefix}assets/{sha(data)}"
    digest = store.put(key, data, content_type="image/png", metadata={"width": "64", "source": "upload"})
    assert digest == sha(data)

    assert store.get(key) == data
    assert store.get(key, verify=True) == data

    info = store.head(key)
    assert info is not None
    assert info["size"] == len(data)
    assert info["content_type"] == "image/png"
    assert info["metadata"] == {"width": "64", "source": "upload", "sha256": sha(data)}
    assert info["etag"] and '"' not in info["etag"]
    # SeaweedFS stores and returns the flexible SHA-256 checksum we sent.
    assert store.checksums_supported is True
    assert info["checksum_sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert store.exists(key)


def test_checksum_verification_detects_tampering(store: AssetStore, s3_server: EmbeddedS3) -> None:
    data = b"original bytes"
    key = store.result_key(sha(data))
    store.put(key, data, content_type="image/png")
    # Overwrite behind the store's back: different bytes, the old sha256 metadata kept.
    raw = raw_client(s3_server.endpoint_url, s3_server.access_key, s3_server.secret_key)
    raw.put_object(Bucket=store.bucket, Key=key, Body=b"tampered bytes", Metadata={"sha256": sha(data)})

    assert store.get(key) == b"tampered bytes"  # unverified reads do not hash
    with pytest.raises(IntegrityError) as info:
        store.get(key, verify=True)
    assert info.value.status == 500
    assert info.value.type_uri.endswith("/integrity") and info.value.title == "Stored Object Failed Integrity Check"
    assert "result" in info.value.detail and "corrupted" in info.value.detail

    # An object without a recorded sha256 cannot be verified: refuse rather than pretend.
    raw.put_object(Bucket=store.bucket, Key=key, Body=b"no metadata")
    with pytest.raises(IntegrityError, match="no recorded sha256"):
        store.get(key, verify=True)


def test_missing_key_is_not_found(store: AssetStore) -> None:
    missing = "ab" * 32
    with pytest.raises(NotFound) as info:
        store.get(store.asset_key(missing))
    assert info.value.status == 404
    assert info.value.detail == f"asset {missing} not found"
    assert store.bucket not in info.value.detail and store.prefix not in info.value.detail
    with pytest.raises(NotFound, match="file 'weights.safetensors' of model 'demo-face'"):
        store.get(store.model_key("demo-face", "weights.safetensors"))
    with pytest.raises(NotFound):
        store.copy(store.asset_key(missing), store.key("elsewhere"))
    assert store.head(store.asset_key(missing)) is None
    assert not store.exists(store.asset_key(missing))
    store.delete(store.asset_key(missing))  # deleting a missing key is fine


def test_put_if_absent_copy_delete(store: AssetStore) -> None:
    data = b"content addressed"
    key = store.asset_key(sha(data))
    assert store.put_if_absent(key, data, content_type="image/png") is True
    assert store.put_if_absent(key, b"other bytes", content_type="image/png") is False
    assert store.get(key, verify=True) == data

    dst = store.job_key("job-1", "results", "0.png")
    store.copy(key, dst)
    assert store.get(dst, verify=True) == data
    assert store.head(dst)["content_type"] == "image/png"

    store.delete(dst)
    assert not store.exists(dst)


def test_concurrent_use_from_threads(store: AssetStore) -> None:
    blobs = [f"blob {i}".encode() * 10 for i in range(24)]

    def work(blob: bytes) -> bytes:
        key = store.asset_key(sha(blob))
        store.put(key, blob)
        return store.get(key, verify=True)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(work, blobs)) == blobs


# ------------------------------------------------------------------------------ presigned URLs
def test_presigned_put_then_get(store: AssetStore) -> None:
    data = b"uploaded through a presigned URL"
    key = store.asset_key(sha(data))
    url = store.presign_put(key, "image/png", expires_s=60)
    resp = httpx.put(url, content=data, headers={"Content-Type": "image/png"})
    assert resp.status_code == 200, resp.text
    # The content type is signed: another one is refused.
    assert httpx.put(url, content=data, headers={"Content-Type": "text/plain"}).status_code == 403

    get_url = store.presign_get(key, expires_s=60, filename="my image.png")
    resp = httpx.get(get_url)
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["content-type"] == "image/png"
    assert resp.headers["content-disposition"] == 'attachment; filename="my image.png"'
    # Signatures are checked: a URL edited to point elsewhere is refused.
    assert httpx.get(get_url.replace(sha(data), "0" * 64)).status_code == 403


def test_presigned_put_bound_to_sha256(store: AssetStore) -> None:
    data = b"exact bytes only"
    key = store.asset_key(sha(data))
    url = store.presign_put(key, "image/png", expires_s=60, sha256=sha(data))
    headers = store.presigned_put_headers("image/png", sha256=sha(data))
    bad = httpx.put(url, content=b"different bytes", headers=headers)
    assert bad.status_code == 400 and "BadDigest" in bad.text
    assert not store.exists(key)
    assert httpx.put(url, content=data, headers=headers).status_code == 200
    assert store.get(key, verify=True) == data


def test_presigned_get_expires(store: AssetStore) -> None:
    key = store.key("short-lived")
    store.put(key, b"x")
    url = store.presign_get(key, expires_s=1)
    time.sleep(2.1)
    assert httpx.get(url).status_code == 403


# ------------------------------------------------------------------------------ listing
def test_list_keys_pages(store: AssetStore) -> None:
    job = "job-" + uuid.uuid4().hex[:8]
    expected = sorted(f"jobs/{job}/results/{i:02d}.json" for i in range(7))
    for rel in expected:
        store.put(store.key(rel), b"{}", content_type="application/json")
    store.put(store.job_key(job + "x", "request.json"), b"{}")  # sibling prefix, not listed

    calls: list[int] = []
    store.client.meta.events.register("after-call.s3.ListObjectsV2", lambda **kw: calls.append(1))
    keys = store.list_keys(f"jobs/{job}/", page_size=2)
    assert keys == expected
    assert len(calls) >= 4  # 7 keys, 2 per page
    assert store.list_keys(f"jobs/{job}/results/05") == [f"jobs/{job}/results/05.json"]
    assert store.list_keys("nothing-here/") == []
    # Listed keys are relative: store.key() turns them back into full keys.
    assert store.get(store.key(keys[0])) == b"{}"


# ------------------------------------------------------------------------------ key validation
@pytest.mark.parametrize(
    "make",
    [
        lambda s: s.asset_key("../../etc/passwd"),
        lambda s: s.asset_key("AB" * 32),  # uppercase
        lambda s: s.asset_key("a" * 63),
        lambda s: s.asset_key("a" * 64 + "/x"),
        lambda s: s.result_key(""),
        lambda s: s.model_key("Bad Name", "model.json"),
        lambda s: s.model_key("x", "model.json"),  # too short
        lambda s: s.model_key("good-name", "../model.json"),
        lambda s: s.model_key("good-name", "a/b"),
        lambda s: s.job_key("..", "status.json"),
        lambda s: s.job_key("job-1", "../../assets/x"),
        lambda s: s.job_key("job-1", "results//x"),
        lambda s: s.key("a", "..", "b"),
        lambda s: s.key("/abs"),
        lambda s: s.key("a\\b"),
        lambda s: s.key("a\nb"),
        lambda s: s.key(),
        lambda s: s.key("x" * 2000),
    ],
)
def test_key_validation_rejects(store: AssetStore, make) -> None:
    with pytest.raises(BadRequest):
        make(store)


def test_key_validation_accepts(store: AssetStore) -> None:
    assert store.model_key("stylegan2-ffhq.64", "weights.safetensors").endswith("models/stylegan2-ffhq.64/weights.safetensors")
    assert store.job_key("0123abcd", "results", "3.png") == f"{store.prefix}jobs/0123abcd/results/3.png"
    assert store.relative(store.key("a", "b/c")) == "a/b/c"
    with pytest.raises(BadRequest, match="64 lowercase hexadecimal"):
        store.asset_key("nope")


# ------------------------------------------------------------------------------ failures
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint_is_storage_unavailable(s3_server: EmbeddedS3) -> None:
    store = AssetStore(Settings(s3_endpoint_url=f"http://127.0.0.1:{_closed_port()}", s3_bucket="collage-test"))

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        store.ping()
    assert time.monotonic() - started < 3
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "5"
    assert info.value.detail.startswith("object storage is unreachable")

    for call in (
        lambda: store.get(store.asset_key("0" * 64)),
        lambda: store.put(store.key("x"), b"x"),
        lambda: store.head(store.key("x")),
        lambda: store.list_keys(""),
        lambda: store.ensure_bucket(),
    ):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as info:
            call()
        assert time.monotonic() - started < 6  # 3 attempts with standard backoff
        assert "botocore" not in info.value.detail


def test_ping_reports_missing_bucket(s3_server: EmbeddedS3) -> None:
    store = AssetStore(Settings(s3_endpoint_url=s3_server.endpoint_url, s3_bucket="collage-missing-" + uuid.uuid4().hex[:8]))
    with pytest.raises(StorageUnavailable, match="bucket does not exist"):
        store.ping()
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    assert store.ping() < 3


def test_wrong_credentials_are_storage_unavailable(s3_server: EmbeddedS3) -> None:
    settings = Settings(s3_endpoint_url=s3_server.endpoint_url, s3_bucket="collage-test")
    wrong = raw_client(s3_server.endpoint_url, s3_server.access_key, "not-the-secret")
    store = AssetStore(settings, client=wrong)
    with pytest.raises(StorageUnavailable, match="credentials"):
        store.get(store.key("anything"))


# ------------------------------------------------------------------------------ embedded server
def test_find_weed() -> None:
    assert Path(find_weed()).name == "weed"


@pytest.mark.server
def test_embedded_server_persists_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "s3"
    # A short stop timeout makes stop() SIGKILL SeaweedFS (its filer waits 15 s on SIGTERM):
    # acknowledged writes must survive even that.
    server = EmbeddedS3(data_dir, stop_timeout=2)
    try:
        server.start()
        creds = (server.access_key, server.secret_key)
        endpoint = server.endpoint_url
        assert (data_dir / "credentials.json").stat().st_mode & 0o777 == 0o600
        assert (data_dir / "identities.json").stat().st_mode & 0o777 == 0o600
        assert json.loads((data_dir / "ports.json").read_text()) == server.ports
        assert len(set(server.ports.values())) == 8
        client = raw_client(endpoint, *creds)
        client.create_bucket(Bucket="persist")
        client.put_object(Bucket="persist", Key="a/b.bin", Body=b"still here", Metadata={"sha256": sha(b"still here")})
        # Signatures are checked.
        with pytest.raises(Exception, match="SignatureDoesNotMatch"):
            raw_client(endpoint, creds[0], "wrong-secret").list_buckets()
        server.stop()
        assert not server.is_running()

        again = EmbeddedS3(data_dir, stop_timeout=2)
        again.start()
        server = again
        assert (again.access_key, again.secret_key) == creds
        assert again.endpoint_url == endpoint  # port=0 reuses the saved, still free ports
        obj = raw_client(again.endpoint_url, *creds).get_object(Bucket="persist", Key="a/b.bin")
        assert obj["Body"].read() == b"still here"
        assert obj["Metadata"] == {"sha256": sha(b"still here")}
        assert again.env()["COLLAGE_S3_ENDPOINT_URL"] == endpoint
    finally:
        server.stop()
    assert "weed" in (data_dir / "weed.log").read_text(errors="replace").lower()


# ------------------------------------------------------------------------------ error translation
class _FailingClient:
    """Stands in for the boto3 client: every call raises the given exception."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __getattr__(self, name: str):
        def call(**kwargs):
            raise self.exc

        return call


def _client_error(code: str, status: int, op: str = "GetObject"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (_client_error("SlowDown", 503), StorageUnavailable),
        (_client_error("InternalError", 500), StorageUnavailable),
        (_client_error("NoSuchKey", 404), NotFound),
        (_client_error("NoSuchBucket", 404), StorageUnavailable),
        (_client_error("AccessDenied", 403), StorageUnavailable),
    ],
)
def test_client_errors_are_translated(exc, expected) -> None:
    store = AssetStore(Settings(s3_endpoint_url="http://127.0.0.1:9", s3_bucket="collage-test"), client=_FailingClient(exc))
    with pytest.raises(expected) as info:
        store.get(store.asset_key("1" * 64))
    assert info.value.__class__.__module__ == "service.errors"


def test_transport_errors_are_storage_unavailable() -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
        ResponseStreamingError,
    )

    url = "http://127.0.0.1:9"
    for exc in (
        EndpointConnectionError(endpoint_url=url),
        ConnectTimeoutError(endpoint_url=url),
        ReadTimeoutError(endpoint_url=url),
        ConnectionClosedError(endpoint_url=url),
        ResponseStreamingError(error="reset"),
    ):
        store = AssetStore(Settings(s3_endpoint_url=url, s3_bucket="collage-test"), client=_FailingClient(exc))
        for call in (lambda s: s.get(s.key("k")), lambda s: s.put(s.key("k"), b"x"), lambda s: s.delete(s.key("k"))):
            with pytest.raises(StorageUnavailable, match="^object storage is unreachable"):
                call(store)


def test_flexible_checksum_fallback_is_detected_once() -> None:
    """An endpoint that refuses x-amz-checksum-sha256: the put is retried plain and that is remembered."""

    class NoChecksumsClient:
        def __init__(self) -> None:
            self.puts: list[dict] = []

        def put_object(self, **kwargs):
            if "ChecksumSHA256" in kwargs or "ChecksumAlgorithm" in kwargs:
                raise _client_error("NotImplemented", 501, "PutObject")
            self.puts.append(kwargs)
            return {}

    fake = NoChecksumsClient()
    # A unique (never contacted) endpoint: detection is remembered per endpoint for the process.
    store = AssetStore(
        Settings(s3_endpoint_url=f"http://fallback-{uuid.uuid4().hex[:8]}.invalid:9000", s3_bucket="collage-test"), client=fake
    )
    store._plain_client = fake  # the client used once checksums are known to be unsupported
    assert store.checksums_supported is None
    store.put(store.key("a"), b"one")
    assert store.checksums_supported is False
    store.put(store.key("b"), b"two")
    assert [p["Metadata"]["sha256"] for p in fake.puts] == [sha(b"one"), sha(b"two")]
    assert "x-amz-checksum-sha256" not in store.presigned_put_headers("image/png", sha256=sha(b"one"))


# ------------------------------------------------------------------------------ the signed fast path
@pytest.mark.parametrize("objects_url", ["http://127.0.0.1:8333/collage", "https://collage.s3.example.test"], ids=["path", "virtual"])
def test_fast_path_signs_exactly_as_botocore(objects_url: str) -> None:
    """The same request, time and credentials: the SigV4 Authorization of service.s3_fast equals botocore's,
    for a bucket in the path and for a bucket in the host name."""
    import datetime as dt
    from unittest import mock

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from service.s3_fast import SignedS3

    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token="session-token")
    signer = SignedS3(objects_url, "eu-west-1", lambda: creds.get_frozen_credentials(), 1, 1)
    now = dt.datetime(2026, 12, 6, 22, 30, 5, tzinfo=dt.timezone.utc)
    body = b"\x89PNG bytes"
    payload = hashlib.sha256(body).hexdigest()
    headers = {
        "content-type": "image/png",
        "x-amz-meta-owner": "shop",
        "x-amz-meta-extras-b64": "eyJhIjoxfQ==",
        "if-none-match": "*",
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    path = signer.path("results/ab cd/é+x")  # spaces, a non-ASCII letter and a plus: escaped as S3 wants
    ours = signer.signed_headers("PUT", path, headers, payload, now=now)

    origin = objects_url.removesuffix("/collage")
    request = AWSRequest(method="PUT", url=origin + path, data=body, headers={**headers, "x-amz-content-sha256": payload})
    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        S3SigV4Auth(creds, "s3", "eu-west-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-security-token"] == "session-token" and ours["x-amz-date"] == "20261206T223005Z"


@pytest.mark.parametrize(
    "endpoint, style, objects_url",
    [
        ("http://127.0.0.1:8333", "path", "http://127.0.0.1:8333/collage"),
        ("https://s3.example.test", "virtual", "https://collage.s3.example.test"),
    ],
    ids=["path", "virtual"],
)
@pytest.mark.parametrize("disposition", [None, 'attachment; filename="my result (1).png"'])
def test_fast_presigned_get_is_botocores_url(endpoint: str, style: str, objects_url: str, disposition: str | None) -> None:
    """Same key, time, lifetime and credentials: service.s3_fast's presigned GET has botocore's signature
    and the same query, so whatever accepts boto3's URLs accepts these."""
    import datetime as dt
    import urllib.parse
    from unittest import mock

    import boto3
    from botocore.config import Config

    from service.s3_fast import SignedS3

    creds = {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    client = boto3.session.Session(**creds, aws_session_token="session/token+=").client(
        "s3", endpoint_url=endpoint, region_name="eu-west-1", config=Config(signature_version="s3v4", s3={"addressing_style": style})
    )
    signer = SignedS3(objects_url, "eu-west-1", lambda: client._get_credentials().get_frozen_credentials(), 1, 1)
    now = dt.datetime(2026, 12, 6, 22, 30, 5, tzinfo=dt.timezone.utc)
    key = "results/ab cd/é+x.png"  # a space, a non-ASCII letter and a plus
    params = {"Bucket": "collage", "Key": key}
    if disposition:
        params["ResponseContentDisposition"] = disposition
    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        theirs = client.generate_presigned_url("get_object", Params=params, ExpiresIn=900)
    ours = signer.presigned_get(key, 900, {"response-content-disposition": disposition} if disposition else None, now=now)

    def parts(url: str) -> tuple:
        split = urllib.parse.urlsplit(url)
        return split.scheme, split.netloc, split.path, sorted(urllib.parse.parse_qsl(split.query, keep_blank_values=True))

    assert parts(ours) == parts(theirs)
    assert dict(parts(ours)[3])["X-Amz-Security-Token"] == "session/token+="


def test_presigned_gets_come_from_the_fast_signer_and_the_server_takes_them(store: AssetStore) -> None:
    from unittest import mock

    key = store.key("fast-presigned " + uuid.uuid4().hex[:8])
    store.put(key, b"presigned bytes")
    with mock.patch.object(store._client, "generate_presigned_url", side_effect=AssertionError("botocore presigned")):
        url = store.presign_get(key)
        named = store.presign_get(key, filename='result "1".png')
    assert httpx.get(url).content == b"presigned bytes"
    answer = httpx.get(named)
    assert answer.status_code == 200 and answer.headers["content-disposition"] == 'attachment; filename="result _1_.png"'
    tampered = url.replace("X-Amz-Expires=", "X-Amz-Expires=1")
    assert httpx.get(tampered).status_code == 403


def test_fast_path_reads_and_writes_what_boto3_does(store: AssetStore) -> None:
    from unittest import mock

    plain = AssetStore(Settings(**{**get_settings().model_dump(), "s3_fast_path": False}))
    assert store._fast is not None and plain._fast is None
    data = b"result image bytes"
    key = store.result_key(sha(data + uuid.uuid4().bytes))
    answers = []

    def answered(*args, **kwargs):
        answers.append(answer := real_request(*args, **kwargs))
        return answer

    real_request = store._fast.request
    with mock.patch.object(store._fast, "request", side_effect=answered) as fast:
        assert store.put_new(key, data, "image/webp", {"owner": "shop", "kind": "image"}) is True
        assert store.put_new(key, b"other", "image/webp") is False  # the conditional PUT's 412
        assert store.head(key) == plain.head(key) and store.head(key)["content_type"] == "image/webp"
        assert store.head(store.result_key("cd" * 32)) is None
        assert [c.args[0] for c in fast.call_args_list] == ["PUT", "PUT", "HEAD", "HEAD", "HEAD"]
    assert [status for status, _ in answers] == [200, 412, 200, 200, 404], "each answered by the fast path, none left to boto3"
    assert plain.get(key, verify=True) == data and plain.head(key)["metadata"]["owner"] == "shop"


def test_fast_path_leaves_errors_to_boto3(store: AssetStore) -> None:
    settings = get_settings().model_dump()
    with pytest.MonkeyPatch.context() as patch:  # a wrong secret: the fast PUT's 403 is answered by boto3's error
        patch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        wrong = AssetStore(Settings(**settings))
        with pytest.raises(Exception) as fast_error:
            wrong.put(wrong.key("x"), b"x")
        plain = AssetStore(Settings(**{**settings, "s3_fast_path": False}))
        with pytest.raises(Exception) as boto_error:
            plain.put(plain.key("x"), b"x")
    assert type(fast_error.value) is type(boto_error.value) and fast_error.value.status == boto_error.value.status
    with socket.socket() as unused:  # nothing listens there: the same 503 as boto3 gives
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    down = AssetStore(Settings(**{**settings, "s3_endpoint_url": f"http://127.0.0.1:{port}", "s3_max_attempts": 1}))
    with pytest.raises(StorageUnavailable):
        down.head(down.key("x"))
    with pytest.raises(StorageUnavailable):
        down.put(down.key("x"), b"x")


def test_safetensors_header_check_refuses_what_is_not_a_well_formed_file():
    import json
    import pickle

    import numpy as np
    from safetensors.numpy import save

    from service.registry import safetensors_problem

    good = save({"a": np.zeros((2, 3), dtype=np.float32), "b": np.ones(4, dtype=np.int64)})
    assert safetensors_problem(good) is None

    def crafted(header: dict, data: bytes) -> bytes:
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw + data

    cases = {
        "pickle": pickle.dumps({"w": [1.0, 2.0]}),
        "empty": b"",
        "truncated": good[:-5],
        "unknown dtype": crafted({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, b"\0" * 16),
        "size": crafted({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
        "overlap": crafted(
            {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
            b"\0" * 8,
        ),
        "header not an object": crafted([1, 2], b""),  # type: ignore[arg-type]
    }
    for name, data in cases.items():
        assert safetensors_problem(data), name


def test_region_follows_the_sdk_resolution_and_attempts_count_the_first(monkeypatch) -> None:
    """Like the AWS SDKs: an unset s3_region is AWS_REGION (or AWS_DEFAULT_REGION), and s3_max_attempts is the
    total per call (botocore's total_max_attempts; its max_attempts would add one). No request is sent."""
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    url = "http://127.0.0.1:1"
    assert AssetStore(Settings(s3_endpoint_url=url, s3_bucket="collage-test")).client.meta.region_name == "ap-south-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    store = AssetStore(Settings(s3_endpoint_url=url, s3_bucket="collage-test", s3_max_attempts=3))
    assert store.client.meta.region_name == "eu-west-1"
    assert store.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert AssetStore(Settings(s3_endpoint_url=url, s3_bucket="collage-test", s3_region="us-west-2")).client.meta.region_name == "us-west-2"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert Settings(s3_endpoint_url=url).resolved_region == "us-east-1"


class ScriptedServer:
    """A loopback TCP server that answers each request it reads with the next of ``answers`` (raw
    bytes; None: close the connection without answering). Records the requests and connections."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers, self.requests, self.connections = list(answers), [], 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while self.answers:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\n\r\n" not in data:
                        break
                    head, _, data = data.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1)) if b"content-length" in head.lower() else 0
                    while len(data) < length:
                        data += conn.recv(65536)
                    self.requests.append((head.decode(), data[:length]))
                    data = data[length:]
                    answer = self.answers.pop(0)
                    if answer is None:
                        break  # close without answering
                    conn.sendall(answer)

    def close(self) -> None:
        self.listener.close()


def _signer(port: int):
    from botocore.credentials import Credentials

    from service.s3_fast import SignedS3

    creds = Credentials("AKIDEXAMPLE", "secret")
    return SignedS3(f"http://127.0.0.1:{port}/collage", "us-east-1", lambda: creds.get_frozen_credentials(), 2, 2)


def test_fast_path_keeps_one_connection_and_reads_every_answer_framing() -> None:
    """Content-Length, chunked (with a trailer) and bodiless answers all leave the kept-alive
    connection ready for the next request: five requests, one connection; header names come back
    lower-case, repeated ones joined."""
    ok = b'HTTP/1.1 200 OK\r\nETag: "e1"\r\nX-Amz-Meta-Owner: shop\r\nContent-Length: 0\r\n\r\n'
    error = b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 11\r\n\r\n<Error/>..."
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nVary: a\r\nVary: b\r\n\r\n4\r\nabcd\r\n0\r\nX-Trailer: t\r\n\r\n"
    head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 310\r\n\r\n"  # a HEAD answer has no body whatever its length says
    server = ScriptedServer([ok, error, chunked, head, ok])
    try:
        signer = _signer(server.port)
        assert signer.request("PUT", "a/b", {"content-type": "image/png"}, b"12345") == (
            200,
            {"etag": '"e1"', "x-amz-meta-owner": "shop", "content-length": "0"},
        )
        assert signer.request("PUT", "a/b", {"if-none-match": "*"}, b"x")[0] == 412
        status, headers = signer.request("PUT", "a/c", {}, b"")
        assert status == 200 and headers["vary"] == "a, b"
        assert signer.request("HEAD", "a/d", {}) == (404, {"content-length": "310"})
        assert signer.request("HEAD", "a/e", {})[0] == 200
    finally:
        server.close()
    assert server.connections == 1
    first_head, first_body = server.requests[0]
    assert first_head.startswith("PUT /collage/a/b HTTP/1.1\r\n") and first_body == b"12345"
    assert "\r\ncontent-length: 5" in first_head and "\r\nauthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/" in first_head


def test_fast_path_reconnects_once_after_a_kept_alive_connection_was_closed() -> None:
    """The server closes an idle kept-alive connection without answering: the request is sent again on
    a new one. A connection closed mid-answer, or ``Connection: close``, is not reused either."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    server = ScriptedServer([ok, None, ok, closing, ok])
    try:
        signer = _signer(server.port)
        assert signer.request("HEAD", "k1", {})[0] == 200
        assert signer.request("HEAD", "k2", {})[0] == 200  # its first send found the connection closed
        assert signer.request("HEAD", "k3", {})[0] == 200  # answered with Connection: close
        assert signer.request("HEAD", "k4", {})[0] == 200  # so this one opened a third connection
    finally:
        server.close()
    assert server.connections == 3 and [h.split(" ")[1] for h, _ in server.requests] == [
        "/collage/k1",
        "/collage/k2",
        "/collage/k2",
        "/collage/k3",
        "/collage/k4",
    ]


def test_fast_path_leaves_to_boto3_what_it_cannot_read() -> None:
    """A garbled status line, a body over the limit, a connection closed mid-answer and a header value
    that would split the request: each is None (AssetStore then repeats it through boto3), and nothing
    is sent for the header."""
    garbled = b"SPDY/3 200 OK\r\n\r\n"
    huge = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9999999\r\n\r\n"
    cut = b"HTTP/1.1 200 OK\r\nContent-Le"
    server = ScriptedServer([garbled, huge, cut])
    try:
        signer = _signer(server.port)
        assert signer.request("HEAD", "k1", {}) is None
        assert signer.request("PUT", "k2", {}, b"x") is None
        assert signer.request("HEAD", "k3", {}) is None
        assert signer.request("PUT", "k4", {"content-type": "image/png\r\nx-amz-acl: public-read"}, b"x") is None
    finally:
        server.close()
    assert [h.split(" ")[1] for h, _ in server.requests] == ["/collage/k1", "/collage/k2", "/collage/k3"]


def test_addressing_style_follows_the_setting_then_the_aws_config_file(monkeypatch, tmp_path) -> None:
    """s3_addressing_style, else the profile's s3.addressing_style, else auto (botocore: path for an endpoint
    given by URL). The boto3 client, its presigned URLs and the fast path's bucket URL agree. No request is sent."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    url = "http://s3.example.test:9000"

    def store(**fields) -> AssetStore:
        return AssetStore(Settings(s3_endpoint_url=url, s3_bucket="collage-test", s3_region="eu-west-1", **fields))

    default = store()
    assert default.addressing_style == "auto" and default.client.meta.config.s3 == {"addressing_style": "auto"}
    assert default.presign_get(default.key("a")).startswith(f"{url}/collage-test/a?")
    assert (default._fast.host_header, default._fast.base_path) == ("s3.example.test:9000", "/collage-test")

    config = tmp_path / "config"
    config.write_text("[default]\ns3 =\n    addressing_style = virtual\n[profile other]\ns3 =\n    addressing_style = path\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    virtual = store()
    assert virtual.addressing_style == "virtual"
    assert virtual.presign_get(virtual.key("a")).startswith("http://collage-test.s3.example.test:9000/a?")
    assert (virtual._fast.host_header, virtual._fast.base_path) == ("collage-test.s3.example.test:9000", "")
    assert virtual._fast.path("a/b c") == "/a/b%20c"
    monkeypatch.setenv("AWS_PROFILE", "other")
    assert store().addressing_style == "path"
    assert store(s3_addressing_style="virtual").addressing_style == "virtual"  # the setting wins over the file

    config.write_text("[default]\ns3 =\n    addressing_style = sideways\n")
    monkeypatch.delenv("AWS_PROFILE")
    with pytest.raises(ValueError, match="s3.addressing_style is 'sideways': use path, virtual or auto"):
        store()
    with pytest.raises(ValueError):
        Settings(s3_addressing_style="sideways")


def test_metadata_names_are_read_case_insensitively(store: AssetStore) -> None:
    """Some servers answer x-amz-meta-* in another case (rclone: X-Amz-Meta-Sha256); the names are the same."""
    data = b"metadata in capitals"
    key = store.key("capitals")
    store.put(key, data)
    real = store.client.get_object

    def capitalised(**kwargs):
        answer = real(**kwargs)
        answer["Metadata"] = {name.capitalize(): value for name, value in answer["Metadata"].items()}
        return answer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store.client, "get_object", capitalised)
        assert store.get(key, verify=True) == data


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "boto3"])
def test_virtual_hosted_style_against_seaweedfs(s3_server: EmbeddedS3, fast_path: bool) -> None:
    """SeaweedFS (started with -s3.domainName=localhost) serves bucket.localhost:PORT too: the store's own
    requests, the fast path's signed HEAD and conditional PUT, and its presigned URLs all go out virtual-hosted."""
    from unittest import mock

    from tests.rclone_s3 import localhost_subdomains_resolve

    settings = Settings(
        s3_endpoint_url=f"http://localhost:{s3_server.port}",
        s3_bucket=TEST_BUCKET,
        s3_prefix=f"v-{uuid.uuid4().hex}/",
        s3_addressing_style="virtual",
        s3_fast_path=fast_path,
    )
    with localhost_subdomains_resolve():
        store = AssetStore(settings)
        sent: list[str] = []
        store.client.meta.events.register("before-send.s3", lambda request, **kw: sent.append(httpx.URL(request.url).host))
        data = b"virtually hosted " + uuid.uuid4().bytes
        key = store.result_key(sha(data))
        assert store.put_new(key, data, "image/png", {"owner": "shop"}) is True
        assert store.put_new(key, b"other", "image/png") is False  # SeaweedFS evaluates If-None-Match here too
        assert store.head(key)["metadata"] == {"owner": "shop", "sha256": sha(data)}
        assert store.get(key, verify=True) == data
        assert store.list_keys("results/") == [store.relative(key)]
        if fast_path:
            assert store._fast.host_header == f"{TEST_BUCKET}.localhost:{s3_server.port}"
            assert store._fast.request("HEAD", key, {})[0] == 200  # signed for bucket.localhost and accepted
            with mock.patch.object(store._fast, "request", wraps=store._fast.request) as fast:
                assert store.put_new(key, b"other", "image/png") is False and store.head(key)["size"] == len(data)
            assert [c.args[0] for c in fast.call_args_list] == ["PUT", "HEAD"]
        upload = store.presign_put(store.asset_key(sha(data)), "image/png", expires_s=60, sha256=sha(data))
        assert httpx.URL(upload).host == f"{TEST_BUCKET}.localhost"
        headers = store.presigned_put_headers("image/png", sha256=sha(data))
        assert httpx.put(upload, content=data, headers=headers).status_code == 200
        assert httpx.get(store.presign_get(store.asset_key(sha(data)), expires_s=60)).content == data
    assert sent and set(sent) == {f"{TEST_BUCKET}.localhost"}  # every boto3 request, none path-style
