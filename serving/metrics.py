"""The service's Prometheus metrics, every label from a closed set.

BentoML's own HTTP metrics label each request with its raw path, so every unknown path a client
invents becomes new series that are never freed; the service turns them off
(`metrics={"enabled": False}`) and records its own here, labelled by route template ("other"
for any path it does not serve). `bentoml.metrics` is deprecated in BentoML 1.4 in favour of
prometheus_client, which is used directly, imported only once the worker has set
PROMETHEUS_MULTIPROC_DIR (its multiprocess mode is chosen on import).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Sequence
from typing import Any

from serving import routes

OTHER = "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def route_label(path: str) -> str:
    """The route a path belongs to (a path under a prefix: the prefix), or "other": never the
    raw path."""
    if path in routes.SERVED:
        return path
    for prefix in routes.PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            return prefix
    return OTHER


class Metrics:
    """The collectors, created once per process (see `metrics()`)."""

    def __init__(self, labels: Sequence[str], max_batch_size: int) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.labels = list(labels)
        self.requests = Counter(
            "sentiment_http_requests", "HTTP requests answered", ["route", "status"]
        )
        self.duration = Histogram(
            "sentiment_http_request_duration_seconds",
            "Time from the request head to the last byte of the answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
        )
        self.in_flight = Gauge(
            "sentiment_http_requests_in_flight",
            "Requests being read, queued or classified",
            multiprocess_mode="livesum",
        )
        batch_buckets = [2**i for i in range(max(max_batch_size, 1).bit_length() + 1)]
        self.batch_size = Histogram(
            "sentiment_batch_size",
            "Texts per adaptive batch (one call of the inference function)",
            buckets=batch_buckets,
        )
        self.inference = Histogram(
            "sentiment_inference_seconds",
            "Time to classify one adaptive batch (tokenize, infer, postprocess)",
            buckets=LATENCY_BUCKETS,
        )
        self.tokens = Histogram(
            "sentiment_tokens_per_text",
            "Tokens per text after truncation to the model window",
            buckets=[4, 8, 16, 32, 64, 128, 256, 512],
        )
        self.truncated = Counter("sentiment_truncated_texts", "Texts truncated to the model window")
        self.predictions = Counter("sentiment_predictions", "Predictions per label", ["label"])
        self.inference_processes = Gauge(
            "sentiment_inference_processes",
            "Inference processes running (set at start-up, by readiness probes and per batch)",
            multiprocess_mode="livesum",
        )
        self.head_timeouts = Counter(
            "sentiment_http_head_timeouts",
            "Connections answered 408 and closed for sending no complete request head within "
            "HEADER_TIMEOUT_S (slow or idle clients)",
        )
        # every label shows from the start (rates of 0, not absent)
        self._predicted = {label: self.predictions.labels(label=label) for label in self.labels}
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:  # a child per (route, status) seen: a closed set, looked up once
            children = self._request_children[key] = (
                self.requests.labels(route=route, status=str(status)),
                self.duration.labels(route=route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def observe_batch(
        self, tokens: Iterable[int], truncated: int, labels: Iterable[str], seconds: float
    ) -> None:
        tokens = list(tokens)
        self.batch_size.observe(len(tokens))
        self.inference.observe(seconds)
        for n in tokens:
            self.tokens.observe(n)
        if truncated:
            self.truncated.inc(truncated)
        for label, count in collections.Counter(labels).items():  # one update per label
            self._predicted[label].inc(count)


_current: Metrics | None = None


def setup(labels: Sequence[str], max_batch_size: int) -> Metrics:
    """Create this process's collectors (once, in the worker, when the model is loaded)."""
    global _current
    if _current is None:
        _current = Metrics(labels, max_batch_size)
    return _current


def current() -> Metrics | None:
    """This process's collectors, or None before `setup`."""
    return _current


def exposition() -> tuple[bytes, str]:
    """The text exposition of every worker's metrics (multiprocess mode), and its media type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client.multiprocess import MultiProcessCollector

        registry: Any = CollectorRegistry()
        MultiProcessCollector(registry)
    else:  # a single process (tests running the ASGI app in-process)
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


class DriftMetrics:
    """The drift gauges (`serving.monitor`). With WORKERS > 1 each worker scores its own window
    of recent texts; the exposed score is the largest over the live workers (`livemax`)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        self.score = Gauge(
            "sentiment_drift_score",
            "PSI of a feature over the last DRIFT_WINDOW texts against the model's reference "
            "profile (0.1: moderate shift, 0.25: drift); the largest over live workers",
            ["feature"],
            multiprocess_mode="livemax",
        )
        self.window = Gauge(
            "sentiment_drift_window_texts",
            "Texts in the drift windows of the live workers",
            multiprocess_mode="livesum",
        )
        self.dropped = Counter(
            "sentiment_prediction_log_dropped",
            "Texts left out of the prediction log and drift window (the writer fell behind)",
        )


_drift: DriftMetrics | None = None


def drift_setup() -> DriftMetrics:
    """Create this process's drift collectors (once, in the worker)."""
    global _drift
    if _drift is None:
        _drift = DriftMetrics()
    return _drift
