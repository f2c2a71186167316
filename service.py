"""Sentiment classification service: `bentoml serve service:SentimentClassifier`.

POST /classify {"texts": [...]} -> [{"label", "score", "scores"}, ...] in input order.
Settings come from environment variables (`serving.settings.ServiceSettings`, README).
"""

from __future__ import annotations

import bentoml

from serving import metrics
from serving.batch import BatchRunner
from serving.bento import ServerBounds, StoredModel, cap_batch_wait, quiet_client_errors
from serving.middleware import Guard
from serving.monitor import PredictionMonitor
from serving.schema import EXAMPLE_TEXTS, Prediction, text_list_type
from serving.settings import ServiceSettings

SETTINGS = ServiceSettings.from_env()
Texts = text_list_type(SETTINGS.max_items, SETTINGS.max_text_chars)
EXAMPLE_INPUT = {"texts": EXAMPLE_TEXTS}


@bentoml.service(
    workers=SETTINGS.workers,
    # The guard answers 504 at REQUEST_TIMEOUT_S; BentoML's own timeout is only a backstop.
    traffic={"timeout": SETTINGS.request_timeout_s + SETTINGS.graceful_shutdown_s},
    metrics={"enabled": False},  # BentoML's HTTP metrics label raw paths (serving.metrics)
    logging={"access": {"enabled": False}},  # ACCESS_LOG: the guard's lines carry request ids
)
class SentimentClassifier:
    bento_model = StoredModel(SETTINGS.model_tag)  # a bentoml.models.BentoModel

    def __init__(self) -> None:
        cap_batch_wait(SETTINGS.batch_wait_ms / 1000, SETTINGS.batch_min_wait_ms / 1000)
        quiet_client_errors()
        self.bounds = ServerBounds.apply(
            SETTINGS.graceful_shutdown_s, SETTINGS.keepalive_timeout_s, SETTINGS.header_timeout_s
        )
        self.model = BatchRunner(
            self.bento_model.path,
            SETTINGS.processes,
            SETTINGS.session_threads,
            SETTINGS.sub_batch_size,
            SETTINGS.sub_batch_tokens,
            SETTINGS.ort_spinning,
        ).start()
        self.model.metrics = metrics.setup(self.model.labels, SETTINGS.max_batch_size)
        self.model.monitor = PredictionMonitor.from_settings(
            SETTINGS, self.bento_model, self.model.classifier
        )

    @bentoml.on_startup
    async def watch_connections(self) -> None:
        if self.bounds is not None:
            self.bounds.start_watchdog()

    @bentoml.on_shutdown
    def stop(self) -> None:
        if self.bounds is not None:
            self.bounds.stop()
        self.model.close()

    def __is_ready__(self) -> bool:
        """Not ready once shutdown starts, or with no inference process alive."""
        return not (self.bounds and self.bounds.draining) and self.model.healthy()

    @bentoml.api(
        route="/classify",
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
    async def classify(self, texts: Texts) -> list[Prediction]:
        """Label each text with the model's labels; answers in input order."""
        return await self.model.classify(texts)


SentimentClassifier.add_asgi_middleware(
    Guard,
    api_key=SETTINGS.resolved_api_key(),
    body_limit=SETTINGS.body_limit,
    body_timeout_s=SETTINGS.body_timeout_s,
    request_timeout_s=SETTINGS.request_timeout_s,
    max_concurrency=SETTINGS.max_concurrency,
    access_log=SETTINGS.access_log,
)
