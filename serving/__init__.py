"""The serving runtime of `service.py`, one job per module.

- `inference`: tokenize -> ONNX Runtime -> class probabilities. A leaf (numpy, onnxruntime,
  tokenizers): the one module that export/, loadtest/ and batch engines (Ray actors) import.
- `pool`: dedicated inference processes (one single-thread ONNX Runtime session each) that the
  service feeds its length-sorted sub-batches to; stdlib + `inference` only.
- `settings`: the service's settings, read from environment variables.
- `schema`: the request / response types of `POST /classify`.
- `metrics`: the model's Prometheus metrics (through `bentoml.metrics`).
- `middleware`: the ASGI guard in front of the API (limits, auth, request ids, timeouts, logs).
- `bento`: the stored-model reference (a `BentoModel` that fails with a how-to).
- `adjustments`: every adjustment of BentoML's and uvicorn's internals, applied by one call
  at start-up that reports what applied.
- `routes`: the paths the service answers (API, probes, metrics, docs, web page).
- `webpage`: the web page at /ui (static files in `ui/`), a client of `POST /classify`.
- `drift`: drift statistics (the reference profile a model carries, PSI, the recent-texts
  window); numpy only, shared with `python -m monitoring report`.
- `monitor`: the prediction log and the live drift gauges, fed one call per batch, working in
  a background thread.

Importing this package imports nothing.
"""
