"""The closing summary both engines print."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Summary:
    """What a run did (cumulative over resumed runs, except `seconds` and `rows_this_run`)."""

    output: Path | str
    rows: int
    rows_this_run: int
    seconds: float
    label_counts: dict[str, int]
    skipped: dict[str, int]
    resumed_from: int = 0
    requests: int = 0
    retries: int = 0
    engine: str = "http"
    extra: dict = field(default_factory=dict)  # engine details: actors, start-up time, model

    @property
    def rows_per_s(self) -> float:
        return self.rows_this_run / self.seconds if self.seconds > 0 else math.nan

    def __str__(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(self.label_counts.items())) or "none"
        skipped = sum(self.skipped.values())
        reasons = "; ".join(f"{v} {k}" for k, v in sorted(self.skipped.items()))
        if self.engine == "http":
            how = f"{self.requests} requests, {self.retries} retries"
        else:
            how = ", ".join(f"{k} {v}" for k, v in self.extra.items())
        lines = [
            f"scored {self.rows} rows -> {self.output}"
            + (f" (resumed at row {self.resumed_from})" if self.resumed_from else ""),
            (
                f"this run: {self.rows_this_run} rows in {self.seconds:.1f} s "
                f"({self.rows_per_s:.1f} rows/s), {self.engine} engine: {how}"
            ),
            f"labels: {labels}",
            f"rows skipped (label empty, see the error column): {skipped}"
            + (f" ({reasons})" if skipped else ""),
        ]
        return "\n".join(lines)
