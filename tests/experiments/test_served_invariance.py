"""The served-invariance probe's comparison: figures that fail when a text's answer moves."""

from experiments.served_invariance import compare


def answer(positive: float) -> dict:
    label = "positive" if positive >= 0.5 else "negative"
    return {
        "label": label,
        "score": max(positive, 1 - positive),
        "scores": {"negative": 1 - positive, "positive": positive},
    }


def test_equal_answers_give_zeros():
    alone = [answer(0.9), answer(0.2)]
    assert compare(alone, [answer(0.9), answer(0.2)]) == {
        "max_diff": 0.0,
        "texts_over_1e-4": 0,
        "label_changes": 0,
    }


def test_moved_scores_and_changed_labels_are_counted():
    alone = [answer(0.9), answer(0.51), answer(0.3)]
    other = [answer(0.9 + 5e-5), answer(0.49), answer(0.3 + 0.002)]
    result = compare(alone, other)
    assert abs(result["max_diff"] - 0.02) < 1e-9
    assert result["texts_over_1e-4"] == 2
    assert result["label_changes"] == 1
