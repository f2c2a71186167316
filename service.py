"""Sentiment classification service: `bentoml serve service:SentimentClassifier`.

POST /classify {"texts": [...]} -> [{"label", "score", "scores"}, ...] in input order.
Settings come from environment variables (`serving.settings.ServiceSettings`, README).
A web page to try it is at /ui (`serving.webpage`).
"""

from __future__ import annotations

import logging

import bentoml

from serving import metrics, webpage
from serving.batch import BatchRunner
from serving.bento import (
    ServerBounds,
    StoredModel,
    cap_batch_wait,
    concurrent_batches,
    quiet_client_errors,
)
from serving.middleware import Guard
from serving.monitor import PredictionMonitor
from serving.schema import EXAMPLE_TEXTS, Prediction, text_list_type
from serving.settings import ServiceSettings

logging.getLogger("serving").setLevel(logging.INFO)  # our lines show beside BentoML's
SETTINGS = ServiceSettings.from_env()
concurrent_batches(max(SETTINGS.processes, 1))  # one adaptive batch in flight per process
Texts = text_list_type(SETTINGS.max_items, SETTINGS.max_text_chars)
EXAMPLE_INPUT = {"texts": EXAMPLE_TEXTS}
webpage.show_description_on_index()


@bentoml.asgi_app(webpage.app(), path="/", name="ui")  # only /ui and /ui/...: see serving.webpage
@bentoml.service(
    description=webpage.DESCRIPTION,  # the header of the page at /, with the link to /ui
    workers=SETTINGS.workers,
    # The guard answers 504 at REQUEST_TIMEOUT_S; BentoML's own timeout is only a backstop.
    traffic={"timeout": SETTINGS.request_timeout_s + SETTINGS.graceful_shutdown_s},
    metrics={"enabled": False},  # BentoML's HTTP metrics label raw paths (serving.metrics)
    # No OpenTelemetry span per request unless a BentoML config file asks for them (tracing is
    # off by default, yet each span cost ~20% of a request's CPU): see the README.
    tracing={"excluded_urls": "/classify,/livez,/readyz,/healthz,/metrics"},
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


# The API always answers JSON: say so, instead of BentoML deriving it from the output's JSON
# schema on every response (~15% of a 1-text request's CPU).
SentimentClassifier.apis["classify"].output_spec.media_type = "application/json"
SentimentClassifier.inner.bento_model.check()  # a missing or corrupt model file stops start-up here
SentimentClassifier.add_asgi_middleware(
    Guard,
    api_key=SETTINGS.resolved_api_key(),
    body_limit=SETTINGS.body_limit,
    body_timeout_s=SETTINGS.body_timeout_s,
    request_timeout_s=SETTINGS.request_timeout_s,
    max_concurrency=SETTINGS.max_concurrency,
    access_log=SETTINGS.access_log,
)
