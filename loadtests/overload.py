"""Overload figures: open-loop load at multiples of the measured capacity, and how the service answers.

    python -m loadtests.overload [--url URL] [--factors 2,3,10] [--seconds 8] [--model collage-faces]

Without --url the service is started locally (collage family only) and stopped afterwards. For each
factor it first measures capacity (closed loop, 16 clients, full batches), then sends distinct
``sample`` edits at factor × capacity for --seconds whether or not earlier ones answered, and prints
one JSON line per factor: what was sent, the statuses, latency quantiles of the 200s and the 429s
as the client saw them, and the ingress's own time for each refusal (its ``Server-Timing`` header).
docs/security.md §6 shows a run. ``tests/test_faults.py`` uses the same load to check the statuses.

The open loop sends through :class:`RawClient`, a few dozen lines of HTTP/1.1 over asyncio streams, not
httpx: on two cores the load generator shares the CPUs with the service, and httpx's own CPU per
request (about 1 ms) saturated it below 10x, so the latencies it reported included its own event
loop's backlog. ``--client httpx`` measures with httpx instead, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import itertools
import json
import time
import urllib.parse
from typing import Any

import httpx

from service.auth import client_headers


def _body(model: str, seed: int) -> dict[str, Any]:
    return {"model": model, "op": "sample", "inputs": {"seed": seed, "class_id": 0}}


async def closed_loop(url: str, seconds: float, concurrency: int, seeds, model: str, headers: dict[str, str]) -> int:
    """Edits completed by ``concurrency`` clients, each sending the next as soon as the last answered."""
    done = 0
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                response = await http.post("/v1/edits", json=_body(model, next(seeds)))
                response.raise_for_status()
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


@dataclasses.dataclass
class RawResponse:
    """What the figures and tests read of a response (headers by lower-case name)."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    elapsed_s: float  # from the request's scheduled send time to its last byte

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class RawClient:
    """POSTs of JSON over persistent HTTP/1.1 connections, one request at a time on each, a new connection
    whenever none is idle; reads a Content-Length or chunked body. Only what the open loop needs."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.fixed = f"Host: {parts.netloc}\r\nContent-Type: application/json\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: dict[str, Any], scheduled: float) -> RawResponse:
        data = json.dumps(body).encode()
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        writer.write(f"POST {path} HTTP/1.1\r\n{self.fixed}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            content = b""
            while size := int((await reader.readline()).split(b";")[0], 16):
                content += (await reader.readexactly(size + 2))[:-2]
            await reader.readline()
        else:
            content = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return RawResponse(status, headers, content, time.monotonic() - scheduled)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def open_loop(url: str, seconds: float, rate: float, seeds, model: str, headers: dict[str, str], client: str = "raw") -> list[Any]:
    """Edits sent at ``rate`` per second for ``seconds``, whether or not earlier ones answered; each
    response's ``elapsed_s`` counts from when it was due to be sent."""

    async def send(post: Any) -> list[Any]:
        sent: list[asyncio.Task] = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            sent.append(asyncio.create_task(post(_body(model, next(seeds)), start + len(sent) / rate)))
            await asyncio.sleep(max(0.0, start + len(sent) / rate - time.monotonic()))
        return await asyncio.gather(*sent)

    if client == "httpx":
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=url, timeout=180, headers=headers, limits=limits) as http:

            async def post_httpx(body: dict[str, Any], scheduled: float) -> httpx.Response:
                response = await http.post("/v1/edits", json=body)
                response.elapsed_s = time.monotonic() - scheduled
                return response

            return await send(post_httpx)
    raw = RawClient(url, headers)
    try:
        return await send(lambda body, scheduled: raw.post("/v1/edits", body, scheduled))
    finally:
        raw.close()


def _quantile(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def overload(
    url: str,
    factor: float,
    seconds: float,
    seeds,
    model: str = "collage-faces",
    headers: dict[str, str] | None = None,
    measure_s: float = 6.0,
    client: str = "raw",
) -> tuple[dict[str, Any], list[Any]]:
    """One run at ``factor`` × the capacity measured just before: (figures, every response)."""
    headers = client_headers() if headers is None else headers
    capacity = asyncio.run(closed_loop(url, measure_s, 16, seeds, model, headers)) / measure_s
    started = time.monotonic()
    responses = asyncio.run(open_loop(url, seconds, factor * capacity, seeds, model, headers, client))
    sent_per_s = len(responses) / (time.monotonic() - started)
    statuses = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    refused_s = [r.elapsed_s for r in refused]
    in_ingress_s = [float(r.headers["server-timing"].split("dur=")[1]) / 1e3 for r in refused if "server-timing" in r.headers]
    served_s = [r.elapsed_s for r in responses if r.status_code == 200]
    figures = {
        "factor": factor,
        "client": client,
        "capacity_edits_per_s": round(capacity, 1),
        "offered_per_s": round(factor * capacity, 1),
        "sent_per_s": round(sent_per_s, 1),
        "seconds": seconds,
        "requests": len(statuses),
        "ok": statuses.count(200),
        "too_many_requests": len(refused),
        "other": len(statuses) - statuses.count(200) - len(refused),
        "other_statuses": dict(sorted(collections.Counter(s for s in statuses if s not in (200, 429)).items())),
        "p50_429_s": _quantile(refused_s, 0.5),
        "p90_429_s": _quantile(refused_s, 0.9),
        "p99_429_s": _quantile(refused_s, 0.99),
        "p50_429_in_ingress_s": _quantile(in_ingress_s, 0.5),
        "p99_429_in_ingress_s": _quantile(in_ingress_s, 0.99),
        "p50_200_s": _quantile(served_s, 0.5),
        "p99_200_s": _quantile(served_s, 0.99),
    }
    return figures, responses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running service (default: start one locally)")
    parser.add_argument("--factors", default="2,3,10", help="multiples of the measured capacity, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="open-loop time per factor")
    parser.add_argument("--model", default="collage-faces")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw", help="the open loop's HTTP client (see the module doc)")
    args = parser.parse_args(argv)
    seeds = itertools.count(int(time.time()) % 10**6 * 1000)
    if args.url:
        for factor in (float(f) for f in args.factors.split(",")):
            print(json.dumps(overload(args.url, factor, args.seconds, seeds, args.model, client=args.client)[0]), flush=True)
        return 0
    from service.runtime import LocalService

    with LocalService(families="collage") as service:
        for factor in (float(f) for f in args.factors.split(",")):
            print(json.dumps(overload(service.url, factor, args.seconds, seeds, args.model, client=args.client)[0]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
