"""The BentoML glue: the missing-model how-to, and the guarded adjustments of BentoML's and
uvicorn's internals (serving.adjustments). These tests fail when an upgrade removes what the
adjustments rely on."""

from __future__ import annotations

import asyncio
import logging

import pytest

import serving.adjustments
from serving.adjustments import (
    ClientErrorTracebacks,
    cap_batch_wait,
    dispatcher_optimizer,
)
from serving.bento import StoredModel


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
    from bentoml._internal.marshal import dispatcher

    before = dispatcher.Optimizer.trigger_refresh
    monkeypatch.setattr(dispatcher.Optimizer, "__init__", lambda self, max_latency: None)
    assert dispatcher_optimizer() is None  # the probe instance lacks o_stat, wait, ...
    with caplog.at_level(logging.WARNING, logger="serving.adjustments"):
        assert not cap_batch_wait(0.01)
    assert "BATCH_WAIT_MS" in caplog.text and "bentoml 1." in caplog.text
    assert dispatcher.Optimizer.trigger_refresh is before


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

    from serving.adjustments import ServerBounds, uvicorn_server

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


def _batches_in_flight(make_dispatcher, apply_first: int | None) -> int:
    """The most batches a dispatcher built by `make_dispatcher` runs at once, with a callback
    that takes 0.2 s, under 8 concurrent calls; `apply_first`: `concurrent_batches(n)` after
    the dispatcher is built and before its first call, as at the service's start-up."""
    running, most = 0, 0

    async def callback(batch):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.2)
        running -= 1
        return list(batch)

    async def scenario() -> int:
        dispatcher = make_dispatcher()  # BentoML builds it with the app, before start-up
        if apply_first is not None:
            assert serving.adjustments.concurrent_batches(apply_first)
        call = dispatcher(callback)
        results = await asyncio.gather(*(call(i) for i in range(8)))
        dispatcher.shutdown()
        assert sorted(results) == list(range(8))
        return most

    return asyncio.run(scenario())


def test_dispatcher_runs_as_many_batches_at_once_as_asked(monkeypatch):
    from bentoml._internal.marshal.dispatcher import CorkDispatcher

    original = getattr(CorkDispatcher, "single_batch_controller", None) or CorkDispatcher.controller
    monkeypatch.setattr(CorkDispatcher, "controller", original)
    monkeypatch.setattr(CorkDispatcher, "single_batch_controller", None, raising=False)

    def make():  # as ServiceAppFactory builds the batched API's dispatcher
        return CorkDispatcher(
            max_latency_in_ms=10_000,
            max_batch_size=1,
            fallback=lambda: None,
            get_batch_size=lambda x: 1,
            batch_dim=(0, 0),
        )

    assert _batches_in_flight(make, None) == 1  # BentoML alone: one batch at a time
    assert _batches_in_flight(make, 2) == 2
    assert serving.adjustments.concurrent_batches(2)  # idempotent: wraps BentoML's own method
    assert _batches_in_flight(make, 3) == 3


def test_concurrent_batches_warn_when_internals_change(monkeypatch, caplog):
    from bentoml._internal.marshal.dispatcher import CorkDispatcher

    before = CorkDispatcher.controller

    def no_semaphore(self, *args, **kwargs):
        pass

    monkeypatch.setattr(CorkDispatcher, "__init__", no_semaphore)
    with caplog.at_level(logging.WARNING, logger="serving.adjustments"):
        assert not serving.adjustments.concurrent_batches(2)
    assert "concurrent_batches not applied" in caplog.text and "bentoml 1." in caplog.text
    assert CorkDispatcher.controller is before


def test_quiet_client_errors_warns_when_internals_change(monkeypatch, caplog):
    from bentoml._internal.server import http_app

    monkeypatch.delattr(http_app, "logger")
    with caplog.at_level(logging.WARNING, logger="serving.adjustments"):
        assert not serving.adjustments.quiet_client_errors()
    assert "quiet_client_errors not applied" in caplog.text and "bentoml 1." in caplog.text


def test_openapi_info_shows_description_and_version_from_source(monkeypatch):
    import bentoml

    monkeypatch.setattr(bentoml.Service, "openapi_spec", bentoml.Service.openapi_spec)

    @bentoml.service(description="Try it at [the page](ui/).")
    class Probe:
        @bentoml.api
        def echo(self, text: str) -> str:
            return text

    assert Probe.openapi_spec.info.version == "None"  # BentoML alone, from source
    assert "ui/" not in Probe.openapi_spec.info.description
    assert serving.adjustments.openapi_info(Probe, "v42")
    assert serving.adjustments.openapi_info(Probe, "v42")  # idempotent
    info = Probe.openapi_spec.info
    assert (info.version, info.description) == ("v42", "Try it at [the page](ui/).")


def test_openapi_info_warns_when_internals_change(monkeypatch, caplog):
    import bentoml

    monkeypatch.setattr(bentoml.Service, "openapi_spec", None)
    with caplog.at_level(logging.WARNING, logger="serving.adjustments"):
        assert not serving.adjustments.openapi_info(object(), "v1")
    assert "openapi_info not applied" in caplog.text


def test_apply_reports_each_adjustment_in_one_line(caplog):
    from serving.settings import ServiceSettings

    settings = ServiceSettings.from_env({"INFERENCE_PROCESSES": "2"})
    with caplog.at_level(logging.INFO, logger="serving.adjustments"):
        report = serving.adjustments.apply(settings)
    assert report.applied == {
        "batch_wait_cap": True,
        "concurrent_batches": True,
        "server_bounds": False,  # not under uvicorn here
        "quiet_client_errors": True,
    }
    line = [r.message for r in caplog.records if r.levelno == logging.INFO]
    expected = (
        f"BentoML/uvicorn adjustments ({serving.adjustments.versions()}): applied "
        "batch_wait_cap, concurrent_batches, quiet_client_errors; not applied server_bounds"
    )
    assert line == [expected]
    assert not report.draining
