"""The peer a user would pick instead of this project: a LitServe server of the same stored
ONNX model and tokenizer, run by the same inference code (`serving.inference.Classifier`),
with LitServe's own dynamic batching and its documented settings, and the same request and
answer format as `POST /classify`:

    python -m loadtest.peer --model-dir ~/bentoml/models/sentiment-classifier/<version> \\
        --port 8100 --workers 2 --max-batch-size 4 --batch-timeout 0.002

`--workers` inference processes (`workers_per_device` on the CPU "device"), each with one
single-thread ONNX Runtime session (the best arrangement on this machine, as for the service).
Each batch of requests is flattened into one list of texts and classified:
- `--inference padded` (the default: what LitServe's docs show, and what a user writes): the
  whole batch tokenized with padding to its longest text and run in one ONNX Runtime call;
- `--inference leaf`: this project's inference code (`serving.inference.Classifier`:
  length-sorted sub-batches with a token budget), to compare the servers alone.
Ready when GET /health answers 200.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import litserve as ls
from fastapi import HTTPException

MAX_ITEMS = 64


class SentimentAPI(ls.LitAPI):
    """`{"texts": [...]}` -> `[{"label", "score", "scores"}, ...]`, batched across requests."""

    def __init__(
        self, model_dir: Path, threads: int = 1, inference: str = "padded", **kwargs: Any
    ) -> None:
        super().__init__(api_path="/classify", **kwargs)
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.inference = inference

    def setup(self, device: str) -> None:
        from serving.inference import Classifier

        self.classifier = Classifier.from_dir(self.model_dir, threads=self.threads)
        if self.inference == "padded":  # one padded call per batch, as a user would write it
            self.classifier.sub_batch_size, self.classifier.sub_batch_tokens = 1 << 30, None
        self.classifier.predict(["warm-up"])

    def decode_request(self, request: dict) -> list[str]:
        texts = request.get("texts") if isinstance(request, dict) else None
        if not (isinstance(texts, list) and 0 < len(texts) <= MAX_ITEMS):
            raise HTTPException(400, f"'texts' must be a list of 1 to {MAX_ITEMS} strings")
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise HTTPException(400, "every text must be a non-blank string")
        return texts

    def batch(self, inputs: list[list[str]]) -> list[list[str]]:
        return inputs

    def predict(self, batch: list[list[str]]) -> list[list[dict]]:
        flat = [text for texts in batch for text in texts]
        predictions = self.classifier.predict(flat, sort=self.inference != "padded")
        out, start = [], 0
        for texts in batch:
            out.append(predictions[start : start + len(texts)])
            start += len(texts)
        return out

    def unbatch(self, output: list[list[dict]]) -> list[list[dict]]:
        return output

    def encode_response(self, output: list[dict]) -> list[dict]:
        return output


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.peer", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="a stored model's folder")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=2, help="inference processes")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads each")
    parser.add_argument("--max-batch-size", type=int, default=16, help="requests per batch")
    parser.add_argument("--batch-timeout", type=float, default=0.005, help="seconds to fill one")
    parser.add_argument("--api-servers", type=int, default=1, help="HTTP server processes")
    parser.add_argument(
        "--inference",
        choices=("padded", "leaf"),
        default="padded",
        help="one padded call per batch, or this project's inference code",
    )
    args = parser.parse_args(argv)
    api = SentimentAPI(
        args.model_dir,
        threads=args.threads,
        inference=args.inference,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
    )
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers)
    server.run(
        host=args.host,
        port=args.port,
        num_api_servers=args.api_servers,
        generate_client_file=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
