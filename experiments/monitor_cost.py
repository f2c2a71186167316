"""What the prediction monitor costs per text, in-process: `python -m experiments.monitor_cost`.

Runs the service's own `PredictionMonitor` (file log to a temp dir, drift window against the
model's profile) on real batches of the run's test texts, already classified, and reports the
CPU time of the process per text: the monitor's whole work, the request-path part included.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.monitor_cost", description=__doc__)
    p.add_argument("--model", default="sentiment-classifier:latest")
    p.add_argument("--run-dir", type=Path, default=Path("runs/latest"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args(argv)

    import bentoml

    from serving.drift import PROFILE_FILE, Profile
    from serving.inference import Classifier
    from serving.monitor import PredictionMonitor, RotatingFile

    model = bentoml.models.get(args.model)
    clf = Classifier.from_dir(model.path, threads=1)
    texts = [json.loads(line)["text"] for line in (args.run_dir / "data/test.jsonl").open()]
    batches = []
    for i in range(0, min(len(texts), 256), args.batch_size):
        part = texts[i : i + args.batch_size]
        encodings = clf.encode(part)
        batches.append((part, encodings, clf.predictions(clf.probabilities(encodings))))
    profile = Profile.load(Path(model.path) / PROFILE_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        log_a = RotatingFile(Path(tmp) / "a.jsonl", 1 << 30, 0)
        log_b = RotatingFile(Path(tmp) / "b.jsonl", 1 << 30, 0)
        setups = {
            "log + drift": {"sink": log_a, "profile": profile},
            "log only": {"sink": log_b},
            "drift only": {"profile": profile},
        }
        for name, parts in setups.items():
            monitor = PredictionMonitor(str(model.tag), clf.labels, clf.unk_id, **parts)
            n, in_caller, started = 0, 0.0, cpu_seconds()
            for _ in range(args.rounds):
                for part, encodings, predictions in batches:
                    t = time.perf_counter()
                    monitor.observe(part, encodings, predictions)
                    in_caller += time.perf_counter() - t
                    n += len(part)
                monitor.drain()
            spent = cpu_seconds() - started
            monitor.close()
            print(
                f"{name:>11}: {1e6 * spent / n:5.1f} us CPU per text "
                f"({1e6 * in_caller / n:.2f} us in the request path), {n} texts"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
