"""`POST /classify` through BentoML's HTTP client: fail-fast checks, retries, bad-row narrowing."""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass

import httpx

from scoring.config import ScoringError

PROBE_TEXT = "A probe sent before scoring, to check the service and read its labels."
RETRY_STATUS = {408, 429}  # client-side codes that mean "try again later"


class Rejected(Exception):
    """The service answered 4xx: the batch itself is bad."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class Cancelled(Exception):
    """The run is stopping (Ctrl-C or an error elsewhere)."""


@dataclass
class RowResult:
    prediction: dict | None  # {"label", "score", "scores"}
    error: str | None = None


def _error_text(body: str, limit: int = 300) -> str:
    """The service's message, unwrapped from BentoML's `{"error", "detail"}` JSON if possible."""
    try:
        data = json.loads(body)
        if isinstance(data, dict):
            parts = [str(data.get("error") or "")]
            for d in data.get("detail") or []:  # pydantic errors: where and what
                if isinstance(d, dict):
                    where = ".".join(map(str, d.get("loc", ())))
                    parts.append(f"{where}: {d.get('msg', '')}".strip(": "))
            body = "; ".join(p for p in parts if p) or body
    except ValueError:
        pass
    body = " ".join(str(body).split())
    return body if len(body) <= limit else body[: limit - 3] + "..."


class Classifier:
    """A thread-safe caller of /classify (one `bentoml.SyncHTTPClient`, httpx pools connections)."""

    def __init__(
        self,
        url: str,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        stop: threading.Event | None = None,
    ) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.stop = stop or threading.Event()
        self.client = None
        self.requests = 0
        self.retried = 0

    def connect(self) -> list[str]:
        """Check /readyz and /classify now (clear error naming the URL); return the labels."""
        import bentoml

        try:
            resp = httpx.get(f"{self.url}/readyz", timeout=min(self.timeout, 10.0))
        except httpx.HTTPError as e:
            raise ScoringError(
                f"cannot reach the service at {self.url} ({type(e).__name__}: {e}); is "
                "`bentoml serve` running there? (check --url)"
            ) from e
        if resp.status_code != 200:
            raise ScoringError(
                f"service at {self.url} is not ready: GET /readyz answered HTTP {resp.status_code}"
            )
        try:
            self.client = bentoml.SyncHTTPClient(
                self.url, server_ready_timeout=0, timeout=self.timeout
            )
        except Exception as e:
            raise ScoringError(f"cannot read the API schema of {self.url}: {e}") from e
        if "classify" not in self.client.endpoints:
            found = ", ".join(sorted(self.client.endpoints)) or "none"
            raise ScoringError(f"service at {self.url} has no /classify endpoint (found: {found})")
        try:
            (probe,) = self._call([PROBE_TEXT])
        except Rejected as e:
            raise ScoringError(f"service at {self.url} rejected a probe text: {e}") from e
        return list(probe["scores"])

    def _call(self, texts: list[str]) -> list[dict]:
        from bentoml.exceptions import BentoMLException

        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise Cancelled
            self.requests += 1
            try:
                out = self.client.classify(texts=texts)
            except BentoMLException as e:
                status = int(e.error_code)
                if 400 <= status < 500 and status not in RETRY_STATUS:
                    raise Rejected(status, _error_text(str(e))) from e
                err = f"HTTP {status}: {_error_text(str(e))}"
            except httpx.TransportError as e:  # refused, reset, timed out...
                err = f"{type(e).__name__}: {e}"
            else:
                _check_answer(out, len(texts), self.url)
                return out
            if attempt == self.retries:
                raise ScoringError(
                    f"service at {self.url} failed {self.retries + 1} times in a row (last: "
                    f"{err}); rerun the same command to resume where it stopped"
                )
            self.retried += 1
            delay = min(30.0, self.backoff * 2**attempt) * random.uniform(0.75, 1.25)
            if self.stop.wait(delay):
                raise Cancelled
        raise AssertionError("unreachable")

    def score(self, texts: list[str]) -> list[RowResult]:
        """Predictions in input order; rows the service rejects (4xx) are found by bisection and
        get an error instead, so one bad row never fails its batch."""
        try:
            return [RowResult(p) for p in self._call(texts)]
        except Rejected as e:
            if len(texts) == 1:
                return [RowResult(None, f"rejected by the service: {e}")]
            mid = len(texts) // 2
            return self.score(texts[:mid]) + self.score(texts[mid:])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _check_answer(out: object, n: int, url: str) -> None:
    if not isinstance(out, list) or len(out) != n:
        got = len(out) if isinstance(out, list) else type(out).__name__
        raise ScoringError(f"service at {url} broke the /classify contract: {got} for {n} texts")
    for item in out:
        if not (isinstance(item, dict) and {"label", "score", "scores"} <= item.keys()):
            raise ScoringError(
                f"service at {url} broke the /classify contract: item {str(item)[:200]}"
            )
