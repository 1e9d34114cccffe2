"""Job pieces without the service: manifest parsing, seeds, signatures, final states, S3 records, CLI."""

from __future__ import annotations

import asyncio
import functools
import http.server
import ipaddress
import json
import threading

import pytest

from service.errors import Unprocessable
from service.jobs import JobStore, _pinned, check_webhook_url, deliver_webhook, final_state, item_seed, new_job_id, parse_manifest
from service.webhooks import verify, webhook_id
from tests.helpers import own_lines
from tests.test_webhooks import ExtremeRandom


def test_a_manifest_line_nested_too_deep_is_a_422_naming_it():
    deep = b'{"a": ' * 5_000 + b"1" + b"}" * 5_000
    with pytest.raises(Unprocessable, match="line 2 is not JSON: .*deeper than"):
        parse_manifest(b'{"a": 1}\n' + deep + b"\n", 10)


def test_parse_manifest_skips_blank_lines_and_names_the_bad_line():
    assert parse_manifest(b'{"a": 1}\n\n  \n{"b": 2}\r\n', 10) == [{"a": 1}, {"b": 2}]
    with pytest.raises(Unprocessable, match="line 2 is not JSON"):
        parse_manifest(b'{"a": 1}\n{oops\n', 10)
    with pytest.raises(Unprocessable, match="line 1 is a JSON str"):
        parse_manifest(b'"text"\n', 10)
    with pytest.raises(Unprocessable, match="more than 2 edits"):
        parse_manifest(b"{}\n{}\n{}\n", 2)
    with pytest.raises(Unprocessable, match="no edit requests"):
        parse_manifest(b"", 2)


def test_job_ids_and_item_seeds():
    assert new_job_id("key-1") == new_job_id("key-1") != new_job_id("key-2")
    # Idempotency-Keys are scoped per API key: the same key string of two clients names two jobs
    assert new_job_id("key-1", "alice") == new_job_id("key-1", "alice") != new_job_id("key-1", "bob") != new_job_id("key-1")
    assert len(new_job_id(None)) == 32 and new_job_id(None) != new_job_id(None)
    assert item_seed("a" * 32, 3) == item_seed("a" * 32, 3)
    assert len({item_seed("a" * 32, i) for i in range(100)}) == 100
    assert 0 <= item_seed("b" * 32, 0) < 2**32


@pytest.mark.parametrize(
    "counts, state",
    [
        ({"succeeded": 3, "failed": 0, "cancelled": 0}, "succeeded"),
        ({"succeeded": 2, "failed": 1, "cancelled": 0}, "completed_with_errors"),
        ({"succeeded": 0, "failed": 3, "cancelled": 0}, "failed"),
        ({"succeeded": 1, "failed": 1, "cancelled": 1}, "cancelled"),
    ],
)
def test_final_state(counts, state):
    assert final_state(counts) == state


def test_webhook_delivery_retries_under_one_id_signs_each_attempt_and_gives_up_after_the_attempts():
    seen: list[tuple[dict[str, str], bytes]] = []
    answers = [500, 502, 200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append((dict(self.headers), self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(answers.pop(0) if answers else 500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    body = b'{"job_id":"j","state":"succeeded"}'
    # the RNG draws the lowest delay, 0: the retries do not wait, and it records the ceiling of each retry's draw
    rng = ExtremeRandom(high=False)
    deliver = functools.partial(
        deliver_webhook, url, body, "k", job_id="j", backoff_s=1.0, backoff_max_s=1.5, timeout_s=5, allow_private=True, rng=rng
    )
    try:
        record = asyncio.run(deliver(attempts=5))
        assert record["state"] == "delivered" and record["attempts"] == 3 and record["delivered_at"]
        assert rng.draws == [(0.0, 1.0), (0.0, 1.5)], "full jitter under the doubling ceiling, capped at backoff_max_s"
        assert len(seen) == 3 and {headers["webhook-id"] for headers, _ in seen} == {webhook_id("j")}
        for headers, received in seen:
            assert received == body and verify("k", headers, received)
            assert not verify("other", headers, received)
        record = asyncio.run(deliver(attempts=2))
        assert record["state"] == "failed" and record["attempts"] == 2 and record["last_error"] == "HTTP 500"
        assert len(seen) == 5 and seen[-1][0]["webhook-id"] == seen[0][0]["webhook-id"]  # the same job's event, the same id
    finally:
        server.shutdown()


NON_PUBLIC_WEBHOOKS = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://10.1.2.3/x",
    "http://192.168.0.7/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/x",
    "http://0.0.0.0/x",
    "http://[fd00::1]/x",
    "http://100.64.0.1/x",
    "http://224.0.0.1/x",
    "http://239.255.255.250:1900/x",
    "http://240.0.0.1/x",
    "http://255.255.255.255/x",
    "http://[ff02::1]/x",
    "http://[::7f00:1]/x",  # IPv4-compatible 127.0.0.1
    "http://[::ffff:127.0.0.1]/x",
    "http://[::ffff:a9fe:a9fe]/x",  # IPv4-mapped
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 well-known prefix: 169.254.169.254
    "http://[64:ff9b::a00:1]/x",
    "http://[64:ff9b:1::808:808]/x",  # NAT64: 10.0.0.1; the local-use prefix
    "http://[2002:7f00:1::1]/x",
    "http://[2002:a9fe:a9fe::1]/x",  # 6to4 of 127.0.0.1 and 169.254.169.254
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo
]


@pytest.mark.netns
def test_webhooks_to_non_public_addresses_are_refused_unless_allowed():
    for url in NON_PUBLIC_WEBHOOKS:
        with pytest.raises(Unprocessable, match="not a public address"):
            check_webhook_url(url, allow_private=False)
        check_webhook_url(url, allow_private=True)
        record = asyncio.run(
            deliver_webhook(url, b"{}", "k", job_id="j", attempts=3, backoff_s=0.01, backoff_max_s=1, timeout_s=1, allow_private=False)
        )
        assert record["state"] == "failed" and record["attempts"] == 0 and "not a public address" in record["last_error"], url


@pytest.mark.netns
def test_webhooks_to_public_addresses_pass_and_unresolvable_hosts_are_refused():
    for url in (
        "https://8.8.8.8/hook",
        "https://[2606:4700::1111]/hook",
        "https://[::ffff:8.8.8.8]/hook",
        "https://[64:ff9b::808:808]/hook",
        "https://[2002:808:808::1]/hook",
    ):  # mapped, NAT64, 6to4 of 8.8.8.8
        check_webhook_url(url, allow_private=False)
    with pytest.raises(Unprocessable, match="does not resolve"):
        check_webhook_url("https://no-such-host.invalid/hook", allow_private=False)


def test_a_delivery_goes_to_the_address_that_was_checked():
    """The POST is pinned to the checked address, with the original Host header and TLS server name."""
    url, headers, extensions = _pinned("https://user@hooks.example.com:8443/a?b=1", ipaddress.ip_address("2606:4700::1111"))
    assert url == "https://[2606:4700::1111]:8443/a?b=1" and headers == {"host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    assert _pinned("http://hooks.example.com/x", ipaddress.ip_address("8.8.8.8"))[:2] == ("http://8.8.8.8/x", {"host": "hooks.example.com"})


def test_job_store_records_items_once_and_pages_them(store):
    jobs = JobStore(store)
    job_id = "d" * 32
    doc = {"job_id": job_id, "source": "items", "total": 5, "created_at": "now", "items": [{}] * 5}
    assert jobs.create(job_id, doc) is True
    assert jobs.create(job_id, {**doc, "total": 6}) is False  # the first request stays
    assert jobs.read_request(job_id)["total"] == 5
    for index, state in [(0, "succeeded"), (1, "failed"), (3, "succeeded")]:
        jobs.write_item(job_id, {"index": index, "state": state})
    assert jobs.finished_items(job_id) == {0: "succeeded", 1: "failed", 3: "succeeded"}
    assert sorted(jobs.item_records(job_id, 1, 2)) == [1]
    assert sorted(jobs.item_records(job_id, 0, 100)) == [0, 1, 3]
    assert jobs.item_records(job_id, 4, 10) == {}
    jobs.enqueue(job_id)
    assert jobs.queued_ids() == [job_id]
    jobs.dequeue(job_id)
    assert jobs.queued_ids() == []
    assert not jobs.cancel_requested(job_id)
    jobs.request_cancel(job_id)
    jobs.request_cancel(job_id)  # twice is fine
    assert jobs.cancel_requested(job_id)


def test_cli_jobs_submit_waits_with_a_progress_bar_and_writes_results(service, tmp_path, capsys):
    from service.tools.cli import main, progress_line

    manifest = tmp_path / "edits.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"model": "collage-faces", "op": "sample", "inputs": {"seed": 30_000 + i, "class_id": "cat"}}) for i in range(6)
        )
    )
    assert main(["jobs", "submit", str(manifest), "--url", service.url, "--wait"]) == 0
    captured = capsys.readouterr()
    stdout = own_lines(captured.out)
    status = json.loads(stdout[stdout.index("{") :])
    assert status["state"] == "succeeded" and status["counts"]["succeeded"] == 6
    assert "6/6" in captured.err and "[" + "#" * 30 + "]" in captured.err

    out = tmp_path / "pngs"
    assert main(["jobs", "results", status["job_id"], "--url", service.url, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in own_lines(capsys.readouterr().out).splitlines()]
    assert [item["index"] for item in lines] == list(range(6))
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(6)]

    assert main(["jobs", "cancel", status["job_id"], "--url", service.url]) == 1
    assert "already finished" in capsys.readouterr().err
    assert main(["jobs", "status", "f" * 32, "--url", service.url]) == 1
    line = progress_line({"state": "running", "counts": {"total": 10, "pending": 6, "failed": 1, "cancelled": 0}}, 2.0, width=10)
    assert line == "[####......] 4/10 · 1 failed · 2.0 items/s · ETA 3 s · running"
