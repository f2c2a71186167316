"""What the benchmark measures (`BenchConfig`), with the short variant CI runs (`smoke()`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from loadtest.traffic import DEFAULT_RUN_DIR, REPO_ROOT

# Settings the peer (LitServe) runs with: its documented knobs, tuned on this machine
# (`python -m experiments.tune peer`, docs/results.md).
PEER_DEFAULTS = {"workers": 2, "max_batch_size": 4, "batch_timeout": 0.002}


@dataclasses.dataclass
class BenchConfig:
    """One benchmark run: which model, which servers, which load steps."""

    model_tag: str = "sentiment-classifier:latest"  # served model (BentoML store)
    run_dir: Path = DEFAULT_RUN_DIR  # the same fine-tuned model for the PyTorch baseline
    data: Path | None = None  # texts; default: run_dir's data, else the cached corpus
    out_dir: Path = REPO_ROOT / "reports"
    name: str = "bench"  # report file stem
    connections: tuple[int, ...] = (1, 4, 16, 32, 64)  # concurrent connections per step
    sizes: tuple[int, ...] = (8, 1)  # texts per request; the first is the headline
    duration_s: float = 12.0  # measured seconds per step
    warmup_s: float = 3.0  # unmeasured seconds before each step
    half_load_users: int = 32  # Locust users sharing the half-peak Poisson load
    half_load_duration_s: float = 40.0  # p99 from ~1,000 requests
    limit_texts: int = 2048  # texts for the in-process limit
    limit_batch_sizes: tuple[int, ...] = (16, 32, 64)  # texts per predict call in the grid
    torch_texts: int = 160  # texts for the PyTorch reference
    baseline: bool = True  # FastAPI + transformers pipeline (PyTorch FP32)
    baseline_threads: int | None = None  # torch threads of the baseline; None: torch's default
    per_text_baseline: bool = True  # also the baseline with one forward pass per text
    peer: bool = True  # LitServe of the same ONNX model, one padded call per batch
    peer_settings: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(PEER_DEFAULTS))
    # The peer again with this project's inference code, peak step only: the servers alone.
    peer_leaf: bool = True
    service_env: dict[str, str] = dataclasses.field(default_factory=dict)
    # Extra service runs, peak step only: name -> env overrides (e.g. {"log-off": {...}}).
    variants: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    seed: int = 0

    @classmethod
    def smoke(cls, **overrides: Any) -> BenchConfig:
        short = {
            "name": "smoke",
            "out_dir": REPO_ROOT / "reports" / "smoke",
            "connections": (1, 4),
            "duration_s": 2.0,
            "warmup_s": 0.5,
            "half_load_users": 4,
            "half_load_duration_s": 2.0,
            "limit_texts": 128,
            "limit_batch_sizes": (32,),
            "torch_texts": 16,
        }
        return cls(**{**short, **overrides})

    def texts_source(self) -> Path | None:
        if self.data is not None:
            return Path(self.data)
        has_data = (Path(self.run_dir) / "data" / "test.jsonl").is_file()
        return Path(self.run_dir) if has_data else None

    @property
    def peak_connections(self) -> int:
        return max(self.connections)
