"""The drift report: prediction logs against the model's reference profile.

Per feature: the reference and the current summary, the PSI (`serving.drift`, the same code as
the service's live gauges), the thresholds and a status; plots of the distributions (reference
vs current) and of the PSI over time. Written as report.md + PNGs (+ report.json).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from monitoring.logs import LogError, Records, parse_time, read_records
from serving.drift import (
    DESCRIPTIONS,
    FEATURES,
    PROFILE_FILE,
    PSI_DRIFT,
    PSI_WARN,
    Profile,
    ProfileError,
    feature_values,
    status,
    summary_quantiles,
)


@dataclass
class ReportConfig:
    """What `python -m monitoring report` can be told."""

    logs: list[str] = field(default_factory=list)  # log files or directories
    model: str | None = None  # stored model whose profile is the reference (and whose records)
    profile: str | None = None  # or a reference_profile.json file
    since: str | None = None  # ISO-8601 or a duration back from now (24h)
    until: str | None = None
    out: str = "reports/drift"
    warn: float = PSI_WARN
    threshold: float = PSI_DRIFT
    min_texts: int = 200  # fewer records than this: no verdict (exit 2)
    intervals: int = 20  # points of the drift-over-time plot, at most

    def __post_init__(self) -> None:
        if not self.logs:
            raise LogError("give the prediction logs: --logs DIR_OR_FILE")
        if (self.model is None) == (self.profile is None):
            raise LogError("give the reference: --model TAG or --profile FILE (one of them)")
        if not 0 < self.warn <= self.threshold:
            raise LogError(f"need 0 < --warn ({self.warn}) <= --threshold ({self.threshold})")
        if self.min_texts < 1 or self.intervals < 1:
            raise LogError("--min-texts and --intervals must be >= 1")


@dataclass
class FeatureResult:
    feature: str
    description: str
    reference: str
    current: str
    psi: float
    status: str


@dataclass
class DriftReport:
    """The figures of one report; `drifted` decides the exit code."""

    model: str | None
    profile_source: str
    texts: int
    start: str
    end: str
    warn: float
    threshold: float
    features: list[FeatureResult]
    over_time: dict[str, list[float]]  # feature -> PSI per interval
    interval_ends: list[str]
    files: list[str]
    skipped: dict[str, int]
    models_seen: dict[str, int]

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.status == "drift"]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drifted": self.drifted}


def load_reference(config: ReportConfig) -> tuple[Profile, str | None, str]:
    """(profile, model tag or None, where the profile came from)."""
    if config.profile is not None:
        path = Path(config.profile)
        return _load(path), None, str(path)
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        model = bentoml.models.get(config.model)
    except (BentoMLException, ValueError) as e:
        raise LogError(f"model {config.model}: not in the BentoML model store ({e})") from None
    path = Path(model.path) / PROFILE_FILE
    return _load(path), str(model.tag), f"{model.tag} ({PROFILE_FILE})"


def _load(path: Path) -> Profile:
    try:
        return Profile.load(path)
    except ProfileError as e:
        raise LogError(
            f"{e} (models exported before drift monitoring have none: re-export)"
        ) from None


def build_report(config: ReportConfig) -> tuple[DriftReport, Profile, dict]:
    """The report's figures, the profile, and the current feature values (for the plots)."""
    profile, tag, source = load_reference(config)
    since = parse_time(config.since) if config.since else None
    until = parse_time(config.until) if config.until else None
    records = read_records(config.logs, since, until, model=tag)
    index = {label: i for i, label in enumerate(profile.labels)}
    known = np.array([label in index for label in records.label], dtype=bool)
    if len(known) and not known.all():
        records.skipped["with a label the model does not have"] += int((~known).sum())
        records = records.select(known)
    if len(records) < config.min_texts:
        raise LogError(_too_few(records, config, tag))
    values = _values(records, index)
    features = []
    for name in FEATURES:
        ref = profile.features[name]
        score = ref.score(values[name])
        features.append(
            FeatureResult(
                name,
                DESCRIPTIONS[name],
                _summary_reference(ref),
                _summary_current(name, values[name], profile.labels),
                round(score, 4),
                status(score, config.warn, config.threshold),
            )
        )
    over_time, ends = _over_time(profile, records, values, config)
    report = DriftReport(
        model=tag,
        profile_source=source,
        texts=len(records),
        start=_iso(records.time[0]),
        end=_iso(records.time[-1]),
        warn=config.warn,
        threshold=config.threshold,
        features=features,
        over_time=over_time,
        interval_ends=ends,
        files=[str(p) for p in records.files],
        skipped=dict(records.skipped),
        models_seen=dict(records.models),
    )
    return report, profile, values


def _values(records: Records, index: dict[str, int]) -> dict[str, np.ndarray]:
    return feature_values(
        records.chars,
        records.tokens,
        records.truncated,
        records.unk,
        records.score,
        [index[label] for label in records.label],
    )


def _too_few(records: Records, config: ReportConfig, tag: str | None) -> str:
    where = ", ".join(config.logs)
    span = ""
    if config.since or config.until:
        span = f" between {config.since or 'the start'} and {config.until or 'now'}"
    message = f"{len(records)} prediction records in {where}{span}"
    if tag is not None:
        message += f" for model {tag}"
    message += f"; a drift verdict needs at least {config.min_texts} (--min-texts)"
    others = {m: n for m, n in records.models.items() if m != tag}
    if tag is not None and others:
        message += f". Records of other models: {others}"
    if records.skipped:
        message += f". Skipped: {dict(records.skipped)}"
    return message


def _over_time(profile: Profile, records: Records, values: dict, config: ReportConfig):
    """PSI per feature over consecutive, equally sized groups of records (time order)."""
    groups = max(1, min(config.intervals, len(records) // config.min_texts))
    bounds = np.linspace(0, len(records), groups + 1).astype(int)
    series: dict[str, list[float]] = {name: [] for name in FEATURES}
    ends = []
    for lo, hi in itertools.pairwise(bounds):
        part = {name: v[lo:hi] for name, v in values.items()}
        for name, score in profile.scores(part).items():
            series[name].append(round(score, 4))
        ends.append(_iso(records.time[hi - 1]))
    return series, ends


def _summary_reference(ref) -> str:
    if ref.kind == "categorical":
        return ", ".join(
            f"{c} {p:.0%}" for c, p in zip(ref.categories, ref.proportions, strict=True)
        )
    if ref.name == "truncated":
        return f"{ref.proportions[-1]:.1%}"
    return _describe(ref.name, ref.mean, ref.quantiles)


def _summary_current(name: str, values: np.ndarray, labels: list[str]) -> str:
    if name == "label":
        shares = np.bincount(values, minlength=len(labels)) / max(len(values), 1)
        return ", ".join(f"{c} {p:.0%}" for c, p in zip(labels, shares, strict=True))
    if name == "truncated":
        return f"{float(np.mean(values)):.1%}"
    return _describe(name, float(np.mean(values)), summary_quantiles(values))


def _describe(name: str, mean: float | None, quantiles: dict[str, float]) -> str:
    """'mean 41 (p10 19, median 40, p90 62)'; confidence: the quantiles only, 4 digits."""
    q = [(k, quantiles.get(p)) for k, p in (("p10", "p10"), ("median", "p50"), ("p90", "p90"))]
    if name == "confidence":
        return ", ".join(f"{k} {_fmt(v, 4)}" for k, v in q)
    return f"mean {_fmt(mean)} (" + ", ".join(f"{k} {_fmt(v)}" for k, v in q) + ")"


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.{digits}g}" if abs(x) < 10 else f"{x:.0f}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- output ---------------------------------------------------------------------------------


def write_report(config: ReportConfig) -> DriftReport:
    """Build the report and write report.md, report.json and the PNGs into `config.out`."""
    report, profile, values = build_report(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_distributions(profile, values, report, out / "distributions.png")
    plot_over_time(report, out / "drift_over_time.png")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    (out / "report.md").write_text(markdown(report, config))
    return report


def markdown(report: DriftReport, config: ReportConfig) -> str:
    verdict = (
        f"**DRIFT** in {', '.join(report.drifted)}" if report.drifted else "**no drift**"
    ) + f" (PSI >= {report.threshold} is drift, >= {report.warn} a warning)"
    lines = [
        "# Drift report",
        "",
        f"- Result: {verdict}",
        f"- Reference: {report.profile_source}",
        f"- Current: {report.texts:,} prediction records from {report.start} to {report.end}"
        + (f" (--since {config.since})" if config.since else "")
        + (f" (--until {config.until})" if config.until else ""),
        f"- Logs: {len(report.files)} file(s) under {', '.join(config.logs)}",
    ]
    if report.skipped:
        lines.append(
            "- Skipped: " + ", ".join(f"{n:,} {why}" for why, n in sorted(report.skipped.items()))
        )
    lines += [
        "",
        "| feature | what | reference | current | PSI | warn / drift at | status |",
        "|---|---|---|---|---:|---|---|",
    ]
    for f in report.features:
        shown = {"drift": "**DRIFT**", "warn": "warn"}.get(f.status, f.status)
        lines.append(
            f"| `{f.feature}` | {f.description} | {f.reference} | {f.current} | {f.psi:.3f} "
            f"| {report.warn} / {report.threshold} | {shown} |"
        )
    lines += [
        "",
        (
            "PSI (population stability index) compares the share of texts in each bin of the "
            "reference (deciles of the reference values; truncated yes/no; the labels) with the "
            "current share: sum of (current - reference) x ln(current / reference)."
        ),
        "",
        "![reference vs current distributions](distributions.png)",
        "",
        "![drift score over time](drift_over_time.png)",
        "",
    ]
    return "\n".join(lines)


def plot_distributions(profile: Profile, values: dict, report: DriftReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = {f.feature: f for f in report.features}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, name in zip(axes.flat, FEATURES, strict=True):
        ref = profile.features[name]
        counts = ref.counts(values[name])
        current = counts / max(counts.sum(), 1)
        x = np.arange(len(ref.proportions))
        ax.bar(x - 0.2, ref.proportions, 0.4, label="reference", color="#8da0cb")
        ax.bar(x + 0.2, current, 0.4, label="current", color="#fc8d62")
        ax.set_xticks(x, ref.bin_names(), rotation=45 if len(x) > 3 else 0, ha="right", fontsize=8)
        r = results[name]
        color = {"drift": "crimson", "warn": "darkorange"}.get(r.status, "black")
        ax.set_title(f"{name}: PSI {r.psi:.3f} ({r.status})", color=color, fontsize=11)
        ax.set_ylabel("share of texts")
    axes.flat[0].legend()
    fig.suptitle(f"Reference vs current ({report.texts:,} texts, {report.start} .. {report.end})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_over_time(report: DriftReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [datetime.fromisoformat(t) for t in report.interval_ends]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, series in report.over_time.items():
        ax.plot(times, np.maximum(series, 1e-3), marker="o", ms=3, label=name)
    ax.axhline(report.warn, color="darkorange", ls="--", lw=1, label=f"warn {report.warn}")
    ax.axhline(report.threshold, color="crimson", ls="--", lw=1, label=f"drift {report.threshold}")
    ax.set_yscale("log")
    ax.set_ylabel("PSI vs reference (log scale; 0 drawn at 0.001)")
    size = report.texts // max(len(times), 1)
    ax.set_title(f"Drift score over time: PSI of {len(times)} consecutive groups of ~{size} texts")
    ax.set_xlabel("time of each group's last record (UTC)")
    ax.legend(fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
