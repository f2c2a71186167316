"""The benchmark end to end on the tiny model (smoke variant), and the documented Locust command.

Checks that it runs and writes a well-formed report, not the figures (CI machines vary).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench import BenchConfig, run_bench, summarize
from loadtest.bench.__main__ import main as bench_main
from loadtest.bench.load import MissingTool, missing_wrk

REPO_ROOT = Path(__file__).resolve().parents[2]
STEP_KEYS = {"connections", "requests", "failures", "req_per_s", "texts_per_s", "p50_ms", "p99_ms"}
CPU_KEYS = {"machine_cpu_busy", "server_cpu_cores", "generator_cpu_cores", "generator"}


def step(connections, texts_per_s, p50=10, p99=20, failures=0, size=8):
    return {
        "connections": connections,
        "texts_per_s": texts_per_s,
        "req_per_s": texts_per_s / size,
        "p50_ms": p50,
        "p99_ms": p99,
        "failures": failures,
        "texts_per_request": size,
    }


def test_summary_computes_the_targets_from_the_steps():
    report = {
        "limit": {"texts_per_s": 100.0},
        "service": {
            "steps": {"8": [step(1, 40, p50=10), step(4, 90)], "1": [step(1, 50, size=1)]},
            "half_load": step(32, 45, p99=50),
        },
        "peer": {"steps": {"8": [step(4, 60)], "1": [step(4, 40, size=1)]}},
        "baseline": {"steps": {"8": [step(1, 10), step(4, 15, failures=2)], "1": []}},
        "baseline_per_text": {"steps": {"8": [step(1, 9), step(4, 12)]}},
        "torch_reference": {"batch_1_texts_per_s": 8.0, "batch_8_texts_per_s": 20.0},
        "variants": {"log-off": {"steps": {"8": [step(4, 93)]}}},
    }
    summary = summarize(report, (8, 1))
    targets = summary["targets"]
    assert targets["served_8_vs_limit"] == {"value": 0.9, "target": ">= 0.75", "ok": True}
    assert targets["served_1_vs_limit"] == {"value": 0.5, "target": ">= 0.5", "ok": True}
    assert targets["served_8_vs_peer"]["value"] == 1.5 and targets["served_8_vs_peer"]["ok"]
    assert targets["served_1_vs_peer"]["value"] == 1.25 and not targets["served_1_vs_peer"]["ok"]
    assert targets["p99_half_load_vs_unloaded_p50"]["value"] == 5.0
    assert not targets["p99_half_load_vs_unloaded_p50"]["ok"]
    assert targets["zero_failures"] == {
        "service": 0,
        "peer": 0,
        "baseline": 2,
        "baseline_per_text": 0,
        "ok": False,
    }
    info = summary["info"]
    assert info["speedup_vs_baseline"] == 6.0 and info["speedup_vs_baseline_per_text"] == 7.5
    assert info["speedup_ceiling_in_process"] == 5.0  # limit 100 / PyTorch 8-text 20
    assert info["log-off_8_vs_service"] == pytest.approx(93 / 90, abs=1e-3)


def test_without_wrk_the_benchmark_stops_before_measuring(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no wrk on it
    with pytest.raises(MissingTool, match=r"^wrk, the benchmark's load generator, is not on PATH"):
        run_bench(BenchConfig.smoke(out_dir=tmp_path, model_tag="no-such-model:1"))
    with pytest.raises(SystemExit) as exit_:
        bench_main(["--smoke", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "error: wrk, the benchmark's" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="session")
def wrk() -> None:
    """The smoke benchmark drives the servers with wrk. Without it the test skips, except in CI
    (`CI` set, as `.ci/run` does, which installs wrk), where it fails. Session-scoped, so that
    it runs before the session's model fixtures."""
    if why := missing_wrk():
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the smoke benchmark", pytrace=False)
        pytest.skip(why)


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.usefixtures("wrk")
def test_smoke_benchmark_writes_the_report(tiny_bento_model, tiny_trained_run_dir, tmp_path):
    cfg = BenchConfig.smoke(
        model_tag=str(tiny_bento_model),
        run_dir=tiny_trained_run_dir,
        out_dir=tmp_path,
        connections=(1, 2),
        duration_s=1,
        warmup_s=0,
        limit_texts=64,
        torch_texts=8,
        half_load_users=2,
        peer_settings={"workers": 1, "max_batch_size": 4, "batch_timeout": 0.005},
        variants={"log-line-per-request": {"ACCESS_LOG": "true"}},
    )
    report = run_bench(cfg)

    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"smoke.json", "smoke.md", "smoke.png"}
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"]))
    limit = saved["limit"]
    assert limit["texts_per_s"] == max(limit["grid"].values()) > 0
    assert limit["model"] == str(tiny_bento_model) and limit["best"] in limit["grid"]
    assert saved["torch_reference"]["batch_1_texts_per_s"] > 0
    assert saved["guard_cost"]["guard_us"] > 0
    for server in ("service", "peer", "baseline"):
        assert set(saved[server]["steps"]) == {"8", "1"}
        for steps in saved[server]["steps"].values():
            assert [s["connections"] for s in steps] == [1, 2]
            for s in steps:
                assert set(s) >= STEP_KEYS | CPU_KEYS
                assert s["requests"] > 0 and s["failures"] == 0, s
                assert s["server_cpu_cores"] > 0 and s["generator"] == "wrk"
    half = saved["service"]["half_load"]
    assert half["rate_per_user"] > 0 and half["generator"] == "locust"
    assert half["server_cpu_cores"] > 0 and half["failures"] == 0
    assert set(saved["baseline_per_text"]["steps"]) == {"8"}  # the headline size only
    variant = saved["variants"]["log-line-per-request"]
    assert [s["connections"] for s in variant["steps"]["8"]] == [2]
    assert set(saved["summary"]["targets"]) == {
        "served_8_vs_limit",
        "served_1_vs_limit",
        "served_8_vs_peer",
        "served_1_vs_peer",
        "p99_half_load_vs_unloaded_p50",
        "zero_failures",
    }
    assert saved["summary"]["targets"]["zero_failures"]["ok"]
    table = (tmp_path / "smoke.md").read_text()
    assert table.count("| service | 8 |") == 2 and table.count("| LitServe peer | 1 |") == 2
    assert table.count("| baseline, 1 text per pass | 8 |") == 2
    assert "(**the limit**)" in table and "Guard middleware" in table
    assert "![throughput" in table
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
@pytest.mark.server
def test_documented_locust_command_runs_clean(classify_server, tiny_trained_run_dir, tmp_path):
    """`locust -f loadtest/locustfile.py --headless ...` as in its docstring, 2 s, CSV stats."""
    locust = Path(sys.executable).parent / "locust"
    cmd = [str(locust), "-f", "loadtest/locustfile.py", "--headless", "-u", "4", "-r", "4"]
    cmd += ["-t", "2s", "--host", classify_server, "--csv", str(tmp_path / "run")]
    cmd += ["--data", str(tiny_trained_run_dir), "--texts-per-request", "1,3", "--only-summary"]
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "run_stats.csv") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    assert {"/classify [1 text]", "/classify [3 texts]"} <= set(rows)
    assert int(rows["Aggregated"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
