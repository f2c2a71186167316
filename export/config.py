"""Typed configuration of the export stage: offline defaults, no side effects on import."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

ISAS = ("auto", "avx512_vnni", "avx512", "avx2", "arm64")
ACTIVATION_SCALES = ("static", "dynamic")
CALIBRATION_METHODS = ("minmax", "percentile")
OPTIMIZE_MODES = ("auto", "on", "off")


@dataclass
class ExportConfig:
    """Everything `export_run` can be told. The defaults are the measured best on a 2-core CPU."""

    model_name: str = "sentiment-classifier"
    # ONNX export
    opset: int | None = None  # None: Optimum's default for the architecture
    # Offline ORT graph optimization (Optimum's ORTOptimizer). "auto" keeps it only if the final
    # model is measurably faster with it.
    optimize: str = "auto"
    optimization_level: str = "O2"  # Optimum's O1 / O2 / O3 (O4 is GPU fp16)
    # INT8 quantization (export/quantize.py, export/static.py)
    quantize: bool = True
    # "static": activation scales calibrated once on training texts, so a text's scores do not
    # depend on its batch mates (the /classify contract). "dynamic": ORT's per-call ranges, opt-in;
    # it fails the invariance gate and is stored only with `allow_batch_dependence`.
    activation_scales: str = "static"
    # How the static scales are calibrated (export/static.py). Measured on the default MiniLM run
    # (docs/quantization.md): percentile 99 is as fast as minmax and closer to FP32.
    calibration_method: str = "percentile"
    calibration_percentile: float = 99.0
    isa: str = "auto"  # instruction set the AutoQuantizationConfig targets; auto = detect
    per_channel: bool = True
    reduce_range: bool = False
    operators_to_quantize: list[str] = field(default_factory=lambda: ["MatMul", "Gather"])
    nodes_to_exclude: list[str] = field(default_factory=list)
    keep_head_fp32: bool = True  # leave the pooler / classifier head un-quantized (tiny, sensitive)
    # Training texts (`calibration_rows`, below) also calibrate the static activation scales.
    # SmoothQuant-style smoothing (export/smooth.py) before quantizing: per input channel, move
    # activation outliers into the (per-channel quantized) weights of the encoder's weight MatMuls,
    # with a strength searched per MatMul on `calibration_rows` training texts. The MatMuls are
    # found in the graph (any architecture); `smooth_pattern`, a regex on node names, overrides
    # that. A graph without any is exported unsmoothed, the reason logged and kept in the metadata.
    # Same file size; measured on the MiniLM runs it halves the INT8-vs-FP32 probability error.
    smooth: bool = True
    smooth_pattern: str | None = None
    calibration_rows: int = 128
    # Leave activation x activation MatMuls (attention scores, probs x values) in FP32. They hold
    # no weights; measured on the MiniLM run it did not raise agreement, so off by default.
    weight_matmuls_only: bool = False
    # Accuracy gate: refuse INT8 test accuracy more than this many points below FP32.
    max_accuracy_drop: float = 0.5
    force: bool = False
    # Invariance gate: the same text must score the same (within `invariance_tolerance`) alone and
    # inside batches of other texts. Dynamic scales fail it by construction; this stores it anyway.
    invariance_tolerance: float = 1e-5
    invariance_rows: int = 200  # test texts scored alone and in batches
    allow_batch_dependence: bool = False
    # Measurement
    batch_size: int = 8  # texts per ONNX Runtime call, as the service runs them (<= 256 tokens)
    threads: int | None = None  # onnxruntime intra-op threads; None = all cores
    max_eval_rows: int | None = None  # cap rows per split (quick runs); None = all
    benchmark_rows: int = 512  # test rows timed per candidate when optimize="auto"
    work_dir: Path | None = None  # keep intermediate ONNX files here; None = temp dir

    def __post_init__(self) -> None:
        if self.isa not in ISAS:
            raise ValueError(f"isa must be one of {ISAS}, got {self.isa!r}")
        if self.optimize not in OPTIMIZE_MODES:
            raise ValueError(f"optimize must be one of {OPTIMIZE_MODES}, got {self.optimize!r}")
        if self.optimization_level not in ("O1", "O2", "O3"):
            raise ValueError(
                f"optimization_level must be O1, O2 or O3, got {self.optimization_level!r}"
            )
        if self.activation_scales not in ACTIVATION_SCALES:
            raise ValueError(
                f"activation_scales must be one of {ACTIVATION_SCALES}, got {self.activation_scales!r}"
            )
        if self.calibration_method not in CALIBRATION_METHODS:
            raise ValueError(
                f"calibration_method must be one of {CALIBRATION_METHODS}, "
                f"got {self.calibration_method!r}"
            )
        if not 50 < self.calibration_percentile <= 100:
            raise ValueError(
                f"calibration_percentile must lie in (50, 100], got {self.calibration_percentile}"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.invariance_rows < 1:
            raise ValueError(f"invariance_rows must be >= 1, got {self.invariance_rows}")
        if self.calibration_rows < 1:
            raise ValueError(f"calibration_rows must be >= 1, got {self.calibration_rows}")
        if not self.operators_to_quantize:
            raise ValueError("operators_to_quantize must name at least one ONNX operator")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["work_dir"] = str(self.work_dir) if self.work_dir else None
        return d
