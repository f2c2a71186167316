"""Benchmark /classify against its own limit and a FastAPI + PyTorch baseline, in one run.

    python -m loadtest.bench                 # make bench: the real model, ~8 minutes
    python -m loadtest.bench --smoke         # make bench-smoke: 2 short steps, reports/smoke/

1. Limit: the service's own `Classifier.predict` (ONNX Runtime INT8, same threads, batches of
   MAX_BATCH_SIZE texts, length-sorted sub-batches) in-process on the same texts; and PyTorch
   FP32 one text at a time (the baseline's way) for reference.
2. `bentoml serve service:SentimentClassifier` driven by the locustfile through a ramp of
   concurrent users, with 8-text requests (the headline) and 1-text requests, plus one step of
   Poisson arrivals at half the peak load.
3. The same ramp against the baseline (`python -m loadtest.baseline`, uvicorn, 1 worker): one
   forward pass per request; then, for the headline request size, the baseline the way most code
   calls a pipeline (`--batching text`: one forward pass per text).
4. reports/<name>.json (every figure), <name>.md (tables) and <name>.png (plot).
Servers bind to 127.0.0.1 on free ports and are always stopped; every step is bounded in time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.cli import config_from_args
from loadtest.servers import ServerProcess, baseline_command, bentoml_serve_command
from loadtest.traffic import DEFAULT_RUN_DIR, REPO_ROOT, load_labels, load_texts

SERVERS = {  # report key -> name in tables and plots
    "service": "service",
    "baseline": "baseline",
    "baseline_per_text": "baseline, 1 text per pass",
}
TARGETS = {
    "served_vs_limit": 0.85,  # peak served texts/s >= 85% of the in-process limit
    "speedup_vs_baseline": 6.0,  # peak served texts/s >= 6x the baseline's
    "p99_half_load_vs_unloaded_p50": 4.0,  # p99 at half the peak load <= 4x unloaded p50
}


@dataclasses.dataclass
class BenchConfig:
    """What to measure; `BenchConfig.smoke()` is the short variant."""

    model_tag: str = "sentiment-classifier:latest"  # served model (BentoML store)
    run_dir: Path = DEFAULT_RUN_DIR  # the same fine-tuned model for the baseline: run_dir/model
    data: Path | None = None  # texts; default: run_dir's data, else the cached corpus
    out_dir: Path = REPO_ROOT / "reports"
    name: str = "bench"  # report file stem
    users: tuple[int, ...] = (1, 4, 16, 32, 64)  # concurrent users per step
    sizes: tuple[int, ...] = (8, 1)  # texts per request, the first is the headline
    duration_s: float = 15.0  # measured seconds per step
    warmup_s: float = 3.0  # unmeasured seconds per step
    half_load_users: int = 32  # users sharing the half-peak Poisson load
    half_load_duration_s: float = 40.0  # longer than a ramp step: p99 from ~1,000 requests
    limit_texts: int = 1024  # texts for the in-process limit
    torch_texts: int = 160  # texts for the PyTorch reference
    baseline: bool = True
    baseline_threads: int | None = None  # torch threads of the baseline; None: torch's default
    per_text_baseline: bool = True  # also the baseline with one forward pass per text
    service_env: dict[str, str] = dataclasses.field(default_factory=dict)  # WORKERS=2, ...
    seed: int = 0

    @classmethod
    def smoke(cls, **overrides: Any) -> BenchConfig:
        short = {
            "name": "smoke",
            "out_dir": REPO_ROOT / "reports" / "smoke",
            "users": (1, 4),
            "duration_s": 2.0,
            "warmup_s": 0.5,
            "half_load_users": 4,
            "half_load_duration_s": 2.0,
            "limit_texts": 128,
            "torch_texts": 16,
        }
        return cls(**{**short, **overrides})

    def texts_source(self) -> Path | None:
        if self.data is not None:
            return Path(self.data)
        has_data = (Path(self.run_dir) / "data" / "test.jsonl").is_file()
        return Path(self.run_dir) if has_data else None


# ---- measurements ---------------------------------------------------------------------------


def bench_predict(classifier, texts: Sequence[str], batch_size: int, repeat: int = 3) -> dict:
    """In-process texts/s of `predict`, length-sorted sub-batches vs input order (best of N)."""
    result = {}
    for sort in (True, False):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(0, len(texts), batch_size):
                classifier.predict(texts[i : i + batch_size], sort=sort)
            best = min(best, time.perf_counter() - start)
        result["sorted" if sort else "unsorted"] = len(texts) / best
    return result


def measure_limit(
    model_tag: str, texts: Sequence[str], service_env: dict[str, str], n: int, seed: int = 0
) -> dict[str, Any]:
    """In-process texts/s of the service's own inference code, one process, all CPUs' threads
    and the service's threads, best of both."""
    import bentoml

    from serving.inference import Classifier, available_cpus
    from serving.settings import ServiceSettings

    cfg = ServiceSettings.from_env({**os.environ, **service_env, "MODEL_TAG": model_tag})
    model = bentoml.models.get(model_tag)
    sample = random.Random(seed).choices(list(texts), k=n)
    by_threads, classifiers = {}, {}
    for threads in sorted({cfg.session_threads, available_cpus()}):
        classifier = Classifier.from_dir(
            model.path, threads, cfg.sub_batch_size, cfg.sub_batch_tokens, cfg.ort_spinning
        )
        classifier.predict(sample[: cfg.max_batch_size])  # warm-up
        by_threads[threads] = bench_predict(classifier, sample, cfg.max_batch_size, repeat=3)
        classifiers[threads] = classifier
    threads = max(by_threads, key=lambda t: by_threads[t]["sorted"])
    batched, classifier = by_threads[threads], classifiers[threads]
    short = sample[: max(n // 4, 8)]
    per_request = {
        size: bench_predict(classifier, short, size, repeat=1)["sorted"] for size in (8, 1)
    }
    tokens = [len(e.ids) for e in classifier.encode(sample)]
    meta = model.info.metadata
    return {
        "model": str(model.tag),
        "run_id": meta.get("run_id"),
        "data_fingerprint": meta.get("data_fingerprint"),
        "quantized": json.loads((Path(model.path) / "model_config.json").read_text()).get(
            "quantized"
        ),
        "threads": threads,
        "texts_per_s_by_threads": {str(t): round(r["sorted"], 1) for t, r in by_threads.items()},
        "workers": cfg.workers,
        "batch_size": cfg.max_batch_size,
        "sub_batch_size": cfg.sub_batch_size,
        "texts": n,
        "tokens_mean": round(sum(tokens) / len(tokens), 1),
        "tokens_max": max(tokens),
        "texts_per_s": round(batched["sorted"], 1),
        "unsorted_texts_per_s": round(batched["unsorted"], 1),
        "batch_of_request_texts_per_s": {str(k): round(v, 1) for k, v in per_request.items()},
    }


def measure_torch(
    model_dir: Path, texts: Sequence[str], n: int, seed: int = 0, threads: int | None = None
) -> dict[str, Any]:
    """PyTorch FP32 texts/s through the baseline's own pipeline: 1 text, then 8 texts per call."""
    from loadtest.baseline import BaselineModel

    model = BaselineModel(model_dir, threads=threads)
    sample = random.Random(seed + 1).choices(list(texts), k=n)
    model.predict(sample[:8])  # warm-up
    result: dict[str, Any] = {"model_dir": str(model_dir), "texts": n}
    for size in (1, 8):
        start = time.perf_counter()
        for i in range(0, n, size):
            model.predict(sample[i : i + size])
        result[f"batch_{size}_texts_per_s"] = round(n / (time.perf_counter() - start), 1)
    import torch

    result["threads"] = torch.get_num_threads()
    del model
    gc.collect()
    return result


def ramp(
    url: str,
    users: Sequence[int],
    cfg: BenchConfig,
    size: int,
    labels: Sequence[str],
    rate_per_user: float = 0.0,
) -> list[dict[str, Any]]:
    """`python -m loadtest.ramp` in a child process (Locust patches its interpreter)."""
    with tempfile.TemporaryDirectory(prefix="loadtest-ramp-") as tmp:
        out = Path(tmp) / "steps.json"
        source = cfg.texts_source()
        cmd = [
            sys.executable,
            "-m",
            "loadtest.ramp",
            *("--host", url, "--users", ",".join(map(str, users))),
            *("--duration", str(cfg.duration_s), "--warmup", str(cfg.warmup_s)),
            *("--texts-per-request", str(size), "--labels", ",".join(labels)),
            *("--rate-per-user", str(rate_per_user), "--out", str(out)),
            *(("--data", str(source)) if source else ()),
        ]
        budget = len(users) * (cfg.duration_s + cfg.warmup_s + 40) + 60
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=budget, check=False
        )
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"load ramp failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        steps = json.loads(out.read_text())
    for step in steps:
        print(f"  {size} text(s)/request, {_step_line(step)}", flush=True)
    return steps


def _step_line(step: dict[str, Any]) -> str:
    return (
        f"{step['users']:>3} users: {step['texts_per_s']:8.1f} texts/s {step['req_per_s']:7.1f} "
        f"req/s  p50 {step['p50_ms']} p95 {step['p95_ms']} p99 {step['p99_ms']} ms  "
        f"failures {step['failures']}"
    )


def warm_up(url: str, texts: Sequence[str], sizes: Sequence[int], rounds: int = 5) -> None:
    """A few unmeasured requests of each size (first-call costs: allocations, lazy init)."""
    for size in sizes:
        body = json.dumps({"texts": list(texts[:size])}).encode()
        for _ in range(rounds):
            request = urllib.request.Request(
                url + "/classify", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=60) as resp:
                resp.read()


def drive(
    server: ServerProcess,
    cfg: BenchConfig,
    texts: Sequence[str],
    labels: Sequence[str],
    half_load: bool,
    sizes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Warm-up, the ramp for each request size, then (optionally) the half-peak-load step."""
    sizes = cfg.sizes if sizes is None else sizes
    warm_up(server.url, texts, sizes)
    result: dict[str, Any] = {"url": server.url, "ready_s": round(server.ready_s, 1), "steps": {}}
    for size in sizes:
        result["steps"][str(size)] = ramp(server.url, cfg.users, cfg, size, labels)
        _check_alive(server)
    if half_load:
        head = result["steps"][str(cfg.sizes[0])]
        peak_rps = max(s["req_per_s"] for s in head)
        rate = peak_rps / 2 / cfg.half_load_users
        longer = dataclasses.replace(cfg, duration_s=cfg.half_load_duration_s)
        step = ramp(server.url, [cfg.half_load_users], longer, cfg.sizes[0], labels, rate)[0]
        result["half_load"] = {"target_req_per_s": round(peak_rps / 2, 2), **step}
        _check_alive(server)
    return result


def _check_alive(server: ServerProcess) -> None:
    if server.proc.poll() is not None:
        raise RuntimeError(f"server died during the benchmark:\n{server.output()[-3000:]}")


# ---- the whole run --------------------------------------------------------------------------


def run_bench(cfg: BenchConfig, command: str | None = None) -> dict[str, Any]:
    """Measure everything, write reports/<name>.{json,md,png}; returns the report."""
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": command,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": _jsonable(dataclasses.asdict(cfg)),
        "machine": machine_info(),
        "load_average": {"start": os.getloadavg()},
    }
    texts = load_texts(cfg.texts_source())
    source = cfg.texts_source()
    labels = load_labels(source if source and source.is_dir() else cfg.run_dir)
    report["texts"] = {"source": str(source or "default"), "count": len(texts)}

    print(f"limit: in-process ONNX Runtime on {cfg.limit_texts} texts", flush=True)
    report["limit"] = measure_limit(cfg.model_tag, texts, cfg.service_env, cfg.limit_texts)
    print(f"  {report['limit']['texts_per_s']} texts/s", flush=True)
    model_dir = Path(cfg.run_dir) / "model"
    if cfg.baseline:
        print(f"reference: PyTorch FP32 on {cfg.torch_texts} texts", flush=True)
        report["torch_reference"] = measure_torch(
            model_dir, texts, cfg.torch_texts, threads=cfg.baseline_threads
        )
        print(f"  {report['torch_reference']}", flush=True)

    report["load_average"]["service"] = os.getloadavg()
    env = {"MODEL_TAG": cfg.model_tag, **cfg.service_env}
    print(f"service: bentoml serve, env {env}", flush=True)
    with ServerProcess(bentoml_serve_command(), env=env) as server:
        report["service"] = {"env": env, **drive(server, cfg, texts, labels, half_load=True)}
    if cfg.baseline:
        report["load_average"]["baseline"] = os.getloadavg()
        print(f"baseline: FastAPI + transformers pipeline from {model_dir}", flush=True)
        command = baseline_command(model_dir, cfg.baseline_threads)
        with ServerProcess(command) as server:
            report["baseline"] = drive(server, cfg, texts, labels, half_load=False)
    if cfg.baseline and cfg.per_text_baseline:
        print("baseline, one forward pass per text (the pipeline's default call)", flush=True)
        command = baseline_command(model_dir, cfg.baseline_threads, batching="text")
        with ServerProcess(command) as server:
            report["baseline_per_text"] = drive(
                server, cfg, texts, labels, half_load=False, sizes=cfg.sizes[:1]
            )

    report["load_average"]["end"] = os.getloadavg()
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["summary"] = summarize(report, cfg.sizes)
    write_report(report, Path(cfg.out_dir), cfg.name)
    return report


def summarize(report: dict[str, Any], sizes: Sequence[int]) -> dict[str, Any]:
    """Peaks, ratios and the targets, from the measured steps."""
    head = str(sizes[0])
    service = report["service"]["steps"]
    limit = report["limit"]["texts_per_s"]
    summary: dict[str, Any] = {"headline_texts_per_request": sizes[0], "limit_texts_per_s": limit}
    peaks = {size: _peak(steps) for size, steps in service.items()}
    summary["service_peak_texts_per_s"] = peaks
    served = peaks[head]
    targets: dict[str, Any] = {}
    ratio = served / limit if limit else 0.0
    targets["served_vs_limit"] = _target(ratio, TARGETS["served_vs_limit"], ">=")
    if "1" in peaks and head != "1":
        summary["one_text_vs_headline"] = round(peaks["1"] / served, 3) if served else None
    unloaded = next((s for s in service[head] if s["users"] == 1), None)
    half = report["service"].get("half_load")
    if unloaded and half and unloaded["p50_ms"]:
        value = half["p99_ms"] / unloaded["p50_ms"]
        targets["p99_half_load_vs_unloaded_p50"] = _target(
            value, TARGETS["p99_half_load_vs_unloaded_p50"], "<="
        ) | {"unloaded_p50_ms": unloaded["p50_ms"], "half_load_p99_ms": half["p99_ms"]}
    failures = {"service": _failures(report["service"])}
    if "baseline" in report:
        base = report["baseline"]["steps"]
        base_peaks = {size: _peak(steps) for size, steps in base.items()}
        summary["baseline_peak_texts_per_s"] = base_peaks
        speedup = served / base_peaks[head] if base_peaks.get(head) else 0.0
        targets["speedup_vs_baseline"] = _target(speedup, TARGETS["speedup_vs_baseline"], ">=")
        failures["baseline"] = _failures(report["baseline"])
        ref = report.get("torch_reference", {}).get("batch_8_texts_per_s")
        if ref:  # the speedup to expect when both serve at their in-process speed
            summary["speedup_ceiling_in_process"] = round(limit / ref, 3)
    if "baseline_per_text" in report:
        peak = _peak(report["baseline_per_text"]["steps"].get(head, []))
        summary["baseline_per_text_peak_texts_per_s"] = peak
        targets["speedup_vs_per_text_baseline"] = _target(
            served / peak if peak else 0.0, TARGETS["speedup_vs_baseline"], ">="
        )
        failures["baseline_per_text"] = _failures(report["baseline_per_text"])
    targets["zero_failures"] = {**failures, "ok": not any(failures.values())}
    summary["targets"] = targets
    return summary


def _peak(steps: Sequence[dict[str, Any]]) -> float:
    """The highest texts/s of a ramp (0 for no steps)."""
    return max((s["texts_per_s"] for s in steps), default=0.0)


def _target(value: float, target: float, op: str) -> dict[str, Any]:
    ok = value >= target if op == ">=" else value <= target
    return {"value": round(value, 3), "target": f"{op} {target}", "ok": ok}


def _failures(server_result: dict[str, Any]) -> int:
    steps = [s for size in server_result["steps"].values() for s in size]
    steps += [server_result["half_load"]] if "half_load" in server_result else []
    return sum(s["failures"] for s in steps)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return {
        "cpu": cpu,
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# ---- report ---------------------------------------------------------------------------------


def write_report(report: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """<name>.json, <name>.md and <name>.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    paths["md"].write_text(markdown(report, paths["png"].name))
    plot(report, paths["png"])
    return paths


def markdown(report: dict[str, Any], plot_name: str) -> str:
    """The report as Markdown: setup, targets, limit, and one row per measured step."""
    s, limit = report["summary"], report["limit"]
    load = report["load_average"]
    lines = [
        f"# /classify benchmark ({report['started_at']})",
        "",
        (
            f"Command: `{report['command'] or 'run_bench(...)'}` ({report['wall_s']} s). "
            f"Machine: {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), "
            f"load average {_load(load['start'])} at start, {_load(load['end'])} at the end."
        ),
        (
            f"Model `{limit['model']}` (run {limit['run_id']}, quantized={limit['quantized']}); "
            f"service env `{report['service']['env']}`; {report['texts']['count']} texts from "
            f"`{report['texts']['source']}` ({limit['tokens_mean']} tokens on average, "
            f"max {limit['tokens_max']}). Load generator: Locust on the same machine."
        ),
        "",
        "| target | value | goal | met |",
        "|---|---:|---:|:---:|",
    ]
    for key, t in s["targets"].items():
        if key == "zero_failures":
            value = ", ".join(f"{k} {v}" for k, v in t.items() if k != "ok")
            lines.append(f"| failed requests | {value} | 0 | {_ok(t['ok'])} |")
        else:
            lines.append(
                f"| {key.replace('_', ' ')} | {t['value']} | {t['target']} | {_ok(t['ok'])} |"
            )
    if "speedup_ceiling_in_process" in s:
        lines += [
            "",
            (
                f"Expected speedup: the in-process ONNX limit over in-process PyTorch with 8 "
                f"texts per call is {s['speedup_ceiling_in_process']}x, the speedup over the "
                f"(batching) baseline at 8 texts/request when both serve at their in-process "
                f"speed."
            ),
        ]
    lines += [
        "",
        "| in-process reference | texts/s |",
        "|---|---:|",
        (
            f"| ONNX Runtime INT8, batches of {limit['batch_size']}, length-sorted sub-batches of "
            f"{limit['sub_batch_size']}, {limit['threads']} threads (**the limit**) "
            f"| {limit['texts_per_s']} |"
        ),
        f"| same, sub-batches in arrival order | {limit['unsorted_texts_per_s']} |",
    ]
    for size, value in limit["batch_of_request_texts_per_s"].items():
        lines.append(f"| same, batches of {size} (no adaptive batching) | {value} |")
    if "torch_reference" in report:
        ref = report["torch_reference"]
        lines.append(f"| PyTorch FP32 pipeline, 1 text per call | {ref['batch_1_texts_per_s']} |")
        lines.append(f"| PyTorch FP32 pipeline, 8 texts per call | {ref['batch_8_texts_per_s']} |")
    lines += [
        "",
        (
            "| server | texts/request | users | texts/s | req/s | p50 ms | p95 ms | p99 ms "
            "| failures | CPU busy |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, name in SERVERS.items():
        if server not in report:
            continue
        for size, steps in report[server]["steps"].items():
            lines += [_row(name, size, step["users"], step) for step in steps]
        if "half_load" in report[server]:
            half = report[server]["half_load"]
            users = f"{half['users']} (Poisson, {half['target_req_per_s']} req/s)"
            lines.append(_row(f"{server}, half peak load", half["texts_per_request"], users, half))
    lines += ["", f"![throughput and p99 latency vs concurrent users]({plot_name})", ""]
    return "\n".join(lines)


def _row(server: str, size: Any, users: Any, step: dict[str, Any]) -> str:
    busy = step.get("machine_cpu_busy")
    return (
        f"| {server} | {size} | {users} | {step['texts_per_s']} | {step['req_per_s']} "
        f"| {step['p50_ms']} | {step['p95_ms']} | {step['p99_ms']} | {step['failures']} "
        f"| {'' if busy is None else f'{busy:.0%}'} |"
    )


def _ok(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _load(values: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput (texts/s) and p99 latency against concurrent users, both servers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_tp, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"service": "-", "baseline": "--", "baseline_per_text": ":"}
    ticks: set[int] = set()
    for server, name in SERVERS.items():
        for size, steps in report.get(server, {}).get("steps", {}).items():
            users = [s["users"] for s in steps]
            ticks.update(users)
            label = f"{name}, {size} text{'s' if size != '1' else ''}/request"
            ax_tp.plot(
                users, [s["texts_per_s"] for s in steps], styles[server], marker="o", label=label
            )
            ax_p99.plot(
                users, [s["p99_ms"] for s in steps], styles[server], marker="o", label=label
            )
    limit = report["limit"]["texts_per_s"]
    ax_tp.axhline(
        limit, color="grey", linestyle=":", label=f"in-process ONNX INT8 limit ({limit:.0f})"
    )
    if "torch_reference" in report:
        ref = report["torch_reference"]["batch_1_texts_per_s"]
        ax_tp.axhline(
            ref, color="tab:red", linestyle=":", label=f"PyTorch FP32, 1 text ({ref:.0f})"
        )
    for ax, title, ylabel in (
        (ax_tp, "Throughput", "texts / s"),
        (ax_p99, "p99 latency", "ms (log scale)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent users")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax_p99.set_yscale("log")
    ax_tp.set_ylim(bottom=0)
    ax_tp.legend(fontsize=8)
    fig.suptitle(f"POST /classify, {report['limit']['model']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- CLI ------------------------------------------------------------------------------------


def _ints(spec: str) -> tuple[int, ...]:
    return tuple(int(v) for v in spec.split(",") if v.strip())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="2 steps of 2 s, reports/smoke/")
    parser.add_argument("--model-tag", default=os.environ.get("MODEL_TAG"))
    parser.add_argument("--run-dir", type=Path, help="run dir of the same model (baseline)")
    parser.add_argument("--data", type=Path, help="texts: run dir, .jsonl or corpus .csv.bz2")
    parser.add_argument("--out", dest="out_dir", type=Path, help="report folder")
    parser.add_argument("--name", help="report file stem")
    parser.add_argument("--users", type=_ints, help="concurrent users per step, e.g. 1,4,16")
    parser.add_argument("--sizes", type=_ints, help="texts per request, headline first, e.g. 8,1")
    parser.add_argument("--duration", type=float, dest="duration_s", help="measured s per step")
    parser.add_argument("--warmup", type=float, dest="warmup_s", help="unmeasured s per step")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", default=None)
    parser.add_argument(
        "--no-per-text-baseline",
        dest="per_text_baseline",
        action="store_false",
        default=None,
        help="skip the baseline run with one forward pass per text",
    )
    parser.add_argument("--baseline-threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="service setting for the served process and the limit (repeat), e.g. WORKERS=2",
    )
    args = parser.parse_args(argv)
    bad = [item for item in args.env if "=" not in item]
    if bad:
        parser.error(f"--env expects KEY=VALUE, got {bad}")
    service_env = dict(item.split("=", 1) for item in args.env)
    base = BenchConfig.smoke() if args.smoke else BenchConfig()
    cfg = config_from_args(BenchConfig, args, base, service_env=service_env)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "loadtest.bench", *argv])
    report = run_bench(cfg, command)
    print(json.dumps(report["summary"], indent=2))
    print(f"report: {Path(cfg.out_dir) / cfg.name}.{{json,md,png}}")
    return report


if __name__ == "__main__":
    main()
