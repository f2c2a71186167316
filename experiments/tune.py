"""Tuning runs behind the defaults (figures in docs/results.md):

    python -m experiments.tune sub-batches   # texts / token budget per ONNX Runtime call
    python -m experiments.tune peer          # LitServe's workers, batch size, batch timeout
    python -m experiments.tune service --grid WORKERS=1,2 INFERENCE_PROCESSES=1,2
    python -m experiments.tune before-after --ref 774906c   # an older commit's service, then this one

`sub-batches` runs the in-process best arrangement (one process per CPU, one thread each) on
the real length mix and on a mix with a few long texts among short ones (where padding to the
longest costs most); `peer` and `service` drive each setting at the peak step with wrk (8 and 1
text per request) and print texts/s with the CPU each used. Each prints a Markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SUB_BATCH_GRID = [  # (texts, padded-token budget or None)
    (4, None),
    (8, None),
    (16, None),
    (32, None),
    (8, 256),
    (16, 256),
    (32, 256),
    (16, 512),
    (32, 512),
    (32, 1024),
    (32, 2048),
]
PEER_GRID = {
    "workers": (1, 2),
    "max_batch_size": (4, 8, 16, 32),
    "batch_timeout": (0.002, 0.01),
}


def tune_sub_batches(model_tag: str, texts: Sequence[str], n: int, batch: int) -> list[dict]:
    import bentoml

    from loadtest.bench.limit import run_arrangement
    from serving.inference import available_cpus

    path = bentoml.models.get(model_tag).path
    rng = random.Random(0)
    real = rng.choices(list(texts), k=n)
    longest = sorted(texts, key=len)[-max(1, len(texts) // 50) :]  # the longest 2%
    mixed = [rng.choice(longest) if i % 16 == 0 else t for i, t in enumerate(real)]
    cpus = available_cpus()
    rows = []
    for size, budget in SUB_BATCH_GRID:
        row = {"sub_batch_size": size, "sub_batch_tokens": budget}
        for name, sample in (("real mix", real), ("1 long text in 16", mixed)):
            row[name] = round(run_arrangement(path, sample, cpus, 1, batch, size, budget), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def drive_settings(
    make_command: Any,
    settings: list[dict[str, Any]],
    texts: Sequence[str],
    connections: int,
    duration_s: float,
    ready_path: str,
    env_of: Any = None,
    cwd_of: Any = None,
) -> list[dict]:
    from loadtest.bench.load import write_bodies, wrk_step
    from loadtest.bench.run import warm_up
    from loadtest.servers import ServerProcess
    from loadtest.traffic import REPO_ROOT

    rows = []
    with tempfile.TemporaryDirectory(prefix="tune-") as tmp:
        bodies = {s: write_bodies(texts, s, Path(tmp) / f"{s}.jsonl") for s in (8, 1)}
        for setting in settings:
            env = env_of(setting) if env_of else None
            cwd = cwd_of(setting) if cwd_of else REPO_ROOT
            with ServerProcess(
                make_command(setting), env=env, ready_path=ready_path, cwd=cwd
            ) as server:
                warm_up(server.url, bodies, None)
                row = dict(setting)
                for size in (8, 1):
                    step = wrk_step(
                        server.url, connections, bodies[size], size, duration_s, 3, server.proc.pid
                    )
                    row[f"{size}-text texts/s"] = step["texts_per_s"]
                    row[f"{size}-text p99 ms"] = step["p99_ms"]
                    row[f"{size}-text server cores"] = step["server_cpu_cores"]
                    row[f"{size}-text failures"] = step["failures"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def _grid(specs: Sequence[str]) -> list[dict[str, str]]:
    axes = {}
    for spec in specs:
        key, _, values = spec.partition("=")
        axes[key] = values.split(",")
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def main(argv: Sequence[str] | None = None) -> None:
    from loadtest.traffic import DEFAULT_RUN_DIR, REPO_ROOT, load_texts

    parser = argparse.ArgumentParser(
        prog="python -m experiments.tune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=("sub-batches", "peer", "service", "before-after"))
    parser.add_argument("--ref", default="774906c", help="the older commit (before-after)")
    parser.add_argument("--model-tag", default="sentiment-classifier:latest")
    parser.add_argument("--data", type=Path, default=DEFAULT_RUN_DIR)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="texts per predict call")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="KEY=V1,V2",
        help="service settings to combine (service)",
    )
    args = parser.parse_args(argv)
    texts = load_texts(args.data)
    if args.what == "sub-batches":
        rows = tune_sub_batches(args.model_tag, texts, args.texts, args.batch)
    elif args.what == "peer":
        import bentoml

        from loadtest.bench.run import peer_command

        path = bentoml.models.get(args.model_tag).path
        settings = [
            dict(zip(PEER_GRID, c, strict=True)) for c in itertools.product(*PEER_GRID.values())
        ]
        rows = drive_settings(
            lambda s: peer_command(path, s),
            settings,
            texts,
            args.connections,
            args.duration,
            "/health",
        )
    elif args.what == "before-after":
        import subprocess

        from loadtest.servers import bentoml_serve_command

        with tempfile.TemporaryDirectory(prefix="before-") as old:
            subprocess.run(
                ["git", "worktree", "add", "--detach", old, args.ref],
                cwd=REPO_ROOT,
                check=True,
                capture_output=True,
            )
            try:
                settings = [{"code": args.ref}, {"code": "this checkout"}]
                rows = drive_settings(
                    lambda s: bentoml_serve_command(),
                    settings,
                    texts,
                    args.connections,
                    args.duration,
                    "/readyz",
                    env_of=lambda s: {"MODEL_TAG": args.model_tag},
                    cwd_of=lambda s: old if s["code"] == args.ref else REPO_ROOT,
                )
            finally:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", old],
                    cwd=REPO_ROOT,
                    check=False,
                    capture_output=True,
                )
    else:
        from loadtest.servers import bentoml_serve_command

        rows = drive_settings(
            lambda s: bentoml_serve_command(),
            _grid(args.grid),
            texts,
            args.connections,
            args.duration,
            "/readyz",
            env_of=lambda s: {"MODEL_TAG": args.model_tag, **s},
        )
    from loadtest.bench.report import table

    print(table(rows))


if __name__ == "__main__":
    main()
