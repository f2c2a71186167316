"""The export stage end to end: run dir -> ONNX -> (optimize) -> INT8 -> gate -> model store."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm.auto import tqdm

from common.provenance import git_sha, package_versions
from common.tracking import MlflowRecord, record_export
from export.config import ExportConfig
from export.convert import export_onnx, optimize_onnx
from export.evaluate import OnnxClassifier, compare, evaluate_onnx, load_tokenizer
from export.invariance import batch_invariance
from export.profile import run_profile
from export.quantize import QUANTIZED_OPS, op_counts, quantize
from export.rundir import load_run_dir
from export.smooth import calibration_texts, smooth_graph
from export.static import static_quantize
from export.store import save_to_store

logger = logging.getLogger(__name__)

EVAL_SPLITS = ("validation", "test")
VERSIONED = (
    "onnxruntime",
    "onnx",
    "optimum",
    "optimum-onnx",
    "transformers",
    "tokenizers",
    "torch",
    "bentoml",
    "numpy",
)


class AccuracyGateError(RuntimeError):
    """The INT8 model lost more accuracy against FP32 than the configured threshold allows."""


class InvarianceGateError(RuntimeError):
    """A text's scores depend on the texts it is batched with (the /classify contract)."""


@dataclass
class ExportReport:
    """What `run_export` did: the stored tag and the figures behind it."""

    tag: object  # bentoml.Tag
    metadata: dict
    rows: list[tuple] = field(default_factory=list)
    mlflow: str | None = None  # what happened with the training run's MLflow run, if it has one

    def summary(self) -> str:
        """A plain-text FP32 vs final-model table."""
        header = ("model", "size MB", "val acc", "test acc", "test macro-F1", "texts/s")
        lines = [header, *self.rows]
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        out = [
            "  ".join(str(c).rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
        ]
        out.insert(1, "  ".join("-" * w for w in widths))
        m = self.metadata
        out.append("")
        out.append(
            f"agreement with FP32 (test): {m['agreement']['test']['agreement']:.2%}, "
            f"max prob diff {m['agreement']['test']['max_prob_diff']:.4f}, "
            f"accuracy drop {m['gate']['accuracy_drop_points']:+.2f} points "
            f"(limit {m['gate']['max_accuracy_drop']}{', forced' if m['gate']['forced'] else ''})"
        )
        inv = m["invariance"]
        out.append(
            f"batch invariance ({inv['texts']} test texts alone vs in batches): max diff "
            f"{inv['max_diff']:.1e}, {inv['texts_over_tolerance']} over {inv['tolerance']:g}, "
            f"{inv['label_flips']} label flips"
            + ("" if inv["passed"] else f" (stored: {inv['stored_because']})")
        )
        out.append(f"graph optimization: {m['optimization']['decision']}")
        out.append(f"stored: {self.tag}")
        if self.mlflow:
            out.append(f"mlflow: {self.mlflow}")
        return "\n".join(out)


def export_run(run_dir: Path, config: ExportConfig | None = None):
    """Export, quantize, gate and store the run in `run_dir`; return the stored `bentoml.Tag`."""
    return run_export(run_dir, config).tag


def run_export(run_dir: Path, config: ExportConfig | None = None) -> ExportReport:
    """`export_run` with the figures: see `ExportReport`."""
    config = config or ExportConfig()
    run = load_run_dir(run_dir)
    rows = {split: run.rows(split, config.max_eval_rows) for split in EVAL_SPLITS}
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        work = Path(config.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        return _run(run, rows, config, work)


def _run(run, rows: dict, config: ExportConfig, work: Path) -> ExportReport:
    with tqdm(total=6, desc="export", unit="step", disable=None) as steps:
        return _steps(run, rows, config, work, steps)


def _steps(run, rows: dict, config: ExportConfig, work: Path, steps) -> ExportReport:
    steps.set_postfix_str("ONNX export")
    fp32_path = export_onnx(run.model_dir, work / "fp32", config.opset)
    tokenizer = load_tokenizer(run.model_dir / "tokenizer.json", run.max_length)
    tokenizer_path = work / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))
    steps.update()

    steps.set_postfix_str("smooth")
    source, smoothing = fp32_path, None
    # what smoothing and the static activation scales calibrate on; --no-quantize needs none
    texts = calibration_texts(run.rows("train"), config.calibration_rows) if config.quantize else []
    if config.quantize and config.smooth:
        source, smoothing = smooth_graph(fp32_path, work / "smoothed", tokenizer, texts, config)
    steps.update()

    steps.set_postfix_str("optimize")
    candidates = {"plain": source}
    if config.optimize != "off":
        candidates["optimized"] = optimize_onnx(
            source, work / "optimized", config.optimization_level
        )
    steps.update()

    steps.set_postfix_str("quantize")
    quant_info = None
    if config.quantize:
        for key, path in list(candidates.items()):
            out = work / f"int8-{key}"
            if config.activation_scales == "static":
                candidates[key], quant_info = static_quantize(path, out, config, tokenizer, texts)
            else:
                candidates[key], quant_info = quantize(path, out, config)
        quant_info["smoothing"] = smoothing
    steps.update()

    steps.set_postfix_str("evaluate")
    final_path, optimization = _choose(candidates, tokenizer, rows["test"], config)
    fp32 = OnnxClassifier(fp32_path, tokenizer, config.threads)
    final = OnnxClassifier(final_path, tokenizer, config.threads)
    metrics: dict = {"fp32": {}, "model": {}}
    agreement = {}
    speed = {}
    for split in EVAL_SPLITS:
        for key, clf in (("fp32", fp32), ("model", final)):
            if split == "test":
                clf.predict_proba([r["text"] for r in rows[split][: config.batch_size]])  # warm-up
            start = time.perf_counter()
            metrics[key][split] = evaluate_onnx(clf, rows[split], config.batch_size)
            if split == "test":
                speed[key] = len(rows[split]) / (time.perf_counter() - start)
        agreement[split] = compare(
            metrics["fp32"][split].pop("probs"), metrics["model"][split].pop("probs")
        )
    steps.update()

    gate = check_gate(
        metrics["fp32"]["test"]["accuracy"],
        metrics["model"]["test"]["accuracy"],
        config.max_accuracy_drop,
        config.force,
    )
    if not gate["passed"]:
        logger.warning("%s; storing anyway because of --force", gate["message"])
    invariance = batch_invariance(
        final.runtime,
        [r["text"] for r in rows["test"][: config.invariance_rows]],
        config.invariance_tolerance,
    )
    check_invariance(invariance, config)

    steps.set_postfix_str("store")
    counts = op_counts(final_path)
    sizes = {"fp32": fp32_path.stat().st_size, "model": final_path.stat().st_size}
    quantized = config.quantize
    model_config = {
        "labels": run.labels,
        "max_length": run.max_length,
        "input_names": final.input_names,
        "quantized": quantized,
    }
    metadata = {
        "run_id": run.info["run_id"],
        "base_model": run.info["base_model"],
        "data_fingerprint": run.info["data_fingerprint"],
        "data_source": run.info.get("data_source"),
        "distillation": run.info.get("distillation"),  # the teacher, T and alpha, if distilled
        "labels": run.labels,
        "max_length": run.max_length,
        "quantized": quantized,
        "metrics": metrics,
        "agreement": agreement,
        "gate": gate,
        "invariance": invariance,
        "quantization": quant_info,
        "optimization": optimization,
        "size_bytes": sizes,
        "texts_per_s": {k: round(v, 1) for k, v in speed.items()},
        "quantized_nodes": {op: counts[op] for op in QUANTIZED_OPS if counts.get(op)},
        "git_sha": git_sha(),
        "training_git_sha": run.info.get("git_sha"),
        "versions": package_versions(VERSIONED),
        "export_config": config.to_dict(),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # the training run's MLflow run (docs/tracking.md): from the tag back to the run
        "mlflow": run.info.get("mlflow"),
    }
    labels = {
        "stage": "dev",
        "base_model": str(run.info["base_model"]),
        "quantized": str(quantized).lower(),
    }
    profile = run_profile(final.runtime, run, rows["validation"]).to_dict()  # drift reference
    tag = save_to_store(
        config.model_name, final_path, tokenizer_path, model_config, labels, metadata, profile
    )
    mlflow = _record_in_mlflow(run, str(tag), metadata)
    steps.update()

    name = "INT8" if quantized else "FP32 (stored)"
    table = [
        _row("FP32", sizes["fp32"], metrics["fp32"], speed["fp32"]),
        _row(
            name + (" +opt" if optimization["applied"] else ""),
            sizes["model"],
            metrics["model"],
            speed["model"],
        ),
    ]
    return ExportReport(tag=tag, metadata=metadata, rows=table, mlflow=mlflow)


def _record_in_mlflow(run, tag: str, metadata: dict) -> str | None:
    """Log the export into the training run's MLflow run, if run_info.json names one. The model
    is stored by then: a failure here is a warning (and the summary's last line), not an error."""
    named = run.info.get("mlflow")
    if not named:
        return None
    named = named if isinstance(named, dict) else {}
    where = f"{named.get('run_id', '?')} ({named.get('tracking_uri', '?')})"
    try:
        record = MlflowRecord.from_info(run.info)
        if record is None:
            raise ValueError(f"run_info.json's mlflow is not a record: {run.info['mlflow']!r}")
        record_export(record, tag, metadata)
    except Exception as e:  # noqa: BLE001 - store moved, server down, bad record: warn, go on
        logger.warning("could not record %s in MLflow run %s: %s", tag, where, e)
        return f"NOT recorded in run {where}: {e}"
    return f"recorded in run {where}"


def check_gate(fp32_accuracy: float, accuracy: float, max_drop: float, force: bool = False) -> dict:
    """Refuse (`AccuracyGateError`) an accuracy more than `max_drop` points below FP32's.

    With `force`, a failed gate is reported in the returned record instead of raised.
    """
    drop = 100 * (fp32_accuracy - accuracy)
    gate = {
        "max_accuracy_drop": max_drop,
        "accuracy_drop_points": round(drop, 4),
        "passed": drop <= max_drop,
        "forced": False,
    }
    if not gate["passed"]:
        message = (
            f"accuracy gate: test accuracy {accuracy:.4f} is {drop:.2f} points below FP32's "
            f"{fp32_accuracy:.4f} (limit {max_drop} points)"
        )
        if not force:
            raise AccuracyGateError(f"{message}; nothing stored (--force stores it anyway)")
        gate["forced"] = True
        gate["message"] = message
    return gate


def check_invariance(invariance: dict, config: ExportConfig) -> dict:
    """Refuse (`InvarianceGateError`) a model whose scores for a text depend on its batch mates.

    Dynamic activation scales fail by construction and are stored only with
    `allow_batch_dependence`; any other failure (a static graph that still depends on its batch,
    e.g. through a padding bug) only with `force`. Either way the reason is recorded in
    `invariance["stored_because"]`.
    """
    if invariance["passed"]:
        return invariance
    dynamic = config.quantize and config.activation_scales == "dynamic"
    message = (
        f"invariance gate: a text's scores depend on its batch mates: up to "
        f"{invariance['max_diff']:.2e} apart alone vs in batches, "
        f"{invariance['texts_over_tolerance']} of {invariance['texts']} test texts beyond "
        f"{invariance['tolerance']:g}, {invariance['label_flips']} labels flip"
    )
    if dynamic:
        message += (
            "; expected with --activation-scales dynamic (each call quantizes its activations "
            "with its own range)"
        )
        if config.allow_batch_dependence:
            invariance["stored_because"] = "--allow-batch-dependence"
        else:
            raise InvarianceGateError(
                f"{message}; nothing stored (--allow-batch-dependence stores it anyway)"
            )
    elif config.force:
        invariance["stored_because"] = "--force"
    else:
        raise InvarianceGateError(f"{message}; nothing stored (--force stores it anyway)")
    logger.warning("%s; storing anyway because of %s", message, invariance["stored_because"])
    return invariance


def _choose(candidates: dict, tokenizer, test_rows: list[dict], config: ExportConfig):
    """Keep the optimized graph only if it is faster (mode "auto") or asked for (mode "on")."""
    if "optimized" not in candidates:
        return candidates["plain"], {"mode": "off", "applied": False, "decision": "off (not tried)"}
    if config.optimize == "on":
        decision = f"{config.optimization_level} applied (--optimize on, not measured)"
        return candidates["optimized"], {"mode": "on", "applied": True, "decision": decision}
    texts = [r["text"] for r in test_rows[: config.benchmark_rows]]
    classifiers = {
        key: OnnxClassifier(p, tokenizer, config.threads) for key, p in candidates.items()
    }
    speed = dict.fromkeys(classifiers, 0.0)
    for _ in range(2):  # interleaved, best of two: less sensitive to a noisy neighbour
        for key, clf in classifiers.items():
            speed[key] = max(speed[key], clf.throughput(texts, config.batch_size))
    applied = speed["optimized"] > speed["plain"]
    decision = (
        f"{config.optimization_level} {'kept' if applied else 'dropped'}: "
        f"{speed['optimized']:.0f} vs {speed['plain']:.0f} texts/s without"
    )
    logger.info("graph optimization %s", decision)
    info = {
        "mode": "auto",
        "level": config.optimization_level,
        "applied": applied,
        "texts_per_s": {k: round(v, 1) for k, v in speed.items()},
        "decision": decision,
    }
    return candidates["optimized" if applied else "plain"], info


def _row(name: str, size: int, metrics: dict, speed: float) -> tuple:
    return (
        name,
        f"{size / 1e6:.1f}",
        f"{metrics['validation']['accuracy']:.4f}",
        f"{metrics['test']['accuracy']:.4f}",
        f"{metrics['test']['macro_f1']:.4f}",
        f"{speed:.0f}",
    )
