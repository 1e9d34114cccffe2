"""The load-test and benchmark scripts run end to end against the test service (tiny sizes, no timing asserts)."""

from __future__ import annotations

import json

from loadtests import bench, job_priority, load


def test_locust_scenario_runs_headless_with_bounded_requests(service, tmp_path):
    rows = load.run_level(service.url, users=2, run_time="30s", scenario="collage.sample", max_requests=10, job_items=3, out=tmp_path)
    assert rows["edit collage.sample"]["requests"] > 0 and rows["Aggregated"]["failures"] == 0
    assert rows["Aggregated"]["requests"] <= 10 + 2, "the request bound stops the run (give or take requests in flight)"
    assert (tmp_path / "u2_stats.csv").exists() and (tmp_path / "u2_summary.json").exists()
    load.chart({2: rows}, tmp_path / "load.png", "test")
    assert (tmp_path / "load.png").stat().st_size > 1000


def test_locust_jobs_scenario_times_whole_jobs(service, tmp_path):
    rows = load.run_level(service.url, users=1, run_time="12s", scenario="jobs", max_requests=0, job_items=3, out=tmp_path)
    assert rows["job 3 items"]["requests"] >= 1 and rows["job 3 items"]["failures"] == 0
    assert rows["submit job"]["requests"] >= 1 and "edit collage.sample" not in rows


def test_bench_reports_raw_and_served_figures_per_op(service, tmp_path):
    assert (
        bench.main(
            [
                "--url",
                service.url,
                *"--ops collage.sample,inpaint.inpaint --requests 4 --concurrency 1,2 --batches 1,2 --raw-seconds 0.2 --out".split(),
                str(tmp_path),
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "bench.json").read_text())
    for op in ("collage.sample", "inpaint.inpaint"):
        entry = results["ops"][op]
        assert set(entry["raw"]) == {"1", "2"} and entry["raw_best"] > 0
        assert entry["served"]["2"]["images_per_s"] > 0 and entry["served"]["1"]["cached"] == 0
    assert "| `inpaint.inpaint` |" in (tmp_path / "bench.md").read_text()


def test_job_priority_measures_sync_latency_beside_a_job(service, tmp_path):
    assert job_priority.main(["--url", service.url, "--seconds", "2", "--job-items", "600", "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "job-priority.json").read_text())["runs"]
    assert runs["priority"]["sync_only"]["requests"] > 0 and runs["priority"]["sync_with_job"]["requests"] > 0
    assert runs["priority"]["job_items_per_s_alone"] > 0


def test_accel_compares_speed_options_against_fp32(service, tmp_path):
    from loadtests import accel

    assert accel.main(["--ops", "collage.sample", "--batch", "2", "--seconds", "0.2", "--rounds", "2", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "accel.json").read_text())["ops"]["collage.sample"]
    assert set(results) >= {"fp32", "fp32+channels_last", "bf16", "bf16+channels_last"}
    assert results["fp32"]["max_diff"] == 0 and results["bf16"]["max_diff"] > 0
    assert (tmp_path / "img" / "accel.png").exists()


def test_locust_stats_with_unfinished_request_names_are_read(tmp_path):
    import math

    csv_file = tmp_path / "u2_stats.csv"
    csv_file.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Requests/s,50%,95%,99%\n"
        "POST,edit collage.sample,10,0,61,4.5,61,80,90\n"
        "JOB,job 3 items,0,0,N/A,0.0,N/A,N/A,N/A\n"
    )
    rows = load.read_stats(csv_file)
    assert rows["edit collage.sample"] == {"requests": 10, "failures": 0, "per_s": 4.5, "p50_ms": 61.0, "p95_ms": 80.0, "p99_ms": 90.0}
    assert rows["job 3 items"]["requests"] == 0 and math.isnan(rows["job 3 items"]["p50_ms"])


def test_warmup_measures_first_bursts_and_steady_state_and_draws_them(service, tmp_path):
    from loadtests import warmup

    collage_sample = next(b for b in bench.BENCH_OPS if b.name == "collage.sample")
    measured = warmup.measure_op(service.url, collage_sample, {}, requests=4, base=7_000_000)
    assert [b["edits"] for b in measured["first_bursts"]] == list(warmup.BURSTS)
    assert all(b["slowest_ms"] > 0 for b in measured["first_bursts"]) and measured["c8_images_per_s"] > 0
    results = {
        "device": "test",
        "command": "python -m loadtests.warmup",
        "runs": {
            name: {"start_s": 1.0, "warmup_s": {"collage": 0.5}, "ops": {"collage.sample": measured}} for name in warmup.CONFIGURATIONS
        },
    }
    table = warmup.markdown(results)
    assert table.count("`collage.sample`") == len(warmup.CONFIGURATIONS) and "| compile + warm-up |" in table
    warmup.chart(results, tmp_path / "warmup.png")
    assert (tmp_path / "warmup.png").stat().st_size > 0


def test_inpaint_strategies_benchmark_keeps_the_outside_and_reports_each_strategy(tmp_path):
    from loadtests import inpaint_strategies

    assert inpaint_strategies.main(["--size", "320x240", "--hole", "30x40", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "inpaint-strategies.json").read_text())
    rows = results["strategies"]
    assert list(rows) == ["original", "crop", "resize"] and rows["original"]["psnr_hole_db"] == float("inf")
    assert rows["crop"]["model_pixels"] < rows["original"]["model_pixels"] and len(rows["crop"]["crop_boxes"]) == 1
    assert rows["resize"]["model_pixels"] == rows["original"]["model_pixels"]  # 320 px is under resize_limit: not enlarged
    assert "| `crop` |" in (tmp_path / "inpaint-strategies.md").read_text() and (tmp_path / "inpaint-strategies.png").stat().st_size > 1000


def test_serving_cost_report_splits_the_idle_background_from_the_marginal_path_and_the_latency():
    from loadtests import serving_cost

    idle = {group: 0.0 for group in serving_cost.GROUPS} | {"ray_system": 60.0, "ingress": 20.0, "s3": 500.0}  # CPU-ms per s
    row = {
        "requests": 100,
        "concurrency": 16,
        "edits_per_s": 100.0,
        "p50_ms": 150.0,
        "p99_ms": 300.0,
        "cpu_ms_per_edit": {group: 1.0 for group in serving_cost.GROUPS},
        "service_cpu_ms": 5.0,
        "generator_ms": 2.0,
        "path_cpu_ms": 3.0,
        "added_ms_p50": None,
        "mean_batch": 6.0,
        "edits_per_call": 4.0,
        "latency_parts_ms": {
            "ingress": 140.0,
            "storage": 4.5,
            "transit": 3.5,
            "queue": 90.0,
            "compute": 6.0,
            "encode": 0.3,
            "outside_ingress": 10.0,
        },
    }
    serving_cost.add_marginal(row, idle)
    assert row["idle_ms_per_edit"] == 0.8  # (60 + 20) CPU-ms/s of the service's groups over 100 edits/s; S3 is not the service
    assert abs(row["marginal_path_ms"] - 2.2) < 1e-9
    floor = {**row, "latency_parts_ms": {key: None for key in row["latency_parts_ms"]}}
    results = {
        "device": "CPU",
        "requests": 100,
        "command": "python -m loadtests.serving_cost",
        "variants": {"now": {"modes": {"on": {"ops": {"collage.sample": {"16": row}}, "floors": {"one-hop": {"16": floor}}}}}},
    }
    table = serving_cost.markdown(results)
    assert "| now | on | `collage.sample` | 16 | 100.0 | 150 / 300 |" in table and "| 0.80 | **2.20** |" in table
    assert "| now | on | `collage.sample` | 16 | 150.0 | 10.0 | 140.0 | 4.5 | 3.5 | 90.0 | 6.0 | 0.3 |" in table
    assert "floor one-hop | 16 | 150.0" not in table, "a floor has no timings of its own to split"


def test_scaling_measures_each_concurrency_and_reports_the_curve(service, tmp_path):
    """The load part of loadtests.scaling against the session's service (its cluster part, LocalCluster, is what
    tests/test_multinode.py runs), then its table and chart from those figures."""
    from loadtests import scaling

    collage_sample = next(b for b in bench.BENCH_OPS if b.name == "collage.sample")
    figures = scaling.measure_levels(service.url, collage_sample, {}, [1, 2], requests=4, base=8_000_000)
    assert set(figures) == {"1", "2"} and all(f["images_per_s"] > 0 and f["cached"] == 0 for f in figures.values())
    results = {
        "device": "test",
        "op": "collage.sample",
        "requests": 4,
        "concurrency": [1, 2],
        "command": "python -m loadtests.scaling",
        "variants": {
            variant: {"1": {"nodes": 1, "serving": 1, "served": figures}, "2": {"nodes": 2, "serving": 2, "served": figures}}
            for variant in scaling.VARIANTS
        },
    }
    table = scaling.markdown(results)
    rows = [line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip() in scaling.VARIANTS]
    assert [(v.strip(), n.strip()) for v, n in rows] == [(v, n) for v in scaling.VARIANTS for n in ("1", "2")]
    scaling.chart(results, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 1000
    assert scaling.cluster_env("collage", 4)["COLLAGE_FAMILY_OVERRIDES"] == '{"collage": {"replicas": 4}}'


def test_the_s3_delay_relay_holds_each_exchange_a_round_trip_and_keeps_bytes_in_order():
    import asyncio

    from loadtests import s3_delay

    held: list[float] = []  # each wait the relay asked for, on a clock that stands still

    async def hold(seconds: float) -> None:
        held.append(seconds)

    async def scenario():
        async def echo(reader, writer):
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        relay = await s3_delay.serve("127.0.0.1", target.sockets[0].getsockname()[1], rtt_s=0.08, clock=lambda: 100.0, sleep=hold)
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.sockets[0].getsockname()[1])
        writer.write(b"HEAD /bucket/key ")
        writer.write(b"HTTP/1.1\r\n\r\n")  # a second chunk right behind the first: still in order
        answer = b""
        while len(answer) < 29:
            answer += await reader.read(1024)
        writer.close()
        relay.close()
        target.close()
        return answer

    answer = asyncio.run(scenario())
    assert answer == b"HEAD /bucket/key HTTP/1.1\r\n\r\n"
    assert len(held) >= 2 and all(abs(seconds - 0.04) < 1e-9 for seconds in held), "half the round trip, each way, every chunk"
