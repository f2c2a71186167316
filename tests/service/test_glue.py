"""The BentoML glue: the missing-model how-to, and the guarded adjustments of BentoML's and
uvicorn's internals. These tests fail when an upgrade removes what the adjustments rely on."""

from __future__ import annotations

import logging

import pytest

from serving.bento import (
    ClientErrorTracebacks,
    StoredModel,
    cap_batch_wait,
    dispatcher_optimizer,
)


def test_missing_model_says_how_to_make_one():
    from bentoml.exceptions import NotFound

    with pytest.raises(NotFound, match=r"sentiment-classifier:nope .*make model"):
        StoredModel("sentiment-classifier:nope").resolve()


def test_dispatcher_internals_the_wait_cap_needs_are_there():
    assert dispatcher_optimizer() is not None


def test_batch_wait_is_capped_after_a_burst(monkeypatch):
    optimizer_cls = dispatcher_optimizer()
    # Start from BentoML's own method, even if the service was instantiated in this process.
    original = (
        getattr(optimizer_cls, "uncapped_trigger_refresh", None) or optimizer_cls.trigger_refresh
    )
    monkeypatch.setattr(optimizer_cls, "trigger_refresh", original)
    monkeypatch.setattr(optimizer_cls, "uncapped_trigger_refresh", None, raising=False)
    optimizer = optimizer_cls(max_latency=10.0)
    for _ in range(10):  # a burst: batches of 8 waited 2 s each in the queue
        optimizer.o_stat.append((8, 0.2, 2.0))
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(2.0)  # BentoML alone: lone requests now wait ~2 s

    assert cap_batch_wait(0.01)
    assert cap_batch_wait(0.01)  # idempotent: wraps BentoML's own method, not itself
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.01)
    assert optimizer.o_a > 0  # the latency model BentoML sheds by is still learned
    assert cap_batch_wait(0.5, min_wait_s=0.1)
    optimizer.o_stat.clear()
    optimizer.o_stat.append((1, 0.001, 0.0))  # an idle model: BentoML alone would wait 0 s
    optimizer.trigger_refresh()
    assert optimizer.wait == pytest.approx(0.1)


def test_cap_warns_and_leaves_bentoml_alone_when_internals_change(monkeypatch, caplog):
    import serving.bento

    monkeypatch.setattr(serving.bento, "dispatcher_optimizer", lambda: None)
    with caplog.at_level(logging.WARNING, logger="serving.bento"):
        assert not serving.bento.cap_batch_wait(0.01)
    assert "BATCH_WAIT_MS" in caplog.text and "bentoml 1." in caplog.text


def _record(error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "Exception on /classify", (), exc_info
    )


def test_client_error_tracebacks_are_dropped_server_errors_kept():
    from bentoml.exceptions import BadInput, InternalServerError, ServiceUnavailable
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(int).validate_python("x")
    except ValidationError as e:
        validation = e
    keep = ClientErrorTracebacks().filter
    assert not keep(_record(validation))
    assert not keep(_record(BadInput("bad")))
    assert not keep(_record(ServiceUnavailable("process is overloaded")))
    assert keep(_record(InternalServerError("boom")))
    assert keep(_record(RuntimeError("a bug")))
    assert keep(_record(None))


def test_uvicorn_internals_the_server_bounds_need_are_there():
    """`ServerBounds` finds the worker's uvicorn server through its SIGTERM handler and
    watches its connections' request cycles."""
    import asyncio
    import signal

    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.server import ServerState

    from serving.bento import ServerBounds, uvicorn_server

    server = uvicorn.Server(uvicorn.Config(app=None))
    previous = signal.signal(signal.SIGTERM, server.handle_exit)
    try:
        assert uvicorn_server() is server
        bounds = ServerBounds.apply(7.0, 3.0, 5.0)
        assert bounds is not None and not bounds.draining
        assert server.config.timeout_graceful_shutdown == 7.0
        assert server.config.timeout_keep_alive == 3.0
        server.should_exit = True
        assert bounds.draining
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert uvicorn_server() is None  # not under uvicorn: the bounds say so and do nothing

    config = uvicorn.Config(app=None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = H11Protocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    finally:
        loop.close()
    assert hasattr(protocol, "cycle") and hasattr(protocol, "transport")


def test_dispatcher_runs_as_many_batches_at_once_as_asked(monkeypatch):
    from bentoml._internal.marshal.dispatcher import CorkDispatcher

    import serving.bento

    original = getattr(CorkDispatcher, "single_batch_init", None) or CorkDispatcher.__init__
    monkeypatch.setattr(CorkDispatcher, "__init__", original)
    monkeypatch.setattr(CorkDispatcher, "single_batch_init", None, raising=False)
    make = lambda: CorkDispatcher(max_latency_in_ms=1000, max_batch_size=8, fallback=lambda: None)
    one = make()
    assert one._sema.acquire() and not one._sema.acquire()  # BentoML alone: one batch at a time
    assert serving.bento.concurrent_batches(2)
    assert serving.bento.concurrent_batches(2)  # idempotent: wraps BentoML's own __init__
    two = make()
    assert two._sema.acquire() and two._sema.acquire() and not two._sema.acquire()


def test_concurrent_batches_warn_when_internals_change(monkeypatch, caplog):
    import inspect

    import serving.bento

    real = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda f: real(lambda self: None))
    with caplog.at_level(logging.WARNING, logger="serving.bento"):
        assert not serving.bento.concurrent_batches(2)
    assert "concurrent batches not applied" in caplog.text and "bentoml 1." in caplog.text
