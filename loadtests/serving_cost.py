"""CPU cost of the serving path per edit, by process group, against the Ray Serve floor in the same run.

    python -m loadtests.serving_cost [--ops collage.sample] [--concurrency 1,16,64] [--auth on,off]
                                     [--requests 200] [--baseline REV] [--variant LABEL:NAME=VALUE,...]
                                     [--out docs/perf/serving-cost]

For each auth mode a local service is started (embedded SeaweedFS, Ray, the Serve app with the
families the ops need; ``on``: ``COLLAGE_AUTH=required`` with one API key), the two floor apps of
:mod:`loadtests.serving_floor` are deployed beside it, and for every op (then every floor) and
concurrency level a load generator in a child process sends ``--requests`` distinct edits. The CPU
time (user + system, from /proc via psutil) of every process is read before and after, grouped as

    proxy · ingress · family replica · job runner · S3 server · Ray system (GCS, raylet, controller,
    agents, the driver) · load generator

and divided by the number of edits. Also printed: edits/s, p50/p99 latency, the generator's own
compute per edit (the family's ``run_group`` timed as CPU in this process on one torch thread at the
level's mean batch, after the served runs; the responses' wall-time ``compute_ms`` is kept beside it),
the mean batch, and the **path cost**: service CPU per edit (proxy + ingress + family + job runner +
Ray system; S3 and the load generator apart) minus the generator's compute. Floors have no model;
their path cost is all of their service CPU. Before the levels, the CPU of every group is read over
a few seconds without traffic; a level's **idle share** is that background over its edits/s, and its
**marginal path** is the path minus the idle share: what one more edit costs beyond its generator,
the figure that multiplies with throughput (on a GPU the same background is shared by many more
edits). A second table splits each level's p50 latency by the responses' own timings (ingress,
storage, the Ray hop to the family replica and back, queue to batch start, compute, encode, and what lies
outside the ingress).

Before and after in one run: ``--baseline REV`` also measures the service of a git revision (a
temporary worktree with this harness copied in), ``--variant`` this checkout under other environment
(e.g. ``access-log:COLLAGE_SERVE_ACCESS_LOG=true``). Each variant and auth mode runs in a child
process with a Ray and SeaweedFS of its own, variants interleaved within each auth mode.

Nothing else may run meanwhile: the script refuses to start while another Ray or SeaweedFS process
is alive (``--allow-busy`` overrides). Writes ``serving_cost.json``, ``.md`` and ``.png`` to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from loadtests.bench import percentile

GROUPS = ("proxy", "ingress", "family", "job_runner", "s3", "ray_system", "load_generator")
SERVICE_GROUPS = ("proxy", "ingress", "family", "job_runner", "ray_system")  # what "service CPU" sums
APP = "collage"
FLOORS = ("one-hop", "no-hop")


# ---- process groups ------------------------------------------------------------------------------
def classify(process: psutil.Process, app: str, driver_pid: int, generator_pid: int | None) -> str | None:
    """The group a process belongs to while ``app`` is measured (None: not ours, or another app's replica)."""
    if process.pid == generator_pid:
        return "load_generator"
    if process.pid == driver_pid:
        return "ray_system"
    try:
        name = process.name()
        cmdline = " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    title = (cmdline or name).strip()  # Ray pads its workers' process titles with spaces
    if name == "weed" or "/weed " in cmdline or "loadtests.s3_delay" in cmdline:  # the relay stands in for S3's network
        return "s3"
    if name == "haproxy" or title.startswith(("ray::ProxyActor", "ray::HAProxyManager")):  # Ray's Python proxy, or its HAProxy
        return "proxy"
    if title.startswith("ray::ServeReplica:"):
        replica_app, _, deployment = title[len("ray::ServeReplica:") :].partition(":")
        if replica_app != app:
            return None  # idle replicas of the other app under test
        deployment = deployment.split(".")[0]
        if deployment.endswith("Ingress"):
            return "ingress"
        return "job_runner" if deployment == "JobRunner" else "family"
    if title.startswith("ray::") or name in ("raylet", "gcs_server") or "site-packages/ray/" in cmdline:
        return "ray_system"
    return None


def ours(process: psutil.Process) -> bool:
    """Ray or SeaweedFS processes (any session's): what must not be running before a measurement."""
    try:
        cmdline = " ".join(process.cmdline())
        name = process.name()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return process.pid != os.getpid() and (name in ("raylet", "gcs_server", "weed", "haproxy") or cmdline.startswith("ray::"))


def cpu_seconds() -> dict[int, tuple[psutil.Process, float]]:
    """pid -> (process, user + system seconds) of this process and its descendants: the Ray session,
    SeaweedFS and the load generator this script started (never another session's processes)."""
    seen = {}
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
            seen[process.pid] = (process, times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return seen


def grouped_cpu(before: dict, after: dict, app: str, generator_pid: int) -> dict[str, float]:
    """CPU seconds each group spent between the two readings (a process born meanwhile counts from 0)."""
    spent = dict.fromkeys(GROUPS, 0.0)
    for pid, (process, seconds) in after.items():
        group = classify(process, app, os.getpid(), generator_pid)
        if group is not None:
            spent[group] += seconds - before.get(pid, (None, 0.0))[1]
    return spent


# ---- the load generator (a child process, so its CPU is its own) ----------------------------------
async def _send(url: str, path: str, bodies: list[dict], concurrency: int, headers: dict[str, str]) -> dict[str, Any]:
    import httpx

    pending = list(reversed(bodies))
    latencies: list[float] = []
    timings: list[dict] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, headers=headers, limits=limits) as client:

        async def worker() -> None:
            while pending:
                body = pending.pop()
                started = time.perf_counter()
                response = await client.post(path, json=body)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code} from {path}: {response.text[:300]}")
                if response.headers.get("content-type", "").startswith("application/json"):
                    document = response.json()
                    if "timings" in document:  # with this response's own latency, so the two stay paired
                        timings.append({**document["timings"], "cached": document["cached"], "latency_s": latencies[-1]})

        # connections opened before the clock starts, as a long-running client would have them
        await asyncio.gather(*(client.get("/healthz") for _ in range(concurrency)))
        print("ready", flush=True)
        sys.stdin.readline()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "latencies_s": latencies, "timings": timings}


def generator_main() -> int:
    spec = json.loads(sys.stdin.readline())  # on stdin: thousands of bodies do not fit an argument list
    headers = {"Authorization": f"Bearer {spec['token']}"} if spec.get("token") else {}
    result = asyncio.run(_send(spec["url"], spec["path"], spec["bodies"], spec["concurrency"], headers))
    print(json.dumps(result), flush=True)
    return 0


def start_generator(spec: str) -> subprocess.Popen:
    """The load generator child, given its spec; it prints "ready" once connected, then waits for a line."""
    child = subprocess.Popen(
        [sys.executable, "-m", "loadtests.serving_cost", "--generate"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    child.stdin.write(spec + "\n")
    child.stdin.flush()
    return child


def family_calls(url: str, token: str | None) -> tuple[float, float] | None:
    """(edits, calls) the ingress has sent to families so far, from its ``collage_family_call_edits``
    histogram; None where the service has no such metric (a baseline revision before coalescing)."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    text = httpx.get(url + "/metrics", headers=headers, timeout=30).text
    sums = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("collage_family_call_edits_sum")]
    counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("collage_family_call_edits_count")]
    return (sum(sums), sum(counts)) if counts else None


def run_level(url: str, path: str, bodies: list[dict], concurrency: int, token: str | None, app: str) -> dict[str, Any]:
    """One measured level: the child sends ``bodies`` at ``concurrency``; CPU read around the sending alone."""
    spec = json.dumps({"url": url, "path": path, "bodies": bodies, "concurrency": concurrency, "token": token})
    child = start_generator(spec)
    assert child.stdout is not None and child.stdin is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("the load generator did not start")
    calls_before = family_calls(url, token) if app == APP else None  # read outside the CPU window
    time.sleep(0.3)  # let the connection set-up settle
    before = cpu_seconds()
    child.stdin.write("go\n")
    child.stdin.flush()
    output = child.stdout.readline()
    after = cpu_seconds()
    calls_after = family_calls(url, token) if calls_before is not None else None
    child.wait(timeout=60)
    if child.returncode != 0 or not output:
        raise RuntimeError(f"the load generator failed (exit {child.returncode})")
    result = json.loads(output)
    spent = grouped_cpu(before, after, app, child.pid)
    n = len(bodies)
    computed = [t for t in result["timings"] if t.get("compute_ms") is not None]
    compute = [t["compute_ms"] / max(1, t["group_size"] or 1) for t in computed]  # the edit's share of its group
    generator_ms = statistics.mean(compute) if compute else 0.0
    per_edit = {group: 1e3 * seconds / n for group, seconds in spent.items()}
    parts = {  # where a request's wall time went, p50 of each of the responses' own timings
        part: percentile([t[field] for t in computed if t.get(field) is not None], 0.5) if computed else None
        for part, field in (
            ("ingress", "total_ms"),
            ("storage", "storage_ms"),
            ("transit", "transit_ms"),
            ("queue", "queue_ms"),
            ("compute", "compute_ms"),
            ("encode", "encode_ms"),
        )
    }
    if computed:
        parts["outside_ingress"] = percentile([1e3 * t["latency_s"] - t["total_ms"] for t in computed], 0.5)
    service_ms = sum(per_edit[g] for g in SERVICE_GROUPS)
    return {
        "requests": n,
        "concurrency": concurrency,
        "edits_per_s": n / result["elapsed_s"],
        "p50_ms": 1e3 * percentile(result["latencies_s"], 0.5),
        "p99_ms": 1e3 * percentile(result["latencies_s"], 0.99),
        "cpu_ms_per_edit": per_edit,
        "service_cpu_ms": service_ms,
        "generator_ms": generator_ms,
        "path_cpu_ms": service_ms - generator_ms,
        "added_ms_p50": percentile([1e3 * t["latency_s"] - c for t, c in zip(computed, compute)], 0.5) if compute else None,
        "mean_batch": statistics.mean(t["batch_size"] or 0 for t in result["timings"]) if result["timings"] else None,
        "cached": sum(t["cached"] for t in result["timings"]),
        "latency_parts_ms": parts,
        "edits_per_call": (
            (calls_after[0] - calls_before[0]) / max(1.0, calls_after[1] - calls_before[1]) if calls_before and calls_after else None
        ),
    }


def generator_cpu(bench: Any, asset_bytes: dict[str, bytes], assets: dict[str, str], rows: dict[str, dict]) -> None:
    """Each level's generator compute as CPU time: the family's ``run_group`` in this process on one
    torch thread (as a replica has), at the level's mean batch, measured after the served runs. The
    replica's own ``compute_ms`` is wall time, which on two busy cores also counts the waits for a CPU.
    Sets ``generator_ms`` and ``path_cpu_ms`` of every row."""
    import torch

    from loadtests.bench import RawRunner

    runner, threads = RawRunner(bench, asset_bytes, assets), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for row in rows.values():
            tasks = runner.tasks(list(range(max(1, round(row["mean_batch"] or 1)))))
            runner.run(tasks)  # warm-up
            images, started = 0, time.process_time()
            while time.process_time() - started < 1.0:
                runner.run(tasks)
                images += len(tasks)
            row["replica_compute_ms"] = row["generator_ms"]  # what the responses' timings said (wall time)
            row["generator_ms"] = 1e3 * (time.process_time() - started) / images
            row["path_cpu_ms"] = row["service_cpu_ms"] - row["generator_ms"]
    finally:
        torch.set_num_threads(threads)


# ---- what the service costs while idle ---------------------------------------------------------------
IDLE_WINDOW_S = 5.0


def idle_rates(apps: list[str]) -> dict[str, dict[str, float]]:
    """CPU-ms per second each process group spends with no traffic at all, as each app's rows count
    the groups: Serve's controller and health checks, metrics pushes, the job runner's queue poll,
    the ingress's loop-lag watch. It does not grow with the traffic, so a level's share of it per
    edit is this rate over its edits/s: what a faster generator (a GPU) divides by more edits."""
    time.sleep(1.0)  # the uploads' and deploys' after-effects settle
    before = cpu_seconds()
    time.sleep(IDLE_WINDOW_S)
    after = cpu_seconds()
    return {app: {g: 1e3 * v / IDLE_WINDOW_S for g, v in grouped_cpu(before, after, app, -1).items()} for app in apps}


def add_marginal(row: dict[str, Any], idle: dict[str, float]) -> None:
    """The row's share of the idle background per edit, and its **marginal path**: path minus that share,
    what each further edit costs the service's CPUs beyond its generator."""
    row["idle_ms_per_edit"] = sum(idle[g] for g in SERVICE_GROUPS) / row["edits_per_s"]
    row["marginal_path_ms"] = row["path_cpu_ms"] - row["idle_ms_per_edit"]


# ---- one service per auth mode -------------------------------------------------------------------
class RemoteS3:
    """The service's SeaweedFS behind :mod:`loadtests.s3_delay`: every storage round trip takes ``rtt_ms`` more.
    ``start`` points this process's environment (which the service inherits) at the relay."""

    def __init__(self, rtt_ms: float) -> None:
        self.rtt_ms = rtt_ms
        self.s3: Any = None
        self.relay: subprocess.Popen | None = None

    def start(self) -> "RemoteS3":
        from urllib.parse import urlsplit

        from service.config import get_settings
        from service.s3server import EmbeddedS3

        get_settings.cache_clear()
        self.s3 = EmbeddedS3(Path(get_settings().data_dir) / "s3").start()  # where a plain run keeps its SeaweedFS
        target = urlsplit(self.s3.endpoint_url)
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "loadtests.s3_delay", "--target", f"{target.hostname}:{target.port}", "--rtt-ms", str(self.rtt_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.relay.stdout.readline().split()
        if ready[:1] != ["ready"]:
            raise RuntimeError("the S3 delay relay did not start")
        os.environ.update({**self.s3.env(), "COLLAGE_S3_ENDPOINT_URL": f"http://127.0.0.1:{ready[1]}"})
        get_settings.cache_clear()
        return self

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.stdin.close()  # its signal to stop
            self.relay.wait(timeout=30)
        if self.s3 is not None:
            self.s3.stop()


def start_service(auth: str, families: str) -> tuple[Any, str | None]:
    """A LocalService with auth ``on`` (one key with every scope; its token returned) or ``off``."""
    from service.auth import key_entry, new_token
    from service.config import get_settings
    from service.runtime import LocalService

    token = None
    if auth == "on":
        token = new_token()
        os.environ["COLLAGE_AUTH"] = "required"
        os.environ["COLLAGE_API_KEYS"] = json.dumps([key_entry("bench", token, ["edit", "jobs", "admin"]).model_dump()])
        os.environ["COLLAGE_CLIENT_TOKEN"] = token  # the service's own readiness and asset calls
    else:
        os.environ["COLLAGE_AUTH"] = "disabled"
        for name in ("COLLAGE_API_KEYS", "COLLAGE_CLIENT_TOKEN"):
            os.environ.pop(name, None)
    get_settings.cache_clear()
    return LocalService(families=families).start(), token


def measure_mode(auth: str, ops: list, levels: list[int], requests: int, base: int, s3_rtt_ms: float = 0.0) -> dict[str, Any]:
    import httpx

    from loadtests import serving_floor
    from loadtests.bench import bench_assets
    from service.auth import client_headers

    remote_s3 = RemoteS3(s3_rtt_ms).start() if s3_rtt_ms else None
    try:
        service, token = start_service(auth, ",".join(sorted({b.family for b in ops})))
    except BaseException:
        if remote_s3 is not None:
            remote_s3.stop()
        raise
    mode: dict[str, Any] = {"ops": {}, "floors": {}}
    try:
        serving_floor.deploy()
        with httpx.Client(base_url=service.url, timeout=120, headers=client_headers()) as client:
            assets, asset_bytes = {}, bench_assets(64)
            for name, data in asset_bytes.items():
                response = client.post("/v1/assets", files={"file": (f"{name}.png", data, "image/png")})
                response.raise_for_status()
                assets[name] = response.json()["asset_id"]
        idle = idle_rates([APP, *(f"floor-{floor}" for floor in serving_floor.ROUTES)])
        mode["idle_cpu_ms_per_s"] = idle
        for bench in ops:
            mode["ops"][bench.name] = {}
            for level in levels:
                run_level(service.url, "/v1/edits", [bench.body(base + i, assets) for i in range(2 * level)], level, token, APP)  # warm
                base += 2 * level
                row = run_level(service.url, "/v1/edits", [bench.body(base + i, assets) for i in range(requests)], level, token, APP)
                base += requests
                mode["ops"][bench.name][str(level)] = row
                print(
                    f"auth {auth} {bench.name} c={level}: {row['edits_per_s']:.1f} edits/s, service {row['service_cpu_ms']:.2f} CPU-ms, "
                    f"p50 {row['p50_ms']:.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            generator_cpu(bench, asset_bytes, assets, mode["ops"][bench.name])
            for row in mode["ops"][bench.name].values():
                add_marginal(row, idle[APP])
        body = ops[0].body(0, assets)
        for floor, prefix in serving_floor.ROUTES.items():
            mode["floors"][floor] = {}
            for level in levels:
                run_level(service.url, prefix + "/v1/edits", [body] * (2 * level), level, None, f"floor-{floor}")
                row = run_level(service.url, prefix + "/v1/edits", [body] * requests, level, None, f"floor-{floor}")
                add_marginal(row, idle[f"floor-{floor}"])
                mode["floors"][floor][str(level)] = row
                print(
                    f"auth {auth} floor {floor} c={level}: {row['edits_per_s']:.1f} req/s, service {row['service_cpu_ms']:.2f} CPU-ms",
                    file=sys.stderr,
                    flush=True,
                )
        serving_floor.delete()
    finally:
        service.stop()
        if remote_s3 is not None:
            remote_s3.stop()
    return mode


# ---- report --------------------------------------------------------------------------------------
def rows(results: dict[str, Any]):
    """(variant, auth, what, concurrency, row) for every measured level, ops first, then the floors."""
    for label, variant in results["variants"].items():
        for auth, mode in variant["modes"].items():
            for op, by_level in mode["ops"].items():
                yield from ((label, auth, f"`{op}`", level, row) for level, row in by_level.items())
            for floor, by_level in mode["floors"].items():
                yield from ((label, auth, f"floor {floor}", level, row) for level, row in by_level.items())


def markdown(results: dict[str, Any]) -> str:
    head = (
        "| variant | auth | what | c | edits/s | p50 / p99 ms | proxy | ingress | family | job runner | Ray system | "
        "**service** | generator | **path** | idle share | **marginal path** | S3 | load gen | added ms p50 | mean batch | edits per call |"
    )
    rounds = results.get("rounds", 1)
    lines = [
        f"device: {results['device']} · {results['requests']} requests per level"
        + (f" · median of {rounds} interleaved rounds" if rounds > 1 else "")
        + (f" · S3 {results['s3_rtt_ms']:g} ms away (loadtests/s3_delay.py)" if results.get("s3_rtt_ms") else "")
        + f" · `{results['command']}` · CPU-ms per edit",
        "",
        head,
        "|---|---|---|---:|---:|---:|" + "---:|" * 15,
    ]
    for label, auth, what, level, r in rows(results):
        c = r["cpu_ms_per_edit"]
        added = "–" if r["added_ms_p50"] is None else f"{r['added_ms_p50']:.1f}"
        batch = "–" if r["mean_batch"] is None else f"{r['mean_batch']:.1f}"
        per_call = "–" if r.get("edits_per_call") is None else f"{r['edits_per_call']:.1f}"
        lines.append(
            f"| {label} | {auth} | {what} | {level} | {r['edits_per_s']:.1f} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} | "
            f"{c['proxy']:.2f} | {c['ingress']:.2f} | {c['family']:.2f} | {c['job_runner']:.2f} | {c['ray_system']:.2f} | "
            f"**{r['service_cpu_ms']:.2f}** | {r['generator_ms']:.2f} | **{r['path_cpu_ms']:.2f}** | {_num(r.get('idle_ms_per_edit'))} | "
            f"**{_num(r.get('marginal_path_ms'))}** | {c['s3']:.2f} | "
            f"{c['load_generator']:.2f} | {added} | {batch} | {per_call} |"
        )
    lines += [
        "",
        "Where a request's time went, p50 ms of the responses' own timings (ingress = its total time in the ingress;"
        " outside = client latency minus that: the proxy, the sockets, the client; Ray hop = the call between the"
        " ingress and the family replica, both ways, part of the ingress time; queue to batch start includes its way there):",
        "",
        "| variant | auth | what | c | p50 latency | outside ingress | ingress | storage | Ray hop | queue to batch start | compute | encode |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, auth, what, level, r in rows(results):
        parts = r.get("latency_parts_ms") or {}
        if parts.get("ingress") is None:
            continue
        lines.append(
            f"| {label} | {auth} | {what} | {level} | {r['p50_ms']:.1f} | {_num(parts.get('outside_ingress'), 1)} | "
            f"{_num(parts['ingress'], 1)} | {_num(parts.get('storage'), 1)} | {_num(parts.get('transit'), 1)} | {_num(parts.get('queue'), 1)} | "
            f"{_num(parts.get('compute'), 1)} | {_num(parts.get('encode'), 1)} |"
        )
    return "\n".join(lines)


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"  # NaN: no response had the timing


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"{what.strip('`')} c={level}\n{label}, auth {auth}", row) for label, auth, what, level, row in rows(results)]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(bars)), 5))
    bottoms = [0.0] * len(bars)
    for k, group in enumerate(GROUPS):
        values = [row["cpu_ms_per_edit"][group] for _, row in bars]
        ax.bar(range(len(bars)), values, bottom=bottoms, label=group.replace("_", " "), color=f"C{k}")
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.scatter(
        range(len(bars)), [row["generator_ms"] for _, row in bars], marker="_", s=200, color="black", zorder=3, label="generator compute"
    )
    ax.set_xticks(range(len(bars)), [label for label, _ in bars], fontsize=5, rotation=90)
    ax.set_ylabel("CPU-ms per edit")
    ax.legend(fontsize=7, ncols=4)
    ax.set_title(f"serving cost per edit by process group — {results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@dataclasses.dataclass
class Variant:
    """One service configuration to measure: this checkout (or ``rev``'s) under extra environment."""

    label: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    rev: str | None = None  # a git revision: its service code, measured by this script's harness


def median_mode(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One mode whose every figure is the median of that figure over ``rounds`` (same ops, floors, levels)."""

    def median(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {key: median([v[key] for v in values]) for key in values[0]}
        if isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            return statistics.median(values)
        return values[0]

    return median(rounds)


def parse_variant(text: str) -> Variant:
    """``LABEL:NAME=VALUE,NAME=VALUE`` (environment overrides of this checkout)."""
    label, _, assignments = text.partition(":")
    env = dict(item.split("=", 1) for item in assignments.split(",") if item)
    return Variant(label, env)


def checkout(rev: str) -> Path:
    """A detached worktree of ``rev`` with this harness copied in (so both sides are measured alike)."""
    import shutil
    import tempfile

    from service.config import REPO_ROOT

    where = Path(tempfile.mkdtemp(prefix="serving-cost-")) / "tree"
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "--quiet", str(where), rev], check=True)
    for name in ("serving_cost.py", "serving_floor.py", "s3_delay.py"):
        shutil.copy(REPO_ROOT / "loadtests" / name, where / "loadtests" / name)
    return where


def measure_in_child(variant: Variant, tree: Path | None, auth: str, args: argparse.Namespace, base: int) -> dict[str, Any]:
    """``measure_mode`` in a child process (its own Ray and SeaweedFS), in ``tree`` when given."""
    spec = json.dumps(
        {"auth": auth, "ops": args.ops, "levels": args.concurrency, "requests": args.requests, "base": base, "s3_rtt_ms": args.s3_rtt_ms}
    )
    env = {**os.environ, **variant.env, "RAY_USAGE_STATS_ENABLED": "0"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    child = subprocess.run(
        [sys.executable, "-m", "loadtests.serving_cost", "--measure-mode", spec], cwd=tree, env=env, stdout=subprocess.PIPE, text=True
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"variant {variant.label} (auth {auth}) failed with exit {child.returncode}")
    return json.loads(lines[-1])


def measure_mode_main(spec_json: str) -> int:
    from loadtests.bench import BENCH_OPS

    spec = json.loads(spec_json)
    ops = [b for b in BENCH_OPS if b.name in spec["ops"].split(",")]
    levels = [int(c) for c in spec["levels"].split(",")]
    mode = measure_mode(spec["auth"], ops, levels, spec["requests"], spec["base"], spec.get("s3_rtt_ms", 0.0))
    print(json.dumps(mode), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="collage.sample", help="comma-separated family.op names of loadtests.bench")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--auth", default="on,off", help="on, off or both")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per level")
    parser.add_argument("--baseline", help="also measure the service of this git revision (same harness, interleaved)")
    parser.add_argument(
        "--variant", action="append", default=[], help="also measure this checkout under extra environment: LABEL:NAME=VALUE[,NAME=VALUE]"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every variant this many times, interleaved; "
        "the tables show each figure's median (a shared 2-core VM drifts by tens of percent)",
    )
    parser.add_argument(
        "--s3-rtt-ms",
        type=float,
        default=0.0,
        help="put SeaweedFS this many ms of round trip away (loadtests/s3_delay.py), as a remote S3 is; 0: on loopback",
    )
    parser.add_argument("--out", default="bench-out/serving-cost")
    parser.add_argument("--allow-busy", action="store_true", help="measure even while other Ray/SeaweedFS processes run")
    parser.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)  # internal: the load generator child
    parser.add_argument("--measure-mode", help=argparse.SUPPRESS)  # internal: one auth mode of one variant
    args = parser.parse_args(argv)
    if args.generate:
        return generator_main()
    if args.measure_mode:
        return measure_mode_main(args.measure_mode)

    from loadtests.bench import BENCH_OPS, write_report

    if not [b for b in BENCH_OPS if b.name in args.ops.split(",")]:
        parser.error(f"unknown ops {args.ops}; known: {[b.name for b in BENCH_OPS]}")
    busy = [p for p in psutil.process_iter() if ours(p)]
    if busy and not args.allow_busy:
        print("other Ray or SeaweedFS processes are running; stop them first (or --allow-busy):", file=sys.stderr)
        for p in busy[:10]:
            print(f"  {p.pid} {' '.join(p.cmdline())[:100]}", file=sys.stderr)
        return 2
    variants = [Variant(f"baseline {args.baseline}", rev=args.baseline)] if args.baseline else []
    variants += [parse_variant(v) for v in args.variant] + [Variant("this checkout")]
    trees = {v.label: checkout(v.rev) if v.rev else None for v in variants}
    results: dict[str, Any] = {
        "device": f"CPU {platform.machine()} ({os.cpu_count()} cores)",
        "requests": args.requests,
        "rounds": args.rounds,
        "s3_rtt_ms": args.s3_rtt_ms,
        "command": "python -m loadtests.serving_cost " + " ".join(argv if argv is not None else sys.argv[1:]),
        "variants": {v.label: {"env": v.env, "rev": v.rev, "modes": {}} for v in variants},
    }
    base = random.Random(time.time_ns()).randrange(10**8)
    try:
        for auth in args.auth.split(","):
            rounds: dict[str, list] = {v.label: [] for v in variants}
            for round_number in range(args.rounds):
                for variant in variants:  # interleaved, so a drift of the machine shows in every variant alike
                    print(f"--- {variant.label}, auth {auth}, round {round_number + 1}", file=sys.stderr, flush=True)
                    rounds[variant.label].append(measure_in_child(variant, trees[variant.label], auth, args, base))
                    base += 10**6
            for label, measured in rounds.items():
                results["variants"][label]["modes"][auth] = median_mode(measured)
                results["variants"][label].setdefault("rounds", {})[auth] = measured
    finally:
        from service.config import REPO_ROOT

        for tree in trees.values():
            if tree is not None:
                subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    results["after"] = [" ".join(p.cmdline())[:100] for p in psutil.process_iter() if ours(p)]  # should be empty
    write_report(args.out, "serving_cost", results, markdown(results), chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
