"""The usual way to serve a fine-tuned model, as a yardstick: FastAPI + a transformers
`pipeline("text-classification")` on PyTorch FP32, no batching across requests.

Two ways to call the pipeline (`--batching`):
- `request` (default): the texts of one request in one padded forward pass (the baseline's most
  favourable setting);
- `text`: `pipe(texts)` with the pipeline's default batch size of 1, one forward pass per text,
  as most code that wraps a pipeline does.

Same contract as the service (`{"texts": [...]}` -> `[{"label", "score", "scores"}, ...]`), so the
same locustfile drives both:

    python -m loadtest.baseline --model-dir runs/latest/model --port 8000   # uvicorn, 1 worker
    python -m loadtest.baseline --batching text ...                         # 1 text per pass

Forward passes are serialized by a lock: concurrent PyTorch calls from FastAPI's thread pool would
only fight over the same cores (this is the baseline's most favourable setting, not a handicap).
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

MAX_ITEMS = 64
BATCHING = ("request", "text")


class ClassifyRequest(BaseModel):
    texts: list[str] = Field(min_length=1, max_length=MAX_ITEMS)


def run_max_length(model_dir: Path) -> int | None:
    """The training window from the run's `run_info.json` next to `model/`, if there is one."""
    info = Path(model_dir).parent / "run_info.json"
    return int(json.loads(info.read_text())["max_length"]) if info.is_file() else None


class BaselineModel:
    """A transformers text-classification pipeline (PyTorch, FP32, CPU) behind a lock."""

    def __init__(
        self,
        model_dir: str | Path,
        max_length: int | None = None,
        threads: int | None = None,
        batching: str = "request",
    ) -> None:
        if batching not in BATCHING:
            raise ValueError(f"batching must be one of {BATCHING}, not {batching!r}")
        self.batching = batching
        import torch
        from transformers import pipeline

        if threads:
            torch.set_num_threads(threads)
        self.pipe = pipeline(
            "text-classification", model=str(model_dir), tokenizer=str(model_dir), device=-1
        )
        self.max_length = (
            max_length or run_max_length(Path(model_dir)) or self.pipe.tokenizer.model_max_length
        )
        self.labels = [
            self.pipe.model.config.id2label[i] for i in range(self.pipe.model.num_labels)
        ]
        self.lock = threading.Lock()

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Answers in input order: one forward pass over `texts` (padded to the longest), or
        one per text with `batching="text"`."""
        batch = {"batch_size": len(texts)} if self.batching == "request" else {}
        with self.lock:
            outputs = self.pipe(
                list(texts), top_k=None, truncation=True, max_length=self.max_length, **batch
            )
        answers = []
        for scored in outputs:
            scores = {s["label"]: float(s["score"]) for s in scored}
            best = max(scores, key=scores.__getitem__)
            answers.append(
                {
                    "label": best,
                    "score": scores[best],
                    "scores": {label: scores[label] for label in self.labels},
                }
            )
        return answers


def create_app(model: BaselineModel):
    """The FastAPI app: POST /classify, GET /readyz."""
    from fastapi import FastAPI

    app = FastAPI(title="baseline: transformers pipeline on PyTorch FP32")

    @app.post("/classify")
    def classify(request: ClassifyRequest) -> list[dict[str, Any]]:
        return model.predict(request.texts)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m loadtest.baseline", description=__doc__)
    parser.add_argument("--model-dir", default="runs/latest/model", help="HF model + tokenizer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--batching",
        choices=BATCHING,
        default="request",
        help="one forward pass per request (default) or per text (the pipeline's default)",
    )
    args = parser.parse_args(argv)
    model = BaselineModel(args.model_dir, threads=args.threads, batching=args.batching)
    app = create_app(model)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning")


if __name__ == "__main__":
    main()
