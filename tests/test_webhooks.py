"""The Standard Webhooks scheme of service/webhooks.py without a service: signatures, the receiver's replay check, secrets,
and the retry delays (an injected RNG, nothing sleeps). Delivery over HTTP: tests/test_jobs.py and tests/test_jobs_api.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest

from service.config import Settings
from service.webhooks import DEFAULT_TOLERANCE_S, retry_delay, sign, signed_headers, signing_key, verify, webhook_id

SECRET = "receiver-shared-secret"
BODY = b'{"job_id":"0123","state":"succeeded"}'
NOW = 1_800_000_000


def test_the_signature_is_v1_base64_hmac_sha256_of_id_timestamp_and_body():
    expected = hmac.new(SECRET.encode(), b"job-0123." + str(NOW).encode() + b"." + BODY, hashlib.sha256).digest()
    assert sign(SECRET, "job-0123", NOW, BODY) == "v1," + base64.b64encode(expected).decode()


def test_the_signature_matches_the_example_of_the_standard_webhooks_specification():
    """The spec's own example (a whsec_ secret, its msg id, timestamp and payload): a receiver using any library of the
    scheme checks Collage's deliveries the same way."""
    secret, message_id, timestamp, body = (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert sign(secret, message_id, timestamp, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }
    assert verify(secret, headers, body, now=timestamp + 10)


def test_a_signed_delivery_verifies_and_any_change_fails():
    headers = signed_headers(SECRET, webhook_id("0123"), BODY, now=NOW)
    assert headers["webhook-id"] == "job-0123" and headers["webhook-timestamp"] == str(NOW)
    assert verify(SECRET, headers, BODY, now=NOW)
    assert verify(SECRET, {name.upper(): value for name, value in headers.items()}, BODY, now=NOW), "header names are case-insensitive"
    assert not verify(SECRET, headers, BODY.replace(b"succeeded", b"failed"), now=NOW), "a changed body"
    assert not verify(SECRET, headers, BODY + b" ", now=NOW), "one byte more"
    assert not verify(SECRET, {**headers, "webhook-timestamp": str(NOW + 1)}, BODY, now=NOW), "a changed timestamp"
    assert not verify(SECRET, {**headers, "webhook-id": "job-4567"}, BODY, now=NOW), "another id"
    assert not verify("another-secret", headers, BODY, now=NOW)
    for missing in headers:
        assert not verify(SECRET, {k: v for k, v in headers.items() if k != missing}, BODY, now=NOW), missing
    assert not verify(SECRET, {**headers, "webhook-timestamp": "soon"}, BODY, now=NOW)


def test_a_replayed_delivery_fails_once_its_timestamp_is_outside_the_tolerance():
    headers = signed_headers(SECRET, "job-0123", BODY, now=NOW)
    assert verify(SECRET, headers, BODY, now=NOW + DEFAULT_TOLERANCE_S), "at the edge of the window"
    assert not verify(SECRET, headers, BODY, now=NOW + DEFAULT_TOLERANCE_S + 1), "an old timestamp: a replay"
    assert not verify(SECRET, headers, BODY, now=NOW - DEFAULT_TOLERANCE_S - 1), "a timestamp from the future"
    assert verify(SECRET, headers, BODY, now=NOW + 3600, tolerance_s=3600)
    assert not verify(SECRET, headers, BODY, now=NOW + 11, tolerance_s=10)


def test_any_of_several_signatures_may_match_and_other_versions_are_ignored():
    headers = signed_headers(SECRET, "job-0123", BODY, now=NOW)
    good = headers["webhook-signature"]
    rotated = f"v1,{base64.b64encode(b'x' * 32).decode()} {good}"
    assert verify(SECRET, {**headers, "webhook-signature": rotated}, BODY, now=NOW)
    assert not verify(SECRET, {**headers, "webhook-signature": good.replace("v1,", "v2,")}, BODY, now=NOW)


def test_a_whsec_secret_is_the_base64_decoded_key_and_a_malformed_one_is_refused_by_the_settings():
    key = bytes(range(24))
    whsec = "whsec_" + base64.b64encode(key).decode()
    assert signing_key(whsec) == key and signing_key("plain") == b"plain"
    signature = sign(whsec, "job-0123", NOW, BODY)
    assert signature == "v1," + base64.b64encode(hmac.new(key, f"job-0123.{NOW}.".encode() + BODY, hashlib.sha256).digest()).decode()
    assert signature != sign(whsec[len("whsec_") :], "job-0123", NOW, BODY), "the prefix selects decoding"
    for bad in ("whsec_not*base64", "whsec_"):
        with pytest.raises(ValueError, match="whsec_"):
            signing_key(bad)
        with pytest.raises(ValueError, match="whsec_"):
            Settings(webhook_secret=bad)
    assert Settings(webhook_secret=whsec).webhook_secret.get_secret_value() == whsec


class ExtremeRandom(random.Random):
    """An RNG that answers the lowest or the highest value a uniform draw may return, and records each draw's bounds."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high
        self.draws: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.draws.append((a, b))
        return b if self.high else a


def test_retry_delays_are_full_jitter_under_a_doubling_capped_ceiling():
    high, low = ExtremeRandom(high=True), ExtremeRandom(high=False)
    assert [retry_delay(retry, 1.0, 10.0, high) for retry in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert [retry_delay(retry, 1.0, 10.0, low) for retry in range(1, 7)] == [0.0] * 6
    assert high.draws == [(0.0, ceiling) for ceiling in (1.0, 2.0, 4.0, 8.0, 10.0, 10.0)]
    assert retry_delay(5000, 1.0, 10.0, high) == 10.0, "a huge retry number does not overflow"
    seeded = random.Random(7)
    delays = [retry_delay(retry, 0.5, 4.0, seeded) for retry in range(1, 200)]
    assert all(0.0 <= delay <= min(4.0, 0.5 * 2 ** (retry - 1)) for retry, delay in enumerate(delays, start=1))
    assert len(set(delays)) > 150, "jittered: the delays differ"
    with pytest.raises(ValueError):
        retry_delay(0, 1.0, 10.0)
