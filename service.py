"""Sentiment classification service: `bentoml serve service:SentimentClassifier`.

POST /classify {"texts": [...]} -> [{"label", "score", "scores"}, ...] in input order.
Settings (model tag, limits, batching, workers, threads) come from environment variables:
see `sentiment_runtime.ServiceConfig`.
"""

from __future__ import annotations

import asyncio

import bentoml

from sentiment_runtime import (
    EXAMPLE_TEXTS,
    Classifier,
    Prediction,
    RequestGuard,
    ServiceConfig,
    StoredModel,
    cap_batch_wait,
    prometheus_observer,
    text_list_type,
)

CONFIG = ServiceConfig.from_env()
Texts = text_list_type(CONFIG)
EXAMPLE_INPUT = {"texts": EXAMPLE_TEXTS}


@bentoml.service(
    workers=CONFIG.workers,
    traffic={"timeout": CONFIG.request_timeout_s, "max_concurrency": CONFIG.max_concurrency},
    logging={"access": {"enabled": bool(CONFIG.access_log)}},
)
class SentimentClassifier:
    bento_model = StoredModel(CONFIG.model_tag)  # a bentoml.models.BentoModel

    def __init__(self) -> None:
        cap_batch_wait(CONFIG.batch_wait_ms / 1000, CONFIG.batch_min_wait_ms / 1000)
        self.classifier = Classifier.from_dir(
            self.bento_model.path,
            CONFIG.intra_op_threads(),
            CONFIG.sub_batch_size,
            bool(CONFIG.ort_spinning),
        )
        self.classifier.predict(EXAMPLE_TEXTS)  # warm-up: the first request is not slow
        self.classifier.observe = prometheus_observer(CONFIG.max_batch_size)

    @bentoml.api(
        route="/classify",
        batchable=True,
        max_batch_size=CONFIG.max_batch_size,
        max_latency_ms=CONFIG.max_latency_ms,
    )
    async def classify(self, texts: Texts) -> list[Prediction]:
        """Label each text as the model's labels say; answers in input order."""
        return await asyncio.to_thread(self.classifier.predict, texts)


SentimentClassifier.add_asgi_middleware(RequestGuard, max_body_bytes=CONFIG.max_body_bytes)
