"""Request validation: the limits and what counts as a text."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from serving.schema import text_list_type


@pytest.mark.parametrize(
    ("texts", "error"),
    [
        ([], "at least 1 item"),
        (["a"] * 5, "at most 4 items"),
        (["a" * 11], "at most 10 characters"),
        (["ok", " \n\t"], "invisible characters"),
        ([""], "at least 1 character"),
        (["ok", 3], "valid string"),
        ("just a string", "valid (list|array)"),
        (["\x00\x00"], "invisible characters"),
        (["\u200b\u200c\u200d\ufeff"], "invisible characters"),
        (["\u2060\u00ad\u202e"], "invisible characters"),
        (["ok \ud800"], "valid string"),
    ],
)
def test_request_limits_are_validated(texts, error):
    adapter = TypeAdapter(text_list_type(max_items=4, max_text_chars=10))
    assert adapter.validate_python(["fine", "ok"]) == ["fine", "ok"]
    with pytest.raises(ValidationError, match=error):
        adapter.validate_python(texts)


@pytest.mark.parametrize("text", ["\U0001f600", "x\u200b", "é", "日本", "\u00a0a"])
def test_visible_text_passes(text):
    adapter = TypeAdapter(text_list_type(max_items=4, max_text_chars=10))
    assert adapter.validate_python([text]) == [text]
