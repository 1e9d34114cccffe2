"""Run the Locust scenarios headless at several concurrencies; CSV per level, one table, one chart.

    python -m loadtests.load [--url URL] [--scenario mixed|collage.sample,...|jobs|mixed,jobs]
                             [--users 1,8,32] [--run-time 20s] [--max-requests 0] [--out load-out]

Without --url the service is started locally and stopped afterwards. For each user count (closed
loop: concurrency = users) it runs ``locust -f loadtests/locustfile.py --headless`` with that many
users for --run-time (and at most --max-requests requests), keeps Locust's CSVs in
``<out>/u<N>_stats.csv`` … and the final figures in ``<out>/u<N>_summary.json``, and at the end
writes ``<out>/load.md`` (throughput, p50/p95/p99 and failures per op and concurrency) and
``<out>/load.png`` (throughput and latency vs concurrency).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def _number(cell: str) -> float:
    """A Locust CSV figure; 'N/A' (a request name with no finished request yet) is NaN."""
    try:
        return float(cell)
    except (TypeError, ValueError):
        return float("nan")


def run_level(url: str, users: int, run_time: str, scenario: str, max_requests: int, job_items: int, out: Path) -> dict[str, dict]:
    """One headless Locust run; its stats per request name (plus 'Aggregated')."""
    prefix = out / f"u{users}"
    summary = Path(f"{prefix}_summary.json")
    env = {
        **os.environ,
        "COLLAGE_LOAD_OPS": scenario,
        "COLLAGE_LOAD_MAX_REQUESTS": str(max_requests),
        "COLLAGE_LOAD_JOB_ITEMS": str(job_items),
        "COLLAGE_LOAD_SUMMARY": str(summary),
    }
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    command += ["-u", str(users), "-r", str(users), "-t", run_time, "--stop-timeout", "30", "--host", url]
    command += ["--csv", str(prefix), "--exit-code-on-error", "0"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    if completed.returncode != 0:
        raise RuntimeError(f"locust failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    # The summary, not the CSV: Locust rewrites the CSV once a second and not at exit (see locustfile).
    rows = json.loads(summary.read_text())
    return {name: {key: float("nan") if value is None else value for key, value in row.items()} for name, row in rows.items()}


def read_stats(path: Path) -> dict[str, dict]:
    """Locust's ``*_stats.csv``: figures per request name (and 'Aggregated')."""
    rows = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "per_s": _number(row["Requests/s"]),
                "p50_ms": _number(row["50%"]),
                "p95_ms": _number(row["95%"]),
                "p99_ms": _number(row["99%"]),
            }
    return rows


def chart(levels: dict[int, dict[str, dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = sorted(levels)
    names = sorted({name for rows in levels.values() for name in rows if name.startswith(("edit ", "job "))})  # not the polls
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    edits_per_s = [sum(r["per_s"] for n, r in levels[u].items() if n.startswith("edit ")) for u in users]
    left.plot(users, edits_per_s, marker="o", color="black", lw=2, label="all synchronous edits")
    for k, name in enumerate(names):
        colour = f"C{k % 10}"
        left.plot(
            users,
            [levels[u].get(name, {}).get("per_s", float("nan")) for u in users],
            marker="o",
            color=colour,
            lw=1,
            label=name.replace("edit ", ""),
        )
        for quantile, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
            right.plot(
                users,
                [levels[u].get(name, {}).get(quantile, float("nan")) for u in users],
                style,
                color=colour,
                marker=".",
                label=f"{name.replace('edit ', '')} {quantile[:3]}" if quantile == "p50_ms" else None,
            )
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent users (closed loop)")
    left.set_ylabel("requests / s")
    left.legend(fontsize=7)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("concurrent users")
    right.set_ylabel("latency ms (solid p50, dashed p95, dotted p99)")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(levels: dict[int, dict[str, dict]]) -> str:
    lines = ["| users | request | requests | failures | req/s | p50 ms | p95 ms | p99 ms |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for users in sorted(levels):
        for name, r in sorted(levels[users].items(), key=lambda item: (item[0] == "Aggregated", item[0])):
            lines.append(
                f"| {users} | {name} | {r['requests']} | {r['failures']} | {r['per_s']:.1f} | {r['p50_ms']:.0f} | "
                f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="running service; default: start one locally")
    parser.add_argument("--scenario", default="mixed", help="mixed | family.op[,family.op…] | jobs | mixed,jobs")
    parser.add_argument("--users", default="1,8,32", help="concurrency levels (Locust users)")
    parser.add_argument("--run-time", default="20s", help="duration per level (Locust time string)")
    parser.add_argument("--max-requests", type=int, default=0, help="stop a level after this many requests (0 = no bound)")
    parser.add_argument("--job-items", type=int, default=20, help="edits per job in the jobs scenario")
    parser.add_argument("--out", default="load-out")
    parser.add_argument("--replot", help="only redraw the chart of a load.json written earlier (into its folder)")
    args = parser.parse_args(argv)
    if args.replot:
        saved = json.loads(Path(args.replot).read_text())
        chart(
            {int(u): rows for u, rows in saved["levels"].items()},
            Path(args.replot).with_name("load.png"),
            f"Locust, scenario {saved['scenario']}, {saved['run_time']} per level",
        )
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    service, url = None, args.url
    if url is None:
        from service.runtime import LocalService

        print("starting a local service …", flush=True)
        service = LocalService().start()
        url = service.url
    levels: dict[int, dict[str, dict]] = {}
    try:
        for users in [int(u) for u in args.users.split(",")]:
            print(f"locust: {users} users, {args.run_time}, scenario {args.scenario} …", flush=True)
            levels[users] = run_level(url, users, args.run_time, args.scenario, args.max_requests, args.job_items, out)
            total = levels[users].get("Aggregated", {})
            print(
                f"  {total.get('per_s', 0):.1f} req/s, p50 {total.get('p50_ms', 0):.0f} ms, failures {total.get('failures', 0)}", flush=True
            )
    finally:
        if service is not None:
            service.stop()
    text = table(levels)
    print("\n" + text)
    (out / "load.md").write_text(text + "\n")
    (out / "load.json").write_text(json.dumps({"scenario": args.scenario, "run_time": args.run_time, "levels": levels}, indent=2) + "\n")
    chart(levels, out / "load.png", f"Locust, scenario {args.scenario}, {args.run_time} per level")
    print(f"wrote {out}/load.md, load.json, load.png and Locust's CSVs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
