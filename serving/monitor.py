"""What the service saw: one JSON record per classified text, and live drift gauges.

The batch function hands each batch to `PredictionMonitor.observe` (a queue put, microseconds);
a background thread does the rest, off the event loop:
- the prediction log: one JSON line per text (`record` lists the fields) to a size-rotated file
  per worker (`predictions-<worker>.jsonl`, rotated ones gzipped, a bounded number kept) or to
  stdout (in a container, where Cloud Logging keeps it; the container's disk is not durable).
  The text itself is logged only with PREDICTION_LOG_TEXT: by default only a hash of it.
- the drift window: the features (`serving.drift`) of the last DRIFT_WINDOW texts, scored
  against the model's reference profile (PSI) into `sentiment_drift_score{feature}` about once
  a second, once the window holds DRIFT_MIN_TEXTS texts.
If the writer falls behind, whole batches are dropped (and counted), never queued without bound.

BentoML's own `bentoml.monitor` is not used: its default monitor writes and JSON-encodes each
record in the calling thread (the event loop), rotates daily without deleting old files (disk
use is unbounded), and records BentoML's trace request id, not the guard's X-Request-ID.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import queue
import select
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving import context
from serving.drift import (
    PROFILE_FILE,
    Profile,
    ProfileError,
    Window,
    describe_texts,
    feature_values,
)

log = logging.getLogger(__name__)

QUEUE_BATCHES = 2048  # batches waiting for the writer at most (then batches are dropped)
UPDATE_S = 1.0  # drift gauges recomputed at most this often (and when traffic pauses)
PIPE_BUF = getattr(select, "PIPE_BUF", 4096)  # a pipe write up to this size is never interleaved
_FLUSH = object()  # queue item: write out and score now


def utc_stamp(t: float) -> str:
    """ISO-8601 UTC with milliseconds: 2026-11-24T14:03:07.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class RotatingFile:
    """Appends bytes to `path`; when the next write would pass `max_bytes`, the file is gzipped
    to `path.1.gz` (older ones move to `.2.gz`, ...) and only `backups` of them are kept, so the
    files take at most about (1 + backups) x max_bytes of disk (much less, gzipped)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = Path(path), max_bytes, backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "ab")  # noqa: SIM115 - kept open, closed in close()
        self.size = self.file.tell()

    def write(self, data: bytes) -> None:
        if self.size and self.size + len(data) > self.max_bytes:
            self.rotate()
        self.file.write(data)
        self.size += len(data)

    def rotate(self) -> None:
        self.file.close()
        if self.backups:
            for i in range(self.backups - 1, 0, -1):
                older = self.backup(i)
                if older.exists():
                    os.replace(older, self.backup(i + 1))
            partial = self.path.with_name(self.path.name + ".gz.tmp")
            with open(self.path, "rb") as src, gzip.open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, self.backup(1))
        self.path.unlink(missing_ok=True)
        self.file = open(self.path, "ab")  # noqa: SIM115
        self.size = 0

    def backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}.gz")

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class StdoutLines:
    """Writes JSON lines to stdout in whole-line pieces of at most PIPE_BUF bytes, so lines of
    several workers sharing the container's stdout never interleave (a single line longer than
    that, possible only with PREDICTION_LOG_TEXT, may)."""

    def __init__(self, fd: int = 1) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        start = 0
        while start < len(data):
            end = len(data) if len(data) - start <= PIPE_BUF else start + PIPE_BUF
            if end < len(data):
                cut = data.rfind(b"\n", start, end)
                end = cut + 1 if cut >= start else data.find(b"\n", end) + 1 or len(data)
            view = memoryview(data)[start:end]
            while view:
                view = view[os.write(self.fd, view) :]
            start = end

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class PredictionMonitor:
    """The prediction log and the drift window of one worker process (see the module doc)."""

    def __init__(
        self,
        model_tag: str,
        labels: Sequence[str],
        unk_id: int | None,
        sink: Any | None = None,
        profile: Profile | None = None,
        window: int = 1000,
        min_texts: int = 200,
        log_text: bool = False,
        hash_key: str | None = None,
        gauges: Any | None = None,
    ) -> None:
        self.model_tag = model_tag
        self.label_index = {label: i for i, label in enumerate(labels)}
        self.unk_id = unk_id
        self.sink = sink
        self.profile = profile
        self.window = Window(window) if profile is not None and window > 0 else None
        self.min_texts = min(min_texts, window) if window > 0 else 0
        self.log_text = log_text
        self.hash_key = hash_key.encode() if hash_key else b""
        self.gauges = gauges  # serving.metrics.DriftMetrics or None
        self.scores: dict[str, float] = {}
        self.dropped = 0
        self.failed = 0
        self._failure_logged = -math.inf
        self._dirty = False
        self._updated = 0.0
        self._queue: queue.Queue = queue.Queue(QUEUE_BATCHES)
        self._thread = threading.Thread(target=self._run, name="prediction-monitor", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(
        cls, settings: Any, stored_model: Any, classifier: Any
    ) -> PredictionMonitor | None:
        """The monitor `settings` (`ServiceSettings`) ask for, for the stored model (a BentoML
        model: `.path`, `.tag`) that `classifier` (`serving.inference.Classifier`) runs; None
        when the log and the drift gauges are both off. A model without a reference profile
        gets a WARNING and no drift gauges."""
        model_dir = stored_model.path
        where = settings.prediction_log_sink
        profile = None
        if settings.drift_window > 0:
            try:
                profile = Profile.load(Path(model_dir) / PROFILE_FILE)
            except ProfileError as e:
                log.warning("drift gauges off: %s (export the model again to add one)", e)
        if where is None and profile is None:
            return None
        sink, where_to = None, "off"
        if where == "stdout":
            sink, where_to = StdoutLines(), "stdout"
        elif where == "file":
            path = Path(settings.prediction_log_path) / f"predictions-{_worker_index()}.jsonl"
            max_bytes = int(settings.prediction_log_max_mb * 1024 * 1024)
            sink, where_to = RotatingFile(path, max_bytes, settings.prediction_log_backups), path
        gauges = None
        if profile is not None:
            from serving import metrics

            gauges = metrics.drift_setup()
        log.info(
            "prediction log: %s%s; drift window: %s",
            where_to,
            " (with texts)" if settings.prediction_log_text and sink else "",
            f"{settings.drift_window} texts" if profile is not None else "off",
        )
        return cls(
            str(stored_model.tag),
            classifier.labels,
            classifier.unk_id,
            sink,
            profile,
            settings.drift_window,
            settings.drift_min_texts,
            settings.prediction_log_text,
            settings.prediction_log_hash_key,
            gauges,
        )

    # ---- request path -------------------------------------------------------------------------

    def observe(self, texts: Sequence[str], encodings: Sequence[Any], predictions: list) -> None:
        """Queue one classified batch (cheap: the work happens in the monitor's thread)."""
        try:
            self._queue.put_nowait(
                (time.time(), texts, encodings, predictions, context.request_ids(texts))
            )
        except queue.Full:
            self.dropped += len(texts)
            if self.gauges is not None:
                self.gauges.dropped.inc(len(texts))

    # ---- the monitor's thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=UPDATE_S)
            except queue.Empty:  # traffic paused: write out what is buffered, score the window
                self._quiet()
                continue
            try:
                if item is None or item is _FLUSH:
                    self._quiet(force=True)
                    if item is None:
                        return
                    continue
                self._process(*item)
            except Exception:  # noqa: BLE001 - e.g. a full disk: never fail the service; say so
                self._failed(len(item[1]))
            finally:
                self._queue.task_done()

    def _process(self, stamp: float, texts, encodings, predictions, request_ids) -> None:
        chars, tokens, truncated, unknown = describe_texts(texts, encodings, self.unk_id)
        if self.window is not None:
            self.window.add(
                feature_values(
                    chars,
                    tokens,
                    truncated,
                    unknown,
                    [p["score"] for p in predictions],
                    [self.label_index[p["label"]] for p in predictions],
                )
            )
            self._dirty = True
        if self.sink is not None:
            ts, lines = utc_stamp(stamp), []
            for i, text in enumerate(texts):
                features = (chars[i], tokens[i], truncated[i], unknown[i])
                record = self.record(text, predictions[i], request_ids[i], ts, features)
                lines.append(json.dumps(record, separators=(",", ":")))
            lines.append("")
            self.sink.write("\n".join(lines).encode())
        if time.monotonic() - self._updated >= UPDATE_S:
            self._update_gauges()

    def record(
        self, text: str, prediction: dict, request_id: str | None, ts: str, features: tuple
    ) -> dict:
        """The log record of one text; `features`: (chars, tokens, truncated, unknown tokens)."""
        chars, tokens, truncated, unknown = features
        record = {
            "ts": ts,
            "event": "prediction",
            "model": self.model_tag,
            "request_id": request_id,
            "text_hash": self.text_hash(text),
            "chars": chars,
            "tokens": tokens,
            "truncated": truncated,
            "unk": unknown,
            "label": prediction["label"],
            "score": round(prediction["score"], 8),  # float32 precision: the report
            "scores": {k: round(v, 8) for k, v in prediction["scores"].items()},  # bins as live
        }
        if self.log_text:
            record["text"] = text
        return record

    def text_hash(self, text: str) -> str:
        """16 hex digits of BLAKE2b of the UTF-8 text (keyed with PREDICTION_LOG_HASH_KEY if
        set): equal texts get equal hashes, the text cannot be read back."""
        return hashlib.blake2b(text.encode(), digest_size=8, key=self.hash_key).hexdigest()

    def _failed(self, texts: int) -> None:
        self.failed += texts
        now = time.monotonic()
        if now - self._failure_logged >= 60.0:
            self._failure_logged = now
            log.exception("prediction monitor: %d texts not logged or scored so far", self.failed)

    def _quiet(self, force: bool = False) -> None:
        if self.sink is not None:
            self.sink.flush()
        if self._dirty or force:
            self._update_gauges()

    def _update_gauges(self) -> None:
        self._updated = time.monotonic()
        self._dirty = False
        if self.window is None:
            return
        if self.window.count >= self.min_texts:
            self.scores = self.profile.scores(self.window.values())
        if self.gauges is not None:
            self.gauges.window.set(self.window.count)
            for feature, score in self.scores.items():
                self.gauges.score.labels(feature=feature).set(score)

    # ---- lifecycle ----------------------------------------------------------------------------

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every batch queued so far is written out and scored (tests)."""
        deadline = time.monotonic() + timeout
        self._queue.put(_FLUSH, timeout=timeout)
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout: float = 5.0) -> None:
        """Process what is queued, flush and close the log (on shutdown)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("prediction monitor: queue full at shutdown, %d texts lost", self.dropped)
        self._thread.join(timeout)
        if self.sink is not None:
            self.sink.close()


def _worker_index() -> int:
    """BentoML's index of this worker process (0 outside `bentoml serve`)."""
    try:
        from bentoml import server_context

        return int(server_context.worker_index or 0)
    except (ImportError, TypeError, ValueError):
        return 0
