"""Per-request context: the request id, and the timings of the adaptive batch a request ran in.

The guard (`serving.middleware`) opens a `RequestInfo` for each request. BentoML merges the texts
of concurrent requests into one batch in another task, so the request's texts are registered
by object identity when they are validated (in the request's own task), and the batch function
writes its timings into the `RequestInfo` of every request whose texts it ran: that is how each
answer can carry the inference time of its own batch (`X-Inference-Time`).
"""

from __future__ import annotations

import contextvars
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass
class RequestInfo:
    """What one request's answer reports about it (headers, log lines)."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    body_read: float | None = None  # perf_counter when the whole body had arrived
    texts: Sequence[str] = ()
    batch_started: float | None = None
    inference_s: float = 0.0
    batch_texts: int = 0


current: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "sentiment_request", default=None
)
_by_text: defaultdict[int, list[RequestInfo]] = defaultdict(list)


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID if it is 1-128 safe characters, else a new random id."""
    if header and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def register_texts(texts: Sequence[str]) -> Sequence[str]:
    """Remember which request these (validated) texts belong to; a no-op outside a request."""
    info = current.get()
    if info is not None:
        info.texts = texts
        for text in texts:
            _by_text[id(text)].append(info)
    return texts


def record_batch(texts: Iterable[str], started: float, seconds: float) -> None:
    """Credit one batch's timings to every request whose texts it ran."""
    size, seen = 0, {}
    for text in texts:
        size += 1
        for info in _by_text.get(id(text), ()):
            seen[id(info)] = info
    for info in seen.values():
        info.inference_s += seconds
        info.batch_texts = max(info.batch_texts, size)
        if info.batch_started is None:
            info.batch_started = started


def request_ids(texts: Sequence[str]) -> list[str | None]:
    """The request id of each text of a batch (None for a text no request registered)."""
    ids: list[str | None] = []
    repeats: dict[int, int] = {}
    for text in texts:
        owners = _by_text.get(id(text))
        if not owners:
            ids.append(None)
        elif len(owners) == 1:
            ids.append(owners[0].request_id)
        else:  # one string object in several requests (interned): take them in turn
            k = repeats[id(text)] = repeats.get(id(text), -1) + 1
            ids.append(owners[k % len(owners)].request_id)
    return ids


def release(info: RequestInfo) -> None:
    """Forget a finished request's texts."""
    for text in info.texts:
        owners = _by_text.get(id(text))
        if owners is None:
            continue
        owners[:] = [o for o in owners if o is not info]
        if not owners:
            del _by_text[id(text)]
    info.texts = ()


def pending() -> int:
    """Texts still registered (0 when no request is in flight): a leak check for tests."""
    return len(_by_text)
