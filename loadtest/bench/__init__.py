"""Benchmark /classify against this machine's limit and against peers, every ratio in one run.

    python -m loadtest.bench                 # make bench: the real model, ~13 minutes (787 s on 2026-12-06)
    python -m loadtest.bench --smoke         # make bench-smoke: 2 short steps, reports/smoke/

A small package, one job per module:
- `config`: what to measure (`BenchConfig`);
- `limit`: the in-process limit, the best arrangement of processes x threads x batch size on
  this machine (no HTTP), and PyTorch FP32 for reference;
- `load`: the load generators (wrk for the ramp, Locust for the Poisson scenario) and the CPU
  each step cost the server and the generator;
- `run`: start each server (the service, its variants, the LitServe peer, the FastAPI +
  PyTorch baselines), drive it, and compute the targets;
- `report`: reports/<name>.json, .md and .png.
"""

from loadtest.bench.config import BenchConfig
from loadtest.bench.run import run_bench, summarize

__all__ = ["BenchConfig", "run_bench", "summarize"]
