"""A TCP relay that holds every byte for half a round trip each way: a local S3 as far as a remote one.

SeaweedFS on loopback answers a HEAD in about 1 ms; an S3 in another zone or region takes 10-30 ms,
most of it the network's round trip. :mod:`loadtests.serving_cost` (``--s3-rtt-ms``) puts this relay
between the service and its SeaweedFS so that the request path's storage round trips cost what they
would in production, while SeaweedFS itself stays the same.

Each direction of a connection is one ordered queue: a chunk read at time *t* is written at
*t + rtt/2*, so a request and its answer cross in one round trip however they are split, and
pipelined bytes keep their order. Bandwidth is not limited: the objects on the request path are a
few KB.

Run as ``python -m loadtests.s3_delay --target HOST:PORT --rtt-ms 20``; it prints ``ready PORT`` (the
port it listens on, 127.0.0.1) once it accepts connections, and runs until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float, clock: Clock, sleep: Sleep) -> None:
    """Bytes from ``reader`` to ``writer``, each chunk ``delay_s`` after it was read, in order."""
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            at, chunk = await due.get()
            if not chunk:  # the reader's end of stream, after everything before it
                writer.close()
                return
            wait_s = at - clock()
            if wait_s > 0:
                await sleep(wait_s)
            writer.write(chunk)
            await writer.drain()

    forwarding = asyncio.ensure_future(forward())
    try:
        while True:
            chunk = await reader.read(65536)
            due.put_nowait((clock() + delay_s, chunk))
            if not chunk:
                break
        await forwarding
    except (ConnectionError, asyncio.CancelledError):  # a side went away, or the relay stops
        forwarding.cancel()
        writer.close()


async def serve(
    target_host: str, target_port: int, rtt_s: float, port: int = 0, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
) -> asyncio.Server:
    """A relay on 127.0.0.1:``port`` (0: a free one) to ``target_host:target_port``, ``rtt_s`` per round
    trip; ``clock`` and ``sleep`` (seconds) are what it times the chunks with."""

    async def relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(
                _carry(client_reader, server_writer, rtt_s / 2, clock, sleep),
                _carry(server_reader, client_writer, rtt_s / 2, clock, sleep),
                return_exceptions=True,
            )
        except asyncio.CancelledError:  # the relay stops: end quietly (asyncio logs a handler task that ends cancelled)
            client_writer.close()
            server_writer.close()

    return await asyncio.start_server(relay, "127.0.0.1", port)


async def _main(target: str, rtt_ms: float) -> None:
    host, _, port = target.rpartition(":")
    server = await serve(host, int(port), rtt_ms / 1e3)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin (or dies)
    server.close()
    relays = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in relays:  # the connections still open: the service is stopping too
        task.cancel()
    await asyncio.gather(*relays, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="HOST:PORT of the S3 server")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip added to every exchange")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.target, args.rtt_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
