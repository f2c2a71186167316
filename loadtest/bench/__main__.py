"""CLI: `python -m loadtest.bench [--smoke] [--env KEY=VALUE ...] ...` (see the package doc)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from common.cli import config_from_args, with_default
from loadtest.bench import __doc__ as DOC
from loadtest.bench.config import BenchConfig
from loadtest.bench.load import MissingTool
from loadtest.bench.run import run_bench


def _ints(spec: str) -> tuple[int, ...]:
    return tuple(int(v) for v in spec.split(",") if v.strip())


def _pairs(items: Sequence[str], parser: argparse.ArgumentParser, flag: str) -> dict[str, str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        parser.error(f"{flag} expects KEY=VALUE, got {bad}")
    return dict(item.split("=", 1) for item in items)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    d = partial(with_default, BenchConfig)  # "text (default: X)", X from BenchConfig
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description=DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="2 steps of 2 s, reports/smoke/")
    parser.add_argument(
        "--model-tag", help=d("model_tag", "served model; $MODEL_TAG if set, as the service")
    )
    parser.add_argument(
        "--run-dir", type=Path, help=d("run_dir", "run dir of the same model (baseline)")
    )
    parser.add_argument("--data", type=Path, help="texts: run dir, .jsonl or corpus .csv.bz2")
    parser.add_argument("--out", dest="out_dir", type=Path, help=d("out_dir", "report folder"))
    parser.add_argument("--name", help=d("name", "report file stem"))
    parser.add_argument("--connections", type=_ints, help=d("connections", "connections per step"))
    parser.add_argument("--sizes", type=_ints, help=d("sizes", "texts per request, headline first"))
    parser.add_argument(
        "--duration", type=float, dest="duration_s", help=d("duration_s", "measured s per step")
    )
    parser.add_argument(
        "--warmup", type=float, dest="warmup_s", help=d("warmup_s", "unmeasured s per step")
    )
    parser.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        default=None,
        help="skip the FastAPI + PyTorch baseline",
    )
    parser.add_argument(
        "--no-per-text-baseline",
        dest="per_text_baseline",
        action="store_false",
        default=None,
        help="skip the baseline with one forward pass per text",
    )
    parser.add_argument(
        "--no-peer", dest="peer", action="store_false", default=None, help="skip the LitServe peer"
    )
    parser.add_argument("--baseline-threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="service setting (repeat), e.g. WORKERS=2",
    )
    parser.add_argument(
        "--peer-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="LitServe peer option (repeat), e.g. workers=2 max_batch_size=16",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="also run the service with these settings, peak step only",
    )
    args = parser.parse_args(argv)
    base = BenchConfig.smoke() if args.smoke else BenchConfig()
    extra: dict[str, Any] = {"service_env": _pairs(args.env, parser, "--env")}
    if args.peer_setting:
        peer = {**base.peer_settings, **_pairs(args.peer_setting, parser, "--peer-setting")}
        extra["peer_settings"] = peer
    if args.variant:
        variants = {}
        for spec in args.variant:
            name, _, settings = spec.partition(":")
            variants[name] = _pairs(settings.split(","), parser, "--variant")
        extra["variants"] = variants
    if os.environ.get("MODEL_TAG"):  # the model the service would serve; --model-tag wins
        extra["model_tag"] = os.environ["MODEL_TAG"]
    cfg = config_from_args(BenchConfig, args, base, **extra)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "loadtest.bench", *argv])
    try:
        report = run_bench(cfg, command)
    except MissingTool as e:
        parser.exit(2, f"error: {e}\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"report: {Path(cfg.out_dir) / cfg.name}.{{json,md,png}}")
    return report


if __name__ == "__main__":
    main()
