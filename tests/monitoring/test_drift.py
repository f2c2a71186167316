"""The drift statistics (serving.drift): PSI, bins, the profile format, the window."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from serving.drift import (
    FEATURES,
    PSI_DRIFT,
    PSI_WARN,
    FeatureReference,
    Profile,
    ProfileError,
    Window,
    bin_counts,
    feature_values,
    psi,
    quantile_edges,
    status,
)


def test_psi_is_zero_for_equal_shares_and_follows_its_formula():
    assert psi([0.25, 0.25, 0.5], [10, 10, 20]) == pytest.approx(0.0)
    # (0.5 - 0.2) ln(0.5 / 0.2) + (0.5 - 0.8) ln(0.5 / 0.8)
    assert psi([0.2, 0.8], [5, 5]) == pytest.approx(0.3 * math.log(2.5) + 0.3 * math.log(1.6))
    assert psi([0.2, 0.8], [0, 0]) != psi([0.2, 0.8], [0, 0])  # NaN: nothing to compare


def test_an_empty_reference_bin_counts_but_stays_finite():
    score = psi([1.0, 0.0], [95, 5])  # 5% truncated where the reference never truncated
    assert PSI_DRIFT < score < 1.0
    assert psi([1.0, 0.0], [999, 1]) < PSI_WARN  # one text in a thousand is not drift


def test_bins_hold_values_above_the_previous_edge_up_to_their_own():
    edges = (0.0, 10.0)
    assert bin_counts(np.array([-1, 0, 0.5, 10, 11]), edges).tolist() == [2, 2, 1]


def test_quantile_edges_make_one_bin_of_a_value_that_fills_several_deciles():
    unk_rate = np.r_[np.zeros(950), np.linspace(0.01, 0.5, 50)]
    assert quantile_edges(unk_rate) == (0.0,)  # bins: no unknown tokens / some
    edges = quantile_edges(np.arange(1000.0))
    assert len(edges) == 9 and edges[4] == pytest.approx(499.5)
    confidence = np.r_[np.full(500, 0.99712), np.full(500, 0.99745)]
    assert quantile_edges(confidence, resolution=1e-3) == (0.997,)


def _profile(rng: np.random.Generator, n: int = 5000) -> Profile:
    values = _sample(rng, n)
    return Profile.build(values, values, ["negative", "positive"], {"sources": {"test": n}})


def _sample(rng, n, length=60.0, unk=0.0, positive=0.5) -> dict[str, np.ndarray]:
    chars = rng.gamma(4.0, length / 4.0, n).round() + 1
    tokens = np.minimum(np.ceil(chars / 4) + 2, 32)
    return feature_values(
        chars,
        tokens,
        tokens >= 32,
        rng.binomial(tokens.astype(int), unk),
        rng.beta(8, 1, n),
        (rng.random(n) < positive).astype(int),
    )


def test_held_out_sample_stays_below_warn_and_shifts_pass_drift():
    rng = np.random.default_rng(0)
    profile = _profile(rng)
    held_out = profile.scores(_sample(rng, 1000))
    assert max(held_out.values()) < PSI_WARN, held_out
    longer = profile.scores(_sample(rng, 1000, length=240))
    assert min(longer["chars"], longer["tokens"], longer["truncated"]) >= PSI_DRIFT, longer
    assert profile.scores(_sample(rng, 1000, unk=0.3))["unk_rate"] >= PSI_DRIFT
    assert profile.scores(_sample(rng, 1000, positive=1.0))["label"] >= PSI_DRIFT
    assert [status(s) for s in (0.05, 0.1, 0.3, math.nan)] == ["ok", "warn", "drift", "n/a"]


def test_profile_round_trips_through_its_file(tmp_path):
    profile = _profile(np.random.default_rng(1))
    path = profile.save(tmp_path / "reference_profile.json")
    loaded = Profile.load(path)
    assert set(loaded.features) == set(FEATURES) and loaded.labels == ["negative", "positive"]
    sample = _sample(np.random.default_rng(2), 500)
    for name, score in profile.scores(sample).items():
        assert loaded.scores(sample)[name] == pytest.approx(score, abs=1e-4)
    assert loaded.info["sources"] == {"test": 5000}
    assert loaded.features["truncated"].bin_names() == ["no", "yes"]
    assert loaded.features["chars"].bin_names()[0].startswith("<= ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope", "not a readable JSON file"),
        ('{"format": "other", "version": 1}', "not a sentiment-reference-profile"),
        (
            '{"format": "sentiment-reference-profile", "version": 1, "features": {}}',
            "'features' must hold exactly",
        ),
    ],
)
def test_a_bad_profile_names_its_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "reference_profile.json"
    path.write_text(content)
    with pytest.raises(ProfileError, match=f"{path}.*{message}"):
        Profile.load(path)
    with pytest.raises(ProfileError, match="no reference profile there"):
        Profile.load(tmp_path / "missing.json")


def test_a_profile_whose_bins_do_not_match_is_refused(tmp_path):
    data = _profile(np.random.default_rng(3)).to_dict()
    data["features"]["chars"]["edges"] = [3.0, 1.0]
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="'chars': needs sorted edges"):
        Profile.load(tmp_path / "p.json")
    assert FeatureReference.from_dict("label", data["features"]["label"]).kind == "categorical"


def test_window_keeps_the_last_texts():
    window = Window(5, names=("chars", "label"))
    window.add({"chars": np.array([1.0, 2, 3]), "label": np.array([0, 0, 0])})
    assert sorted(window.values()["chars"]) == [1, 2, 3] and window.count == 3
    window.add({"chars": np.array([4.0, 5, 6, 7]), "label": np.array([1, 1, 1, 1])})
    assert sorted(window.values()["chars"]) == [3, 4, 5, 6, 7] and window.count == 5
    window.add({"chars": np.arange(10.0, 20), "label": np.ones(10, int)})
    assert sorted(window.values()["chars"]) == [15, 16, 17, 18, 19]
