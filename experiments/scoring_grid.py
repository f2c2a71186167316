"""Throughput of batch scoring against a running service, over a grid of batch sizes and
concurrencies:
`python -m experiments.scoring_grid INPUT --text-column text --url http://127.0.0.1:3000`.

Example (the bundled corpus, served by `make serve`):
    python -m experiments.scoring_grid runs/latest/data/train.jsonl --text-column text \\
        --batch-sizes 16,32,64 --concurrency 1,2,4,8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from scoring.config import ScoringConfig
from scoring.score import score_file


def bench(
    input: Path,
    text_column: str,
    url: str,
    batch_sizes: list[int],
    concurrencies: list[int],
    limit: int | None = None,
) -> list[dict]:
    """Score `input` once per (batch size, concurrency); return rows/s for each."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="scoring-grid-") as tmp:
        for bs in batch_sizes:
            for conc in concurrencies:
                cfg = ScoringConfig(
                    input=input,
                    output=Path(tmp) / "out.jsonl",
                    text_column=text_column,
                    url=url,
                    batch_size=bs,
                    concurrency=conc,
                    limit=limit,
                    overwrite=True,
                    progress=False,
                    id_column=text_column,
                )
                s = score_file(cfg)
                rows.append(
                    {
                        "batch_size": bs,
                        "concurrency": conc,
                        "rows": s.rows,
                        "seconds": round(s.seconds, 2),
                        "rows_per_s": round(s.rows_per_s, 1),
                    }
                )
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m experiments.scoring_grid", description=__doc__)
    p.add_argument("input")
    p.add_argument("--text-column", required=True)
    p.add_argument("--url", default="http://127.0.0.1:3000")
    p.add_argument("--batch-sizes", default="16,32,64")
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--limit", type=int)
    a = p.parse_args(argv)
    ints = lambda s: [int(x) for x in s.split(",")]
    results = bench(
        Path(a.input), a.text_column, a.url, ints(a.batch_sizes), ints(a.concurrency), a.limit
    )
    best = max(results, key=lambda r: r["rows_per_s"])
    print(
        f"best: batch_size={best['batch_size']} concurrency={best['concurrency']} "
        f"-> {best['rows_per_s']} rows/s"
    )


if __name__ == "__main__":
    main()
