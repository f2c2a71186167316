"""CLI: `python -m scoring INPUT --text-column COL --output OUTPUT [--engine http|ray] ...`."""

from __future__ import annotations

import argparse
import sys
from functools import partial

from common.cli import config_from_args, field_default, given, with_default
from scoring.config import (
    API_KEY_ENV,
    ENGINES,
    FORMATS,
    HTTP_BATCH_SIZE,
    RAY_BATCH_SIZE,
    ScoringConfig,
    ScoringError,
)

HTTP_ONLY = ("url", "api_key", "concurrency", "chunk_size", "timeout", "retries", "backoff")
RAY_ONLY = ("model", "actors", "address", "max_text_chars")


def parse_args(argv: list[str] | None = None) -> ScoringConfig:
    d = partial(with_default, ScoringConfig)  # "text (default: X)", X from ScoringConfig
    p = argparse.ArgumentParser(
        prog="python -m scoring",
        description="Score a CSV / JSONL / Parquet file: through a running POST /classify "
        "(--engine http, the default; rerun the same command after an interruption to resume) "
        "or with the model itself on Ray Data actors (--engine ray: a file, directory, glob or "
        "URI, locally or on a Ray cluster). Both write the same columns.",
    )
    p.add_argument(
        "input",
        help="input file (.csv, .jsonl, .parquet; .csv.gz / .jsonl.gz "
        "too); with --engine ray also a directory, a glob or a URI (s3://, gs://)",
    )
    p.add_argument("--text-column", required=True, help="column holding the texts")
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="output file (.csv, .jsonl, .parquet); with --engine ray also a URI",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        help=d(
            "engine", "http: a running service; ray: Ray Data actors running the model, no HTTP"
        ),
    )
    p.add_argument("--input-format", choices=FORMATS, help="override the input extension")
    p.add_argument("--output-format", choices=FORMATS, help="override the output extension")
    p.add_argument("--id-column", help="keep only this input column (plus the predictions)")
    p.add_argument(
        "--all-scores", action="store_true", default=None, help="add a score_<label> per label"
    )
    p.add_argument("--prefix", help="prefix of the added columns, e.g. pred_")
    p.add_argument(
        "--batch-size",
        type=int,
        help="texts per request (http, default: "
        f"{HTTP_BATCH_SIZE}) or rows per actor call (ray, default: {RAY_BATCH_SIZE})",
    )
    p.add_argument("--limit", type=int, help="score only the first N rows")
    p.add_argument(
        "--overwrite", action="store_true", default=None, help="discard previous output, start over"
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no progress bar"
    )

    http = p.add_argument_group("HTTP engine")
    http.add_argument("--url", help=d("url", "service base URL"))
    http.add_argument(
        "--api-key",
        help=f"the service's API key, sent as Authorization: Bearer "
        f"(better: the {API_KEY_ENV} environment variable, kept out of shell "
        "history and `ps`)",
    )
    for name, kind, text in [
        ("concurrency", int, "requests in flight"),
        ("chunk-size", int, "rows per committed output chunk / checkpoint"),
        ("timeout", float, "seconds per request"),
        ("retries", int, "retries per request on connection errors and 5xx"),
        ("backoff", float, "first retry delay in seconds, doubled each retry"),
    ]:
        http.add_argument(f"--{name}", type=kind, help=d(name.replace("-", "_"), text))

    ray = p.add_argument_group("Ray engine")
    ray.add_argument(
        "--model",
        help="stored-model tag, a directory holding model.onnx, "
        "tokenizer.json and model_config.json, or its URI (default: $MODEL_TAG, "
        "else sentiment-classifier:latest, as the service)",
    )
    ray.add_argument(
        "--actors",
        type=int,
        help="model actors, one CPU each (default: one per CPU of the cluster)",
    )
    ray.add_argument(
        "--address",
        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray on this machine)",
    )
    ray.add_argument(
        "--max-text-chars",
        type=int,
        help=d("max_text_chars", "longer texts get an error, like the service's MAX_TEXT_CHARS"),
    )
    a = p.parse_args(argv)
    engine = a.engine or field_default(ScoringConfig, "engine")
    other = RAY_ONLY if engine == "http" else HTTP_ONLY
    wrong = [f"--{k.replace('_', '-')}" for k in given(a, other)]
    if wrong:
        p.error(
            f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not for --engine {engine}"
        )
    return config_from_args(ScoringConfig, a)


def main(argv: list[str] | None = None) -> int:
    from scoring.score import score_file

    cfg = None
    try:
        cfg = parse_args(argv)
        summary = score_file(cfg)
    except ScoringError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if cfg is not None and cfg.engine == "ray":
            print(
                f"interrupted: nothing was written to {cfg.output}; rerun the same command "
                "to score the input from the start",
                file=sys.stderr,
            )
        else:
            print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
