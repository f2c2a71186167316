"""The report: reports/<name>.json (every figure), <name>.md (tables) and <name>.png (plot)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def machine_info() -> dict[str, Any]:
    """The CPU model, the CPUs this process may use (cgroup-aware, counted as the service counts
    them), the Python and ONNX Runtime versions."""
    import onnxruntime

    from serving.inference import available_cpus

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": available_cpus(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


def table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> str:
    """A Markdown table of `rows` (dicts), one column per key (default: the first row's)."""
    keys = list(keys or rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    report: dict[str, Any], out_dir: Path, name: str, servers: Mapping[str, str]
) -> dict[str, Path]:
    """<name>.json, <name>.md and <name>.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{name}.{ext}" for ext in ("json", "md", "png")}
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n")
    paths["md"].write_text(markdown(report, paths["png"].name, servers))
    plot(report, paths["png"], servers)
    return paths


def markdown(report: dict[str, Any], plot_name: str, servers: Mapping[str, str]) -> str:
    """Setup, targets, the limit grid, and one row per measured step with its CPU use."""
    s, limit, load = report["summary"], report["limit"], report["load_average"]
    lines = [
        f"# /classify benchmark ({report['started_at']})",
        "",
        (
            f"Command: `{report['command'] or 'run_bench(...)'}` ({report['wall_s']} s). "
            f"Machine: {report['machine']['cpus']} CPUs ({report['machine']['cpu']}), load average "
            f"{_load(load['start'])} at start, {_load(load['end'])} at the end. Model "
            f"`{limit['model']}` (run {limit['run_id']}, quantized={limit['quantized']}); "
            f"{report['texts']['count']} texts from `{report['texts']['source']}` "
            f"({limit['tokens_mean']} tokens on average, max {limit['tokens_max']})."
        ),
        "",
        f"Servers: service env `{report['service']['env']}`"
        + (f"; LitServe peer `{report['peer']['settings']}`" if "peer" in report else "")
        + ". Load: wrk (1 thread) closed loop per step; the half-load step is Locust, Poisson "
        "arrivals. Every ratio below is measured in this run.",
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
    if s.get("info"):
        lines += ["", "| other ratio | value |", "|---|---:|"]
        lines += [f"| {k.replace('_', ' ')} | {v} |" for k, v in s["info"].items()]
    lines += [
        "",
        (
            "In-process limit (the service's own `Classifier.predict`, no HTTP: tokenize, "
            f"length-sorted sub-batches of at most {limit['sub_batch_size']} texts / "
            f"{limit['sub_batch_tokens']} padded tokens, ONNX Runtime), texts/s:"
        ),
        "",
        "| processes x threads, texts per call | texts/s |",
        "|---|---:|",
    ]
    for key, value in limit["grid"].items():
        mark = " (**the limit**)" if key == limit["best"] else ""
        lines.append(f"| {key}{mark} | {value} |")
    if "torch_reference" in report:
        ref = report["torch_reference"]
        lines.append(f"| PyTorch FP32 pipeline, 1 text per call | {ref['batch_1_texts_per_s']} |")
        lines.append(f"| PyTorch FP32 pipeline, 8 texts per call | {ref['batch_8_texts_per_s']} |")
    if "guard_cost" in report:
        g = report["guard_cost"]
        lines += [
            "",
            (
                f"Guard middleware (request id, timing headers, limits, metrics), in-process per "
                f"1-text request: {g['guard_us']} µs ({g['guard_with_api_key_us']} µs with the API "
                "key checked)."
            ),
        ]
    lines += [
        "",
        (
            "| server | texts/request | connections | texts/s | req/s | p50 ms | p99 ms | failures "
            "| CPU busy | server cores | load generator cores |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for server, name in servers.items():
        if server not in report:
            continue
        for size, steps in report[server]["steps"].items():
            lines += [_row(name, size, step["connections"], step) for step in steps]
        if "half_load" in report[server]:
            half = report[server]["half_load"]
            users = f"{half['users']} (Poisson, {half['target_req_per_s']} req/s)"
            lines.append(_row(f"{name}, half peak load", half["texts_per_request"], users, half))
    for variant, result in report.get("variants", {}).items():
        for size, steps in result["steps"].items():
            lines += [
                _row(f"service, {variant} ({result['env']})", size, st["connections"], st)
                for st in steps
            ]
    lines += ["", f"![throughput and p99 latency vs connections]({plot_name})", ""]
    return "\n".join(lines)


def _row(server: str, size: Any, connections: Any, step: dict[str, Any]) -> str:
    busy = step.get("machine_cpu_busy")
    return (
        f"| {server} | {size} | {connections} | {step['texts_per_s']} | {step['req_per_s']} "
        f"| {step['p50_ms']} | {step['p99_ms']} | {step['failures']} "
        f"| {'' if busy is None else f'{busy:.0%}'} | {step.get('server_cpu_cores') or ''} "
        f"| {step.get('generator_cpu_cores')} ({step.get('generator', '')}) |"
    )


def _ok(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _load(values: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def plot(report: dict[str, Any], path: Path, servers: Mapping[str, str]) -> None:
    """Throughput (texts/s) and p99 latency against concurrent connections, every server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_tp, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"service": "-", "peer": "-.", "baseline": "--", "baseline_per_text": ":"}
    ticks: set[int] = set()
    for server, name in servers.items():
        for size, steps in report.get(server, {}).get("steps", {}).items():
            conns = [s["connections"] for s in steps]
            ticks.update(conns)
            label = f"{name}, {size} text{'s' if size != '1' else ''}/request"
            style = styles.get(server, "-")
            ax_tp.plot(conns, [s["texts_per_s"] for s in steps], style, marker="o", label=label)
            ax_p99.plot(conns, [s["p99_ms"] for s in steps], style, marker="o", label=label)
    limit = report["limit"]["texts_per_s"]
    ax_tp.axhline(limit, color="grey", linestyle=":", label=f"in-process limit ({limit:.0f})")
    for ax, title, ylabel in (
        (ax_tp, "Throughput", "texts / s"),
        (ax_p99, "p99 latency", "ms (log scale)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax_p99.set_yscale("log")
    ax_tp.set_ylim(bottom=0)
    ax_tp.legend(fontsize=7)
    fig.suptitle(f"POST /classify, {report['limit']['model']}, {os.uname().nodename}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
