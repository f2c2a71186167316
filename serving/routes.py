"""The paths the service answers, in one place: the API, the probes, the metrics, the docs page
and the web page. The guard (which are public), the metrics (route labels) and the service's
declaration (the API route, the paths without tracing spans) read them from here."""

from __future__ import annotations

CLASSIFY = "/classify"
PROBES = ("/livez", "/readyz", "/healthz")
METRICS = "/metrics"
DOCS = ("/", "/docs.json")  # BentoML's OpenAPI page and its spec
UI = "/ui"  # the web page (serving.webpage)
STATIC = "/static_content"  # the OpenAPI page's assets

SERVED = (CLASSIFY, *PROBES, METRICS, *DOCS)  # exact paths
PREFIXES = (UI, STATIC)  # a path under one of these belongs to it
PUBLIC = frozenset({*PROBES, *DOCS})  # open without the API key, with everything under PREFIXES
UNTRACED = (CLASSIFY, *PROBES, METRICS)  # no OpenTelemetry span per request
