"""Job webhooks in the Standard Webhooks scheme (https://www.standardwebhooks.com): signing, the receiver's check, retry delays.

Every delivery carries three headers::

    webhook-id: job-<job id>                 the same on every attempt (and from a runner that took the job over)
    webhook-timestamp: <unix seconds>        when this attempt was signed
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

The timestamp is signed with the body, so a captured delivery replayed later fails :func:`verify`'s tolerance
check, and the id lets a receiver drop a delivery it has processed already (a retry after a lost 2xx). The key
is the setting ``webhook_secret``: ``whsec_<base64>`` (the scheme's own format, what its libraries take) is the
base64-decoded bytes, any other value its UTF-8 bytes. Receivers in Python may call :func:`verify` as it is; it
uses the standard library only. The POST itself (address checks, pinning) is ``service.jobs.deliver_webhook``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import time
from collections.abc import Mapping

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300  # the scheme's suggested window; wide enough for clock skew, short enough to make a replay useless


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``webhook_secret``: ``whsec_<base64>`` decoded, any other string as UTF-8.

    ValueError for a ``whsec_`` secret that is not base64 or is empty, so a mistyped key fails at startup
    rather than signing with bytes the receiver does not have."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret starting with whsec_ must be followed by base64 (the Standard Webhooks format)") from None
    if not key:
        raise ValueError("a webhook secret starting with whsec_ must hold at least one byte of key")
    return key


def webhook_id(job_id: str) -> str:
    """The id of a job's webhook. A job sends one event (its final status), so the id follows from the job id: every retry,
    and the delivery of a runner that took the job over after a crash, carry the same one."""
    return f"job-{job_id}"


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The three headers of one attempt, signed at ``now`` (default: the current time)."""
    timestamp = int(time.time() if now is None else now)
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, message_id, timestamp, body)}


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """What a receiver runs on the raw body and the request's headers (any case): True only when the timestamp is within
    ``tolerance_s`` of ``now`` (either side) and one of the ``v1`` signatures in the header matches, compared in constant
    time. The timestamp check is what stops a replay: the signature of a captured delivery stays valid, its age does not."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id, timestamp_text, signatures = (lowered.get(name) for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not message_id or not timestamp_text or not signatures:
        return False
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, message_id, timestamp, body)
    # The header may list several signatures separated by spaces (a sender rotating keys signs with each).
    return any(
        hmac.compare_digest(expected, candidate) for candidate in signatures.split(" ") if candidate.startswith(f"{SIGNATURE_VERSION},")
    )


def retry_delay(retry: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first retry): full jitter, a uniform draw from
    [0, min(cap_s, base_s * 2**(retry - 1))]. The jitter spreads the retries of many jobs that failed together
    (a receiver that was down) instead of sending them back in lockstep."""
    if retry < 1:
        raise ValueError(f"retry counts from 1, got {retry}")
    ceiling = min(cap_s, base_s * 2 ** min(retry - 1, 64))  # the exponent bounded: a float past 2**1024 overflows
    return (rng or random).uniform(0.0, ceiling)
