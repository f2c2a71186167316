"""Batch scoring: stream a CSV / JSONL / Parquet file through a running `POST /classify`.

`python -m scoring INPUT --text-column COL --output OUTPUT --url URL`; the plain function is
`scoring.score.score_file(ScoringConfig(...))`. Clients talk HTTP only: nothing here imports the
service.
"""

from scoring.config import ScoringConfig, ScoringError

__all__ = ["ScoringConfig", "ScoringError"]
