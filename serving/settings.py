"""The service's settings: environment variables with defaults, so one image runs anywhere.

Each field is read from the environment variable of its name in upper case (MODEL_TAG,
MAX_ITEMS, ...; pydantic-settings). Booleans take the usual spellings (1/0, true/false, yes/no,
on/off); a bad value stops start-up with an error that names its variable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from serving.inference import DEFAULT_SUB_BATCH_SIZE, DEFAULT_SUB_BATCH_TOKENS, available_cpus
from serving.schema import MAX_ITEMS, MAX_TEXT_CHARS

log = logging.getLogger(__name__)

# Bytes per character of a text in the worst JSON encoding: an astral-plane character (emoji)
# written as a \uXXXX\uXXXX surrogate pair; plus quotes, comma and whitespace per text.
JSON_BYTES_PER_CHAR = 12
JSON_BYTES_PER_ITEM = 8
JSON_ENVELOPE_BYTES = 1024


class ServiceSettings(BaseSettings):
    """Every setting the service reads (docs/serving.md's settings table lists the same)."""

    model_config = SettingsConfigDict(
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        protected_namespaces=(),
        frozen=True,
    )

    # --- model --------------------------------------------------------------------------------
    model_tag: str = "sentiment-classifier:latest"
    """MODEL_TAG: the stored model to serve; pin a version in production."""

    # --- request limits -----------------------------------------------------------------------
    max_items: int = Field(MAX_ITEMS, ge=1)
    """MAX_ITEMS: texts per request."""
    max_text_chars: int = Field(MAX_TEXT_CHARS, ge=1)
    """MAX_TEXT_CHARS: characters per text (tokens beyond the model window are truncated)."""
    max_body_bytes: int | None = Field(None, ge=1)
    """MAX_BODY_BYTES: request body size; default: the largest body within the two limits
    above, every character an escaped emoji (`body_limit`)."""

    # --- batching and inference ---------------------------------------------------------------
    max_batch_size: int = Field(32, ge=1)
    """MAX_BATCH_SIZE: texts per adaptive batch (BentoML's dispatcher)."""
    max_latency_ms: int = Field(5000, ge=1)
    """MAX_LATENCY_MS: the dispatcher answers 503 when it predicts a longer queue wait."""
    batch_wait_ms: float = Field(10, ge=0)
    """BATCH_WAIT_MS: longest wait for a batch to fill while the model is idle."""
    batch_min_wait_ms: float = Field(0, ge=0)
    """BATCH_MIN_WAIT_MS: shortest such wait (fuller batches for that much latency)."""
    sub_batch_size: int = Field(DEFAULT_SUB_BATCH_SIZE, ge=1)
    """SUB_BATCH_SIZE: texts per ONNX Runtime call, at most."""
    sub_batch_tokens: int = Field(DEFAULT_SUB_BATCH_TOKENS, ge=1)
    """SUB_BATCH_TOKENS: padded tokens (texts x longest) per ONNX Runtime call, at most."""
    workers: int = Field(1, ge=1)
    """WORKERS: HTTP worker processes (each with its own batching and inference processes)."""
    inference_processes: int | None = Field(None, ge=0)
    """INFERENCE_PROCESSES: inference processes per worker; default: CPUs / WORKERS;
    0 runs inference in the worker itself."""
    ort_threads: int = Field(0, ge=0)
    """ORT_THREADS: ONNX Runtime threads per session; 0: 1 per inference process, or CPUs /
    WORKERS when inference runs in the worker."""
    ort_spinning: bool = False
    """ORT_SPINNING: let idle ONNX Runtime threads spin (faster only on otherwise idle CPUs)."""

    # --- traffic and time bounds --------------------------------------------------------------
    max_concurrency: int = Field(128, ge=1)
    """MAX_CONCURRENCY: requests in inference per worker (body read); 429 past this."""
    request_timeout_s: float = Field(8.0, gt=0)
    """REQUEST_TIMEOUT_S: 504 when a request's answer takes longer (queue wait included)."""
    header_timeout_s: float = Field(10.0, gt=0)
    """HEADER_TIMEOUT_S: a connection must send a complete request head within this (408)."""
    body_timeout_s: float = Field(10.0, gt=0)
    """BODY_TIMEOUT_S: a request body must arrive within this once its head has (408)."""
    keepalive_timeout_s: float = Field(5.0, gt=0)
    """KEEPALIVE_TIMEOUT_S: an idle keep-alive connection is closed after this."""
    graceful_shutdown_s: float = Field(8.0, gt=0)
    """GRACEFUL_SHUTDOWN_S: on SIGTERM, in-flight requests get this long to finish."""

    # --- security and logs --------------------------------------------------------------------
    api_key: str | None = Field(None, repr=False)
    """API_KEY: when set, every path but /livez, /readyz, the docs page and /ui needs it
    (`Authorization: Bearer <key>` or `X-API-Key: <key>`)."""
    api_key_file: Path | None = None
    """API_KEY_FILE: read the key from this file instead (a mounted secret)."""
    access_log: bool = False
    """ACCESS_LOG: one log line per request (costs throughput, docs/results.md)."""

    # --- prediction log and drift (serving.monitor) -------------------------------------------
    prediction_log: Literal["auto", "file", "stdout", "off"] = "auto"
    """PREDICTION_LOG: one JSON record per classified text to `file` (PREDICTION_LOG_DIR),
    `stdout` (for Cloud Logging) or `off`; `auto` (or on): stdout in a container, else file."""
    prediction_log_dir: Path | None = None
    """PREDICTION_LOG_DIR: where the log files go; default: $BENTOML_HOME/predictions."""
    prediction_log_text: bool = False
    """PREDICTION_LOG_TEXT: also log each text itself (by default only a hash of it)."""
    prediction_log_hash_key: str | None = Field(None, repr=False, min_length=8, max_length=64)
    """PREDICTION_LOG_HASH_KEY: a secret of 8-64 ASCII characters that keys the text hash
    (BLAKE2b), so that nobody without it can find short texts by hashing guesses."""
    prediction_log_max_mb: float = Field(50.0, gt=0)
    """PREDICTION_LOG_MAX_MB: size of a log file before it is rotated (gzipped)."""
    prediction_log_backups: int = Field(10, ge=0)
    """PREDICTION_LOG_BACKUPS: rotated files kept per worker (older ones are deleted)."""
    drift_window: int = Field(1000, ge=0)
    """DRIFT_WINDOW: recent texts per worker scored against the reference profile; 0: off."""
    drift_min_texts: int = Field(200, ge=1)
    """DRIFT_MIN_TEXTS: texts in the window before the drift gauges are exported."""
    bentoml_containerized: bool = False
    """BENTOML_CONTAINERIZED: set to true by BentoML's Dockerfile (chooses PREDICTION_LOG)."""

    @field_validator("prediction_log", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return {
                "on": "auto",
                "true": "auto",
                "1": "auto",
                "yes": "auto",
                "false": "off",
                "0": "off",
                "no": "off",
            }.get(value, value)
        return value

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        if self.api_key is not None and self.api_key_file is not None:
            raise ValueError("set API_KEY or API_KEY_FILE, not both")
        if self.batch_min_wait_ms > self.batch_wait_ms:
            raise ValueError("BATCH_MIN_WAIT_MS must not exceed BATCH_WAIT_MS")
        if self.request_timeout_s > self.graceful_shutdown_s:
            log.warning(
                "REQUEST_TIMEOUT_S=%s exceeds GRACEFUL_SHUTDOWN_S=%s: a request accepted just "
                "before shutdown may be cut off",
                self.request_timeout_s,
                self.graceful_shutdown_s,
            )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """Settings from `environ` (default: os.environ), read by pydantic-settings'
        environment source either way; a bad value names its variable."""
        try:
            return cls.model_validate(_Environ(cls, os.environ if environ is None else environ)())
        except ValidationError as e:
            raise ValueError(_describe(e)) from None

    @property
    def body_limit(self) -> int:
        """MAX_BODY_BYTES, or the largest JSON body within MAX_ITEMS and MAX_TEXT_CHARS."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        per_item = self.max_text_chars * JSON_BYTES_PER_CHAR + JSON_BYTES_PER_ITEM
        return self.max_items * per_item + JSON_ENVELOPE_BYTES

    @property
    def processes(self) -> int:
        """Inference processes per worker (0: inference in the worker)."""
        if self.inference_processes is not None:
            return self.inference_processes
        return max(1, available_cpus() // self.workers)

    @property
    def session_threads(self) -> int:
        """ONNX Runtime intra-op threads per session."""
        if self.ort_threads:
            return self.ort_threads
        return 1 if self.processes else max(1, available_cpus() // self.workers)

    @property
    def prediction_log_sink(self) -> str | None:
        """Where prediction records go: "file", "stdout" or None (off)."""
        if self.prediction_log == "off":
            return None
        if self.prediction_log == "auto":
            return "stdout" if self.bentoml_containerized else "file"
        return self.prediction_log

    @property
    def prediction_log_path(self) -> Path:
        """PREDICTION_LOG_DIR, or $BENTOML_HOME/predictions (~/bentoml/predictions)."""
        if self.prediction_log_dir is not None:
            return self.prediction_log_dir
        return Path(os.environ.get("BENTOML_HOME", "~/bentoml")).expanduser() / "predictions"

    def resolved_api_key(self) -> str | None:
        """The API key (from API_KEY or the file API_KEY_FILE names), or None: open."""
        if self.api_key_file is None:
            return self.api_key or None
        try:
            key = self.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ValueError(f"API_KEY_FILE={self.api_key_file}: cannot read it ({e})") from None
        if not key:
            raise ValueError(f"API_KEY_FILE={self.api_key_file} is empty")
        return key


class _Environ(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ (the
    way its own .env-file source does it), so tests and deploy checks read a manifest's
    variables exactly as the service reads its environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _describe(error: ValidationError) -> str:
    """'VAR=value: problem' for each bad setting."""
    problems = []
    for item in error.errors(include_url=False):
        loc = item.get("loc") or ()
        name = str(loc[0]).upper() if loc else "settings"
        value: Any = item.get("input")
        shown = f"={value!r}" if loc and not isinstance(value, dict) else ""
        problems.append(f"{name}{shown}: {item['msg']}")
    return "invalid service settings: " + "; ".join(problems)
