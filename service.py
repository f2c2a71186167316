"""Sentiment classification service: `bentoml serve service:SentimentClassifier`.

POST /classify {"texts": [...]} -> [{"label", "score", "scores"}, ...] in input order.
Settings come from environment variables (`serving.settings.ServiceSettings`, docs/serving.md).
A web page to try it is at /ui (`serving.webpage`).

On import this reads the settings and declares the service, nothing else: the adjustments of
BentoML's and uvicorn's internals are applied by one call when a worker starts the service
(`serving.adjustments.apply`). `declare(settings)` builds the same service with other settings
(the in-process tests: `declare(settings).to_asgi()`).
"""

import logging
from typing import Annotated

import bentoml
from bentoml.validators import ContentType

from serving import adjustments, metrics, routes, webpage
from serving.batch import BatchRunner
from serving.bento import StoredModel
from serving.middleware import Guard
from serving.monitor import PredictionMonitor
from serving.schema import Prediction, text_list_type
from serving.settings import ServiceSettings

SETTINGS = ServiceSettings.from_env()
# The API always answers JSON: declared, instead of BentoML deriving it from the output's JSON
# schema on every response (~15% of a 1-text request's CPU).
Predictions = Annotated[list[Prediction], ContentType("application/json")]


def declare(settings: ServiceSettings) -> bentoml.Service:
    """The service, configured by `settings`."""
    Texts = text_list_type(settings.max_items, settings.max_text_chars)

    @bentoml.asgi_app(webpage.app(), path="/", name="ui")  # only /ui and /ui/...: serving.webpage
    @bentoml.service(
        description=webpage.DESCRIPTION,  # the header of the page at /, with the link to /ui
        workers=settings.workers,
        # The guard answers 504 at REQUEST_TIMEOUT_S; BentoML's own timeout is only a backstop.
        traffic={"timeout": settings.request_timeout_s + settings.graceful_shutdown_s},
        metrics={"enabled": False},  # BentoML's HTTP metrics label raw paths (serving.metrics)
        # No OpenTelemetry span per request on the hot routes, even where a BentoML config file
        # turns tracing on (it is off by default): a span costs more than the guard's whole work.
        tracing={"excluded_urls": ",".join(routes.UNTRACED)},
        logging={"access": {"enabled": False}},  # ACCESS_LOG: the guard's lines carry request ids
    )
    class SentimentClassifier:
        bento_model = StoredModel(settings.model_tag)  # a bentoml.models.BentoModel

        def __init__(self) -> None:
            logging.getLogger("serving").setLevel(logging.INFO)  # our lines beside BentoML's
            stored = self.bento_model  # the resolved bentoml.Model, on an instance
            self.adjustments = adjustments.apply(
                settings, service=SentimentClassifier, version=stored.tag.version
            )
            self.model = BatchRunner(
                stored.path,
                settings.processes,
                settings.session_threads,
                settings.sub_batch_size,
                settings.sub_batch_tokens,
                settings.ort_spinning,
            ).start()
            self.model.metrics = metrics.setup(self.model.labels, settings.max_batch_size)
            self.model.alive()  # the inference-process gauge from the start
            self.model.monitor = PredictionMonitor.from_settings(
                settings, self.bento_model, self.model.classifier
            )

        @bentoml.on_startup
        async def watch_connections(self) -> None:
            self.adjustments.start()

        @bentoml.on_shutdown
        def stop(self) -> None:
            self.adjustments.stop()
            self.model.close()

        def __is_ready__(self) -> bool:
            """Not ready once shutdown starts, or with no inference process alive."""
            return not self.adjustments.draining and self.model.healthy()

        @bentoml.api(
            route=routes.CLASSIFY,
            batchable=True,
            max_batch_size=settings.max_batch_size,
            max_latency_ms=settings.max_latency_ms,
        )
        async def classify(self, texts: Texts) -> Predictions:
            """Label each text with the model's labels; answers in input order."""
            return await self.model.classify(texts)

    SentimentClassifier.inner.bento_model.check()  # a missing or corrupt model stops start-up
    SentimentClassifier.add_asgi_middleware(
        Guard,
        api_key=settings.resolved_api_key(),
        body_limit=settings.body_limit,
        body_timeout_s=settings.body_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        max_concurrency=settings.max_concurrency,
        access_log=settings.access_log,
    )
    return SentimentClassifier


SentimentClassifier = declare(SETTINGS)
