"""The benchmark run: configure, measure the limit, drive each server, summarize the targets.

Servers bind to 127.0.0.1 on free ports and are always stopped; every step is bounded in time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.bench.config import BenchConfig
from loadtest.bench.limit import measure_limit, measure_torch
from loadtest.bench.load import locust_steps, require_wrk, write_bodies, wrk_step
from loadtest.bench.report import machine_info, write_report
from loadtest.servers import ServerProcess, baseline_command, bentoml_serve_command
from loadtest.traffic import load_labels, load_texts

SERVERS = {  # report key -> name in tables and plots
    "service": "service",
    "peer": "LitServe peer",
    "peer_leaf": "LitServe peer, this project's inference code",
    "baseline": "baseline",
    "baseline_per_text": "baseline, 1 text per pass",
}
TARGETS = {  # issue #16, every ratio measured in this one run
    "served_8_vs_limit": (">=", 0.75),
    "served_1_vs_limit": (">=", 0.5),
    "served_8_vs_peer": (">=", 1.3),
    "served_1_vs_peer": (">=", 1.3),
    "p99_half_load_vs_unloaded_p50": ("<=", 4.0),
}


def peer_command(model_dir: str | Path, settings: dict[str, Any]) -> list[str]:
    """The LitServe peer (`python -m loadtest.peer`) on 127.0.0.1:{port}."""
    cmd = [sys.executable, "-m", "loadtest.peer", "--model-dir", str(model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", "{port}"]
    for key, value in settings.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def warm_up(url: str, bodies: dict[int, Path], api_key: str | None, rounds: int = 5) -> None:
    """A few unmeasured requests of each size (first-call costs: allocations, lazy init)."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for path in bodies.values():
        for body in path.read_text().splitlines()[:rounds]:
            request = urllib.request.Request(url + "/classify", body.encode(), headers)
            with urllib.request.urlopen(request, timeout=60) as resp:
                resp.read()


def drive(
    server: ServerProcess,
    cfg: BenchConfig,
    bodies: dict[int, Path],
    labels: Sequence[str],
    sizes: Sequence[int],
    connections: Sequence[int],
    half_load: bool = False,
    api_key: str | None = None,
) -> dict[str, Any]:
    """Warm-up, the wrk ramp for each request size, then (optionally) the half-peak Poisson
    step from Locust."""
    warm_up(server.url, {s: bodies[s] for s in sizes}, api_key)
    result: dict[str, Any] = {"url": server.url, "ready_s": round(server.ready_s, 1), "steps": {}}
    for size in sizes:
        steps = result["steps"][str(size)] = []
        for n in connections:
            step = wrk_step(
                server.url,
                n,
                bodies[size],
                size,
                cfg.duration_s,
                cfg.warmup_s,
                server.proc.pid,
                api_key,
            )
            steps.append(step)
            print(f"  {size} text(s)/request, {_line(step)}", flush=True)
            _check_alive(server)
    if half_load:
        head = result["steps"][str(cfg.sizes[0])]
        peak_rps = max(s["req_per_s"] for s in head)
        rate = peak_rps / 2 / cfg.half_load_users
        (step,) = locust_steps(
            server.url,
            [cfg.half_load_users],
            cfg.half_load_duration_s,
            cfg.warmup_s,
            cfg.sizes[0],
            labels,
            cfg.texts_source(),
            rate,
            server.proc.pid,
            api_key,
        )
        result["half_load"] = {"target_req_per_s": round(peak_rps / 2, 2), **step}
        print(f"  half load ({peak_rps / 2:.1f} req/s, Poisson), {_line(step)}", flush=True)
        _check_alive(server)
    return result


def _line(step: dict[str, Any]) -> str:
    return (
        f"{step['connections']:>3} conns: {step['texts_per_s']:8.1f} texts/s "
        f"{step['req_per_s']:7.1f} req/s  p50 {step['p50_ms']} p99 {step['p99_ms']} ms  "
        f"failures {step['failures']}  CPU: machine {_pct(step.get('machine_cpu_busy'))}, "
        f"server {step.get('server_cpu_cores')}, {step.get('generator')} "
        f"{step.get('generator_cpu_cores')} cores"
    )


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def _check_alive(server: ServerProcess) -> None:
    if server.proc.poll() is not None:
        raise RuntimeError(f"server died during the benchmark:\n{server.output()[-3000:]}")


def run_bench(cfg: BenchConfig, command: str | None = None) -> dict[str, Any]:
    """Measure everything, write reports/<name>.{json,md,png}; returns the report.

    Raises `MissingTool` at once, before any measurement, when wrk is not installed."""
    require_wrk()
    import bentoml

    from loadtest.bench.middleware_cost import measure_guard_cost

    started = time.monotonic()
    report: dict[str, Any] = {
        "command": command,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        "machine": machine_info(),
        "load_average": {"start": os.getloadavg()},
    }
    texts = load_texts(cfg.texts_source())
    source = cfg.texts_source()
    labels = load_labels(source if source and source.is_dir() else cfg.run_dir)
    report["texts"] = {"source": str(source or "default"), "count": len(texts)}
    model_dir = bentoml.models.get(cfg.model_tag).path
    api_key = cfg.service_env.get("API_KEY")

    print(f"limit: in-process ONNX Runtime on {cfg.limit_texts} texts", flush=True)
    report["limit"] = measure_limit(
        cfg.model_tag, texts, cfg.service_env, cfg.limit_texts, cfg.limit_batch_sizes, cfg.seed
    )
    print(f"  best: {report['limit']['best']}, {report['limit']['texts_per_s']} texts/s")
    report["guard_cost"] = measure_guard_cost()
    print(f"  guard middleware: {report['guard_cost']}", flush=True)
    run_model = Path(cfg.run_dir) / "model"
    if cfg.baseline:
        print(f"reference: PyTorch FP32 on {cfg.torch_texts} texts", flush=True)
        report["torch_reference"] = measure_torch(
            run_model, texts, cfg.torch_texts, threads=cfg.baseline_threads
        )

    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as tmp:
        bodies = {
            s: write_bodies(texts, s, Path(tmp) / f"{s}.jsonl", seed=cfg.seed) for s in cfg.sizes
        }
        env = {"MODEL_TAG": cfg.model_tag, **cfg.service_env}
        print(f"service: bentoml serve, env {env}", flush=True)
        report["load_average"]["service"] = os.getloadavg()
        with ServerProcess(bentoml_serve_command(), env=env) as server:
            report["service"] = {
                "env": env,
                **drive(server, cfg, bodies, labels, cfg.sizes, cfg.connections, True, api_key),
            }
        for name, overrides in cfg.variants.items():
            print(f"service variant {name}: {overrides}", flush=True)
            with ServerProcess(bentoml_serve_command(), env={**env, **overrides}) as server:
                report.setdefault("variants", {})[name] = {
                    "env": overrides,
                    **drive(
                        server,
                        cfg,
                        bodies,
                        labels,
                        cfg.sizes,
                        [cfg.peak_connections],
                        api_key=api_key,
                    ),
                }
        if cfg.peer:
            print(f"peer: LitServe, {cfg.peer_settings}", flush=True)
            command = peer_command(model_dir, cfg.peer_settings)
            with ServerProcess(command, ready_path="/health") as server:
                report["peer"] = {
                    "settings": cfg.peer_settings,
                    **drive(server, cfg, bodies, labels, cfg.sizes, cfg.connections),
                }
        if cfg.peer and cfg.peer_leaf:
            settings = {**cfg.peer_settings, "inference": "leaf"}
            print(f"peer with this project's inference code: {settings}", flush=True)
            with ServerProcess(peer_command(model_dir, settings), ready_path="/health") as server:
                report["peer_leaf"] = {
                    "settings": settings,
                    **drive(server, cfg, bodies, labels, cfg.sizes, [cfg.peak_connections]),
                }
        if cfg.baseline:
            print(f"baseline: FastAPI + transformers pipeline from {run_model}", flush=True)
            with ServerProcess(baseline_command(run_model, cfg.baseline_threads)) as server:
                report["baseline"] = drive(server, cfg, bodies, labels, cfg.sizes, cfg.connections)
        if cfg.baseline and cfg.per_text_baseline:
            print("baseline, one forward pass per text", flush=True)
            command = baseline_command(run_model, cfg.baseline_threads, batching="text")
            with ServerProcess(command) as server:
                report["baseline_per_text"] = drive(
                    server, cfg, bodies, labels, cfg.sizes[:1], cfg.connections
                )

    report["load_average"]["end"] = os.getloadavg()
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["summary"] = summarize(report, cfg.sizes)
    write_report(report, Path(cfg.out_dir), cfg.name, SERVERS)
    return report


def summarize(report: dict[str, Any], sizes: Sequence[int]) -> dict[str, Any]:
    """Peaks, ratios and the targets, from the measured steps."""
    head = str(sizes[0])
    limit = report["limit"]["texts_per_s"]
    peaks = {
        server: {size: _peak(steps) for size, steps in report[server]["steps"].items()}
        for server in SERVERS
        if server in report
    }
    summary: dict[str, Any] = {"limit_texts_per_s": limit, "peak_texts_per_s": peaks}
    service = peaks["service"]
    ratios: dict[str, float | None] = {}
    for size in ("8", "1"):
        if size in service:
            ratios[f"served_{size}_vs_limit"] = service[size] / limit if limit else None
            peer = peaks.get("peer", {}).get(size)
            if peer:
                ratios[f"served_{size}_vs_peer"] = service[size] / peer
    unloaded = next((s for s in report["service"]["steps"][head] if s["connections"] == 1), None)
    half = report["service"].get("half_load")
    if unloaded and half and unloaded["p50_ms"]:
        ratios["p99_half_load_vs_unloaded_p50"] = half["p99_ms"] / unloaded["p50_ms"]
        summary["unloaded_p50_ms"] = unloaded["p50_ms"]
        summary["half_load_p99_ms"] = half["p99_ms"]
    targets = {}
    for key, (op, goal) in TARGETS.items():
        if ratios.get(key) is not None:
            value = ratios[key]
            ok = value >= goal if op == ">=" else value <= goal
            targets[key] = {"value": round(value, 3), "target": f"{op} {goal}", "ok": ok}
    info = {}
    for size, peak in peaks.get("peer_leaf", {}).items():
        if service.get(size) and peak:
            info[f"served_{size}_vs_peer_with_this_inference_code"] = round(service[size] / peak, 3)
    for other in ("baseline", "baseline_per_text"):
        if peaks.get(other, {}).get(head):
            info[f"speedup_vs_{other}"] = round(service[head] / peaks[other][head], 2)
    ref = report.get("torch_reference", {}).get("batch_8_texts_per_s")
    if ref:  # the speedup to expect when both serve at their in-process speed
        info["speedup_ceiling_in_process"] = round(limit / ref, 2)
    for name, variant in report.get("variants", {}).items():
        for size, steps in variant["steps"].items():
            main = next(
                (
                    s
                    for s in report["service"]["steps"][size]
                    if s["connections"] == steps[0]["connections"]
                ),
                None,
            )
            if main and main["texts_per_s"]:
                info[f"{name}_{size}_vs_service"] = round(
                    steps[0]["texts_per_s"] / main["texts_per_s"], 3
                )
    failures = {server: _failures(report[server]) for server in SERVERS if server in report}
    targets["zero_failures"] = {**failures, "ok": not any(failures.values())}
    summary["targets"] = targets
    summary["info"] = info
    return summary


def _peak(steps: Sequence[dict[str, Any]]) -> float:
    """The highest texts/s of a ramp (0 for no steps)."""
    return max((s["texts_per_s"] for s in steps), default=0.0)


def _failures(server_result: dict[str, Any]) -> int:
    steps = [s for size in server_result["steps"].values() for s in size]
    steps += [server_result["half_load"]] if "half_load" in server_result else []
    return sum(s["failures"] for s in steps)
