"""The shared helpers: CLI flags onto a config, metrics, provenance."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

from common.cli import comma_list, config_from_args, given
from common.metrics import classification_metrics
from common.provenance import git_sha, package_versions


@dataclasses.dataclass
class Config:
    size: int = 8
    name: str = "x"
    fast: bool = True
    items: list[str] = dataclasses.field(default_factory=list)


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


def test_metrics_from_probabilities():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = classification_metrics([0, 1, 1, 1], probs, ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["confusion_matrix"] == [[1, 0], [1, 2]] and m["support"] == 4
    assert m["roc_auc"] == pytest.approx(1.0)


def test_provenance():
    sha = git_sha()
    assert sha is None or len(sha) == 40
    versions = package_versions(["numpy", "surely-not-installed-pkg"])
    assert versions["numpy"] and versions["surely-not-installed-pkg"] is None
