"""The shared helpers: CLI flags onto a config, metrics, provenance."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from common.cli import comma_list, config_from_args, field_default, given, with_default
from common.metrics import classification_metrics, softmax
from common.provenance import git_sha, package_versions


@dataclasses.dataclass
class Config:
    size: int = 8
    name: str = "x"
    fast: bool = True
    items: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Options:
    path: str
    sizes: tuple[int, ...] = (8, 1)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int)
    p.add_argument("--slow", dest="fast", action="store_false", default=None)
    p.add_argument("--items", type=comma_list)
    p.add_argument("--verbose", action="store_true")  # not a config field
    return p


def test_only_given_flags_override_the_config_defaults():
    cfg = config_from_args(Config, _parser().parse_args([]))
    assert cfg == Config()
    cfg = config_from_args(
        Config, _parser().parse_args(["--size", "3", "--slow", "--items", "a,b,"])
    )
    assert cfg == Config(size=3, fast=False, items=["a", "b"])


def test_flags_apply_on_top_of_a_base_and_fixed_values():
    base = Config(size=5, name="preset")
    cfg = config_from_args(Config, _parser().parse_args(["--slow"]), base, name="fixed")
    assert cfg == Config(size=5, name="fixed", fast=False)
    assert given({"size": None, "name": "a", "other": 1}, Config) == {"name": "a"}


def test_help_texts_read_the_default_from_the_config():
    assert with_default(Config, "size", "texts per call") == "texts per call (default: 8)"
    assert with_default(Config, "name") == "default: x"
    assert field_default(Config, "items") == [] and with_default(Config, "items") == "default: "
    assert with_default(Options, "sizes") == "default: 8,1"
    with pytest.raises(ValueError, match="Config has no field 'colour'"):
        field_default(Config, "colour")
    with pytest.raises(ValueError, match="Options.path has no default"):
        field_default(Options, "path")

    def score(path: str, batch_size: int = 64) -> None: ...

    assert with_default(score, "batch_size", "texts per pass") == "texts per pass (default: 64)"
    with pytest.raises(ValueError, match=r"score\(path\) has no default"):
        field_default(score, "path")


def test_metrics_from_probabilities():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = classification_metrics([0, 1, 1, 1], probs, ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["confusion_matrix"] == [[1, 0], [1, 2]] and m["support"] == 4
    assert m["roc_auc"] == pytest.approx(1.0)


def test_softmax_of_logits():
    logits = np.array([[1000.0, 1000.0], [0.0, np.log(3.0)], [-2.0, 2.0]], dtype=np.float32)
    probs = softmax(logits)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs[:2], [[0.5, 0.5], [0.25, 0.75]])  # no overflow at 1000
    np.testing.assert_allclose(probs[2], [1 / (1 + np.e**4), np.e**4 / (1 + np.e**4)])


REPO_ROOT = Path(__file__).resolve().parents[2]


def test_git_sha_is_the_checked_out_commit():
    """The tests run in a git checkout (CI clones the repository): the commit checked out."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert len(head) == 40
    assert git_sha() == head
    assert git_sha(REPO_ROOT / "common") == head


def test_git_sha_is_none_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repo above it
    assert git_sha(tmp_path) is None
    assert git_sha(tmp_path / "missing") is None  # not even a directory


def test_package_versions():
    versions = package_versions(["numpy", "surely-not-installed-pkg"])
    assert versions == {"numpy": np.__version__, "surely-not-installed-pkg": None}
