"""The two engines on one corpus, in one run: `python -m experiments.scoring_engines`.

    python -m experiments.scoring_engines --data "runs/latest/data/*.jsonl" \\
        --model-tag sentiment-classifier:latest

1. The corpus is written to one JSONL file, which both engines read.
2. HTTP engine: `bentoml serve` of the model with the service's default settings, then
   `score_file` with the HTTP engine's defaults; a tiny input measures its fixed cost (the
   probe). The server is stopped before Ray starts, so the two never share the CPU.
3. Ray engine: a local Ray (its start-up timed), one warm-up job; per actor count, a tiny job
   (the fixed cost of a job: actors start and load the model) and the whole corpus; with the
   most actors, each batch size of the grid. Rows/s excludes the fixed costs; the break-even
   row count is where the Ray engine's larger fixed cost is paid back by its higher rate.
   Each setting runs `--repeat` rounds (both engines); the least disturbed round is kept.
4. For scale, the in-process rate of one process (`Classifier`, ONNX Runtime threads = CPUs,
   length-sorted batches): what a plain loop without Ray or HTTP gets.

Writes `<out>/scoring-engines.{json,md}`. The machine is shared: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench.report import machine_info
from scoring.config import ScoringConfig
from scoring.score import score_file


def write_corpus(pattern: str, text_column: str, path: Path) -> int:
    """Every row of the files matching `pattern` (JSONL) -> one JSONL file; the row count."""
    import glob

    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"no files match {pattern}")
    n = 0
    with path.open("w", encoding="utf-8") as out:
        for f in files:
            for line in Path(f).read_text(encoding="utf-8").split("\n"):  # not \u2028
                if line.strip():
                    row = json.loads(line)
                    out.write(json.dumps({"id": n, text_column: row[text_column]}) + "\n")
                    n += 1
    return n


def run_engine(cfg: ScoringConfig) -> dict:
    s = score_file(cfg)
    return {"rows": s.rows, "seconds": round(s.seconds, 2), "rows_per_s": round(s.rows_per_s, 1)}


def best_of(repeat: int, tiny: ScoringConfig, full: ScoringConfig) -> dict:
    """`repeat` rounds of (tiny job, whole corpus); the round with the fastest whole run (a
    shared machine: the best round is the least disturbed one)."""
    rounds = [{"tiny": run_engine(tiny), "full": run_engine(full)} for _ in range(repeat)]
    best = min(rounds, key=lambda r: r["full"]["seconds"])
    return {
        **best,
        "steady": steady(best["full"], best["tiny"]),
        "rounds_s": [r["full"]["seconds"] for r in rounds],
    }


def steady(full: dict, tiny: dict) -> dict:
    """Rows/s without the fixed cost: (rows - tiny rows) / (seconds - tiny seconds)."""
    rows, secs = full["rows"] - tiny["rows"], full["seconds"] - tiny["seconds"]
    return {"fixed_s": tiny["seconds"], "rows_per_s": round(rows / secs, 1) if secs > 0 else None}


def break_even(c_ray: float, r_ray: float, c_http: float, r_http: float) -> float:
    """Rows from which c_ray + n / r_ray < c_http + n / r_http."""
    gain = 1 / r_http - 1 / r_ray
    return math.ceil((c_ray - c_http) / gain) if gain > 0 else math.inf


def cli_seconds(args: list[str], env: dict | None = None) -> float:
    """Wall-clock seconds of `python -m scoring ARGS` (imports, start-up, the job, exit)."""
    import subprocess

    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "scoring", *args, "--no-progress", "--overwrite"],
        check=True,
        capture_output=True,
        env={**os.environ, **(env or {})},
    )
    return round(time.perf_counter() - started, 2)


def compare(a: argparse.Namespace) -> dict:
    import ray

    from loadtest.servers import ServerProcess, bentoml_serve_command

    tmp = Path(tempfile.mkdtemp(prefix="scoring-engines-"))
    corpus, tiny_input = tmp / "corpus.jsonl", tmp / "tiny.jsonl"
    n = write_corpus(a.data, a.text_column, corpus)
    lines = corpus.read_text(encoding="utf-8").split("\n")
    tiny_input.write_text("\n".join(lines[: a.tiny]) + "\n", encoding="utf-8")
    common = {"text_column": a.text_column, "id_column": "id", "progress": False, "overwrite": True}
    import bentoml

    report: dict = {
        "command": "python -m experiments.scoring_engines " + shlex.join(sys.argv[1:]),
        "machine": machine_info(),
        "model_version": str(bentoml.models.get(a.model_tag).tag),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "rows": n,
        "model": a.model_tag,
    }
    print(f"corpus: {n} rows; load average {report['load_average_at_start']}", flush=True)

    if not a.skip_http:
        env = {"MODEL_TAG": a.model_tag}
        with ServerProcess(bentoml_serve_command(), env=env) as server:
            http = {"url": server.url, "server_ready_s": round(server.ready_s, 1)}
            cfgs = [
                ScoringConfig(
                    input=src, output=tmp / f"http-{name}.parquet", url=server.url, **common
                )
                for name, src in (("tiny", tiny_input), ("full", corpus))
            ]
            http |= best_of(a.repeat, *cfgs)
            print(f"http: {http}", flush=True)
            cfg = cfgs[1]
            http["settings"] = {"batch_size": cfg.batch_size, "concurrency": cfg.concurrency}
            tiny_args = [str(tiny_input), "--text-column", a.text_column, "--id-column", "id"]
            http_args = ["-o", str(tmp / "cli-http.parquet"), "--url", server.url]
            http["cli_tiny_s"] = min(cli_seconds([*tiny_args, *http_args]) for _ in range(a.repeat))
        report["http"] = http

    tiny_args = [str(tiny_input), "--text-column", a.text_column, "--id-column", "id"]
    ray_args = ["-o", str(tmp / "cli-ray.parquet"), "--engine", "ray", "--model", a.model_tag]
    report["ray_cli_tiny_s"] = min(cli_seconds([*tiny_args, *ray_args]) for _ in range(a.repeat))
    print(f"CLI, {a.tiny} rows: ray {report['ray_cli_tiny_s']} s", flush=True)
    started = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=report["machine"]["cpus"],
        include_dashboard=False,
        log_to_driver=False,
    )
    report["ray_init_s"] = round(time.perf_counter() - started, 2)
    print(f"ray.init: {report['ray_init_s']} s", flush=True)

    def config(src: Path, name: str, actors: int, bs: int) -> ScoringConfig:
        return ScoringConfig(
            input=src,
            output=tmp / f"ray-{name}.parquet",
            engine="ray",
            model=a.model_tag,
            actors=actors,
            batch_size=bs,
            **common,
        )

    runs = []
    try:
        run_engine(config(tiny_input, "warm-up", 1, a.batch_sizes[0]))  # Ray Data's first job
        for actors in a.actors:
            sizes = a.batch_sizes if actors == max(a.actors) else [a.batch_sizes[0]]
            for bs in sizes:
                run = {"actors": actors, "batch_size": bs}
                run |= best_of(
                    a.repeat,
                    config(tiny_input, "tiny", actors, bs),
                    config(corpus, "full", actors, bs),
                )
                runs.append(run)
                print(f"ray {actors} actors, batch {bs}: {run}", flush=True)
    finally:
        started = time.perf_counter()
        ray.shutdown()
        report["ray_shutdown_s"] = round(time.perf_counter() - started, 2)
    report["ray"] = runs

    report["in_process"] = in_process(a.model_tag, corpus, a.text_column, a.batch_sizes[0])
    print(f"in-process: {report['in_process']}", flush=True)
    report["summary"] = summarize(report)
    return report


def in_process(model_tag: str, corpus: Path, text_column: str, batch_size: int) -> dict:
    """One process, ONNX Runtime threads = CPUs, length-sorted batches: no Ray, no HTTP."""
    import bentoml

    from serving.inference import Classifier, available_cpus

    rows = corpus.read_text(encoding="utf-8").split("\n")
    texts = [json.loads(line)[text_column] for line in rows if line]
    clf = Classifier.from_dir(bentoml.models.get(model_tag).path, threads=available_cpus())
    clf.predict(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        clf.predict(texts[i : i + batch_size])
    secs = time.perf_counter() - started
    return {
        "threads": available_cpus(),
        "batch_size": batch_size,
        "seconds": round(secs, 2),
        "rows_per_s": round(len(texts) / secs, 1),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(report: dict) -> dict:
    """Ratios and the break-even row count (None where a rate could not be measured: a
    corpus too small for its fixed cost)."""
    runs = report["ray"]
    default = [r for r in runs if r["batch_size"] == runs[0]["batch_size"]]
    best = max(runs, key=lambda r: r["full"]["rows_per_s"])
    one = next((r for r in default if r["actors"] == 1), None)
    most = max(default, key=lambda r: r["actors"])
    r_ray = most["steady"]["rows_per_s"]
    s = {
        "best_batch_size": best["batch_size"],
        "ray_startup_s": round(report["ray_init_s"] + most["tiny"]["seconds"], 1),
    }
    if one is not None and one is not most:
        s["actor_scaling"] = _ratio(r_ray, one["steady"]["rows_per_s"])
        s["actor_scaling_whole_run"] = _ratio(most["full"]["rows_per_s"], one["full"]["rows_per_s"])
    in_proc = report["in_process"]["rows_per_s"]
    s["ray_over_in_process"] = _ratio(most["full"]["rows_per_s"], in_proc)
    if "http" in report:
        http = report["http"]
        r_http = http["steady"]["rows_per_s"]
        s["ray_over_http_whole_run"] = _ratio(
            most["full"]["rows_per_s"], http["full"]["rows_per_s"]
        )
        s["ray_over_http_steady"] = _ratio(r_ray, r_http)
        s["http_over_in_process"] = _ratio(http["full"]["rows_per_s"], in_proc)
        s["break_even_rows"] = s["break_even_rows_cli"] = None
        if r_ray and r_http:
            c_ray = s["ray_startup_s"] + report.get("ray_shutdown_s", 0)
            s["break_even_rows"] = break_even(c_ray, r_ray, http["steady"]["fixed_s"], r_http)
            # What a user waits for: the whole command (imports, start-up, exit), tiny input.
            s["break_even_rows_cli"] = break_even(
                report["ray_cli_tiny_s"], r_ray, http["cli_tiny_s"], r_http
            )
    return s


def markdown(r: dict) -> str:
    m, s = r["machine"], r["summary"]
    lines = [
        "# Batch scoring: Ray Data engine vs HTTP engine",
        "",
        (
            f"`{r['command']}`: {r['rows']} rows, model `{r['model']}`, {m['cpus']} CPUs "
            f"({m['cpu']}), load average at start {r['load_average_at_start']} (a shared "
            "machine: compare ratios within this run)."
        ),
        "",
        "| engine | settings | whole run, rows/s | fixed cost, s | rows/s without it |",
        "|---|---|---:|---:|---:|",
    ]
    if "http" in r:
        h = r["http"]
        lines.append(
            f"| HTTP (`bentoml serve`, service defaults) | batch {h['settings']['batch_size']}, "
            f"{h['settings']['concurrency']} requests in flight | {h['full']['rows_per_s']} | "
            f"{h['steady']['fixed_s']} | {h['steady']['rows_per_s']} |"
        )
    for run in r["ray"]:
        lines.append(
            f"| Ray Data, local | {run['actors']} actor(s), batch {run['batch_size']} | "
            f"{run['full']['rows_per_s']} | {run['steady']['fixed_s']} | "
            f"{run['steady']['rows_per_s']} |"
        )
    p = r["in_process"]
    per_job = s["ray_startup_s"] - r["ray_init_s"]
    lines.append(
        f"| in-process, one process (no Ray, no HTTP) | {p['threads']} ONNX Runtime threads, "
        f"batch {p['batch_size']} | {p['rows_per_s']} | | |"
    )
    lines.append("")
    lines.append(
        f"- Ray start-up: `ray.init` {r['ray_init_s']} s, plus {per_job:.1f} s per job (actors "
        f"start and load the model): {s['ray_startup_s']} s before the first rows; "
        f"`ray.shutdown` {r.get('ray_shutdown_s')} s."
    )
    if "actor_scaling" in s:
        most = max(x["actors"] for x in r["ray"])
        lines.append(
            f"- Actors: {most} actors score {s['actor_scaling']}x the rows/s of 1 (fixed costs "
            f"excluded), {s['actor_scaling_whole_run']}x over the whole corpus."
        )
    if "http" in r:
        lines.append(
            f"- Ray over HTTP: {s['ray_over_http_whole_run']}x for the whole corpus, "
            f"{s['ray_over_http_steady']}x without fixed costs. Against one process in-process: "
            f"HTTP {s['http_over_in_process']}x, Ray {s['ray_over_in_process']}x."
        )
        lines.append(
            f"- Break-even: from about {s['break_even_rows']} rows the Ray engine (its Ray "
            "started for the job) finishes first; below, the HTTP engine against a running "
            f"service. Whole commands (`python -m scoring` on {r['ray'][0]['tiny']['rows']} "
            f"rows: Ray {r['ray_cli_tiny_s']} s, HTTP {r['http']['cli_tiny_s']} s, imports "
            f"included): from about {s['break_even_rows_cli']} rows."
        )
    lines.append(f"- Best batch size of the grid: {s['best_batch_size']}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        prog="python -m experiments.scoring_engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default="runs/latest/data/*.jsonl", help="JSONL glob (the corpus)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--model-tag", default="sentiment-classifier:latest")
    p.add_argument("--actors", default="1,2", help="actor counts (comma-separated)")
    p.add_argument(
        "--batch-sizes",
        default="1024,256,4096",
        help="rows per actor call; the first is the one every actor count runs",
    )
    p.add_argument("--tiny", type=int, default=64, help="rows of the fixed-cost job")
    p.add_argument("--repeat", type=int, default=2, help="rounds per setting; the best is kept")
    p.add_argument("--skip-http", action="store_true", help="Ray runs only (exploration)")
    p.add_argument("--out", default="reports", help="folder of scoring-engines.{json,md}")
    p.add_argument(
        "--render",
        metavar="JSON",
        help="measure nothing: rewrite the summary and "
        "the Markdown of a saved report (after a change to this module's output)",
    )
    a = p.parse_args(argv)
    if a.render:
        report = json.loads(Path(a.render).read_text())
        report["summary"] = summarize(report)
        Path(a.render).write_text(json.dumps(report, indent=2, default=str) + "\n")
        Path(a.render).with_suffix(".md").write_text(markdown(report))
        print(markdown(report))
        return report
    a.actors = [int(x) for x in a.actors.split(",")]
    a.batch_sizes = [int(x) for x in a.batch_sizes.split(",")]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report = compare(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scoring-engines.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "scoring-engines.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
