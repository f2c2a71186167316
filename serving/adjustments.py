"""Every adjustment of BentoML's and uvicorn's internals, applied by one call at start-up.

BentoML 1.4 and uvicorn do not offer these through their configuration:

- `batch_wait_cap`: bound how long the dispatcher holds a batch open while the model is idle
  (BATCH_WAIT_MS / BATCH_MIN_WAIT_MS);
- `concurrent_batches`: one adaptive batch in flight per inference process, not one in all;
- `server_bounds`: uvicorn's drain on SIGTERM, idle keep-alive, and a deadline for a request
  head (GRACEFUL_SHUTDOWN_S, KEEPALIVE_TIMEOUT_S, HEADER_TIMEOUT_S), and readiness that fails
  as soon as shutdown starts;
- `quiet_client_errors`: no ERROR traceback for a client's mistake;
- `openapi_info`: the page at `/` shows the service's description and the model's version when
  served from source (from a built bento BentoML shows its README and the bento's version).

`apply(settings, ...)` applies them all in the worker, from the service's `__init__` (in the
ASGI lifespan, before the first request: BentoML has built the batched API's `CorkDispatcher`
by then, in `ServiceAppFactory.__init__`, but starts its controller only on the first call),
and logs one line saying which applied. Each probes the internals it relies on inside its
guard; when they changed (a newer BentoML or uvicorn) it leaves the stack alone, says so in a
WARNING naming the versions, and reports False. Nothing happens on import. The tests call the
same probes and adjustments, so they fail when an upgrade breaks one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def versions() -> str:
    found = []
    for package in ("bentoml", "uvicorn"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def _not_applied(what: str, consequence: str) -> bool:
    log.warning(
        "%s not applied: the internals it relies on changed (%s); %s", what, versions(), consequence
    )
    return False


@dataclass
class Adjustments:
    """What `apply` did: `applied` maps each adjustment to whether it applied; `bounds` is the
    worker's `ServerBounds` (None when not under a uvicorn server this code knows)."""

    applied: dict[str, bool] = field(default_factory=dict)
    bounds: ServerBounds | None = None

    @property
    def draining(self) -> bool:
        return self.bounds is not None and self.bounds.draining

    def start(self) -> None:
        """In the running event loop: start the request-head watchdog."""
        if self.bounds is not None:
            self.bounds.start_watchdog()

    def stop(self) -> None:
        if self.bounds is not None:
            self.bounds.stop()


def apply(settings: Any, *, service: Any = None, version: str | None = None) -> Adjustments:
    """Apply every adjustment with `settings` (a `serving.settings.ServiceSettings`); `service`
    and `version`: the `bentoml.Service` and the model version its OpenAPI page shows. Logs
    one line listing what applied and what did not."""
    report = Adjustments()
    applied = report.applied
    applied["batch_wait_cap"] = cap_batch_wait(
        settings.batch_wait_ms / 1000, settings.batch_min_wait_ms / 1000
    )
    applied["concurrent_batches"] = concurrent_batches(max(settings.processes, 1))
    report.bounds = ServerBounds.apply(
        settings.graceful_shutdown_s, settings.keepalive_timeout_s, settings.header_timeout_s
    )
    applied["server_bounds"] = report.bounds is not None
    applied["quiet_client_errors"] = quiet_client_errors()
    if service is not None:
        applied["openapi_info"] = openapi_info(service, version)
    done = [name for name, ok in applied.items() if ok]
    left = [name for name, ok in applied.items() if not ok]
    log.info(
        "BentoML/uvicorn adjustments (%s): applied %s; not applied %s",
        versions(),
        ", ".join(done) or "none",
        ", ".join(left) or "none",
    )
    return report


# ---- the dispatcher's batch wait ------------------------------------------------------------


def dispatcher_optimizer() -> Any | None:
    """BentoML's dispatcher `Optimizer` class if it still has what `cap_batch_wait` needs."""
    try:
        from bentoml._internal.marshal.dispatcher import Optimizer

        if not callable(getattr(Optimizer, "trigger_refresh", None)):
            return None
        probe = Optimizer(max_latency=1.0)
        if not all(hasattr(probe, attr) for attr in ("o_stat", "wait", "o_a", "o_b")):
            return None
    except Exception:  # noqa: BLE001 - any change of the internals: leave them alone
        return None
    return Optimizer


def cap_batch_wait(max_wait_s: float, min_wait_s: float = 0.0) -> bool:
    """Bound how long BentoML's dispatcher holds a batch open while the model is idle.

    BentoML 1.4 learns that wait from the average queueing delay of past batches. After a burst
    the average is high and self-sustaining, so a lone request then waits that long for
    minutes (measured: 12 ms before a burst, 320-410 ms after). With the cap, batches still fill
    under load (requests queue while the previous batch runs) and idle latency stays low;
    `min_wait_s` is a floor (fuller batches for that much latency when idle). Applies to
    dispatchers already built too (their optimizer calls the class's method).
    """
    optimizer = dispatcher_optimizer()
    if optimizer is None:
        return _not_applied(
            "batch_wait_cap (BATCH_WAIT_MS / BATCH_MIN_WAIT_MS)",
            "lone requests may wait for batches after a burst",
        )
    learn = getattr(optimizer, "uncapped_trigger_refresh", None) or optimizer.trigger_refresh

    def trigger_refresh(self: Any) -> None:
        learn(self)
        self.wait = min(max(self.wait, min_wait_s), max_wait_s)

    optimizer.uncapped_trigger_refresh = learn
    optimizer.trigger_refresh = trigger_refresh
    return True


# ---- the dispatcher's batches in flight -----------------------------------------------------


def dispatcher_classes() -> tuple[Any, Any] | None:
    """BentoML's `CorkDispatcher` and `NonBlockSema` if a dispatcher built as BentoML builds
    the batched API's still keeps its one-batch semaphore in `_sema` and starts its
    `controller` coroutine on the first call; else None."""
    try:
        from bentoml._internal.marshal.dispatcher import CorkDispatcher, NonBlockSema

        if not inspect.iscoroutinefunction(CorkDispatcher.controller):
            return None
        probe = CorkDispatcher(max_latency_in_ms=1000, max_batch_size=8, fallback=lambda: None)
        sema = getattr(probe, "_sema", None)
        if not isinstance(sema, NonBlockSema) or getattr(sema, "sema", None) != 1:
            return None
        if "self.controller()" not in inspect.getsource(CorkDispatcher.__call__):
            return None
    except Exception:  # noqa: BLE001 - any change of the internals: leave them alone
        return None
    return CorkDispatcher, NonBlockSema


def concurrent_batches(n: int) -> bool:
    """Let BentoML's dispatchers keep `n` adaptive batches in flight instead of one.

    The dispatcher runs one batch at a time: while it waits for a batch's answers, the inference
    processes that finished their share sit idle, and the next batch waits for the slowest
    sub-batch. With `n` = the inference processes, the next batch starts as soon as one is
    free (measured in docs/results.md). BentoML builds the dispatcher before the service
    starts, so this widens the semaphore of each dispatcher when its controller starts (on the
    first request), which is after start-up.
    """
    classes = dispatcher_classes()
    if classes is None:
        return _not_applied("concurrent_batches", "the dispatcher runs one batch at a time")
    dispatcher, semaphore = classes
    controller = getattr(dispatcher, "single_batch_controller", None) or dispatcher.controller

    async def widened_controller(self: Any) -> None:
        sema = self._sema
        # still BentoML's one-slot semaphore (a widened one holds n > 1): nothing is in flight
        # yet, the controller has not run
        if n > 1 and isinstance(sema, semaphore) and sema.sema == 1:
            self._sema = semaphore(n)
        await controller(self)

    dispatcher.single_batch_controller = controller
    dispatcher.controller = widened_controller
    return True


# ---- uvicorn: drain bound, keep-alive, request-head deadline, readiness --------------------


def uvicorn_server() -> Any | None:
    """The uvicorn `Server` running this worker (its SIGTERM handler is a bound method of it),
    if it has the attributes `ServerBounds` uses; else None."""
    try:
        import uvicorn

        server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
        if not isinstance(server, uvicorn.Server):
            return None
        config, state = getattr(server, "config", None), getattr(server, "server_state", None)
        if not (
            hasattr(config, "timeout_graceful_shutdown")
            and hasattr(config, "timeout_keep_alive")
            and hasattr(state, "connections")
            and hasattr(server, "should_exit")
        ):
            return None
    except Exception:  # noqa: BLE001 - any change of the internals: leave them alone
        return None
    return server


class ServerBounds:
    """Time bounds uvicorn lacks or BentoML does not expose, set on this worker's server:

    - the drain on SIGTERM (uvicorn's `timeout_graceful_shutdown`; BentoML's default is none);
    - how long an idle keep-alive connection stays open (uvicorn's `timeout_keep_alive`);
    - how long a connection may take to send a complete request head: uvicorn has no such
      bound, so a slowloris (headers 1 byte/s) or an idle new connection is held forever; a
      watchdog answers those 408, closes them and counts them
      (`sentiment_http_head_timeouts_total`).
    `draining` turns True as soon as shutdown starts (readiness fails at once).
    """

    def __init__(self, server: Any, header_timeout_s: float) -> None:
        self.server = server
        self.header_timeout_s = header_timeout_s
        self._task: asyncio.Task | None = None

    @classmethod
    def apply(
        cls, graceful_shutdown_s: float, keepalive_timeout_s: float, header_timeout_s: float
    ) -> ServerBounds | None:
        server = uvicorn_server()
        if server is None:
            _not_applied(
                "server_bounds (GRACEFUL_SHUTDOWN_S / KEEPALIVE_TIMEOUT_S / HEADER_TIMEOUT_S)",
                "not running under a uvicorn server this code knows",
            )
            return None
        server.config.timeout_graceful_shutdown = graceful_shutdown_s
        server.config.timeout_keep_alive = keepalive_timeout_s
        return cls(server, header_timeout_s)

    @property
    def draining(self) -> bool:
        return bool(self.server.should_exit)

    def start_watchdog(self) -> None:
        """Start the request-head watchdog in the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        waiting: dict[tuple[int, int], float] = {}
        interval = max(0.05, min(1.0, self.header_timeout_s / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now, seen = loop.time(), {}
            for conn in list(self.server.server_state.connections):
                cycle = getattr(conn, "cycle", None)
                if cycle is not None and not getattr(cycle, "response_complete", True):
                    continue  # a request is in progress: its body has its own deadline
                key = (id(conn), id(cycle))
                since = seen[key] = waiting.get(key, now)
                if now - since >= self.header_timeout_s:
                    self._close(conn)
                    seen.pop(key)
            waiting = seen

    def _close(self, conn: Any) -> None:
        transport = getattr(conn, "transport", None)
        if transport is None or transport.is_closing():
            return
        body = b'{"error": "request head not received within %g s (HEADER_TIMEOUT_S)"}' % (
            self.header_timeout_s
        )
        try:
            transport.write(REQUEST_TIMEOUT_408 % (len(body), body))
        finally:
            transport.close()
        from serving import metrics

        if (collectors := metrics.current()) is not None:
            collectors.head_timeouts.inc()
        log.info(
            "closed a connection that sent no complete request head in %g s (408)",
            self.header_timeout_s,
        )

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


# ---- logs: no traceback for a client's mistake ----------------------------------------------


class ClientErrorTracebacks(logging.Filter):
    """Drops BentoML's ERROR tracebacks for client errors and load shedding (a 4xx is one
    WARNING line from the guard instead, 503 likewise): a flood of bad requests must not fill
    the logs, fire error alerts, or copy request data into them. Real 5xx keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        error = record.exc_info[1]
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        if isinstance(error, ValidationError):
            return False
        if isinstance(error, BentoMLException):
            code = int(getattr(error.error_code, "value", 500))
            return code >= 500 and code != 503
        return True


def quiet_client_errors() -> bool:
    """Install `ClientErrorTracebacks` on the logger BentoML reports API errors with."""
    try:
        from bentoml._internal.server import http_app

        logger = getattr(http_app, "logger", None)
    except Exception:  # noqa: BLE001 - any change of the internals: leave them alone
        logger = None
    if not isinstance(logger, logging.Logger):
        return _not_applied("quiet_client_errors", "client errors keep their tracebacks")
    if not any(isinstance(f, ClientErrorTracebacks) for f in logger.filters):
        logger.addFilter(ClientErrorTracebacks())
    return True


# ---- the OpenAPI page's description and version when served from source ---------------------

_SOURCE_INFO: dict[str, tuple[str | None, str | None]] = {}  # service name: (description, version)


def openapi_spec_property() -> Any | None:
    """BentoML's `Service.openapi_spec` property if the spec it makes still carries an attrs
    `info` with `description` and `version`, and `Service` still has `bento` and
    `description`; else None."""
    try:
        import attr
        from bentoml import Service
        from bentoml._internal.service.openapi.specification import Info, OpenAPISpecification

        spec = getattr(Service, "openapi_spec", None)
        fields = {f.name for f in attr.fields(Service)}
        if not isinstance(spec, property) or not {"bento", "description"} <= fields:
            return None
        if not {"info"} <= {f.name for f in attr.fields(OpenAPISpecification)}:
            return None
        if not {"description", "version"} <= {f.name for f in attr.fields(Info)}:
            return None
    except Exception:  # noqa: BLE001 - any change of the internals: leave them alone
        return None
    return spec


def openapi_info(service: Any, version: str | None) -> bool:
    """Make the OpenAPI page of `service` served from source show its description (with the
    link to the web page) and `version`, where BentoML shows its boilerplate README and
    "None". From a built bento BentoML already shows the bento's README (written from the
    description by `bentoml build`) and the bento's version: left as they are."""
    spec = openapi_spec_property()
    if spec is None:
        return _not_applied(
            "openapi_info", "the page at / shows BentoML's own description and version None"
        )
    import attr
    from bentoml import Service

    _SOURCE_INFO[service.name] = (service.description, version)
    original = getattr(spec.fget, "bentoml_openapi_spec", spec.fget)

    def openapi_spec(self: Any) -> Any:
        made = original(self)
        description, version = _SOURCE_INFO.get(self.name, (None, None))
        if self.bento is not None:
            return made
        info = made.info
        if description:
            info = attr.evolve(info, description=description)
        if version:
            info = attr.evolve(info, version=version)
        return attr.evolve(made, info=info)

    openapi_spec.bentoml_openapi_spec = original  # type: ignore[attr-defined]
    Service.openapi_spec = property(openapi_spec)  # type: ignore[method-assign]
    return True
