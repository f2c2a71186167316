"""CLI: `python -m scoring INPUT --text-column COL --output OUTPUT --url URL`."""

from __future__ import annotations

import argparse
import sys

from common.cli import config_from_args
from scoring.config import FORMATS, ScoringConfig, ScoringError


def parse_args(argv: list[str] | None = None) -> ScoringConfig:
    d = ScoringConfig.__dataclass_fields__
    p = argparse.ArgumentParser(
        prog="python -m scoring",
        description="Score a CSV / JSONL / Parquet file against a running POST /classify. "
        "Rerun the same command after an interruption to resume.",
    )
    p.add_argument("input", help="input file (.csv, .jsonl, .parquet; .csv.gz / .jsonl.gz too)")
    p.add_argument("--text-column", required=True, help="column holding the texts")
    p.add_argument("--output", "-o", required=True, help="output file (.csv, .jsonl, .parquet)")
    p.add_argument("--url", help=f"service base URL (default: {d['url'].default})")
    p.add_argument("--input-format", choices=FORMATS, help="override the input extension")
    p.add_argument("--output-format", choices=FORMATS, help="override the output extension")
    p.add_argument("--id-column", help="keep only this input column (plus the predictions)")
    p.add_argument("--all-scores", action="store_true", default=None,
                   help="add a score_<label> per label")  # fmt: skip
    p.add_argument("--prefix", help="prefix of the added columns, e.g. pred_")
    for name, kind, text in [
        ("batch-size", int, "texts per request"),
        ("concurrency", int, "requests in flight"),
        ("chunk-size", int, "rows per committed output chunk / checkpoint"),
        ("timeout", float, "seconds per request"),
        ("retries", int, "retries per request on connection errors and 5xx"),
        ("backoff", float, "first retry delay in seconds, doubled each retry"),
    ]:
        default = d[name.replace("-", "_")].default
        p.add_argument(f"--{name}", type=kind, help=f"{text} (default: {default})")
    p.add_argument("--limit", type=int, help="score only the first N rows")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="discard previous output, start over")  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar")  # fmt: skip
    a = p.parse_args(argv)
    return config_from_args(ScoringConfig, a)


def main(argv: list[str] | None = None) -> int:
    from scoring.score import score_file

    try:
        summary = score_file(parse_args(argv))
    except ScoringError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
