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
