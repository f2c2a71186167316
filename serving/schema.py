"""Request and response types of `POST /classify`; pydantic turns a violation into a 400 that
names it."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from serving.context import register_texts

# The request limits' defaults (MAX_ITEMS, MAX_TEXT_CHARS in serving.settings), here because
# clients of the contract (scoring/) read them too.
MAX_ITEMS = 64
MAX_TEXT_CHARS = 2000

EXAMPLE_TEXTS = [
    "A moving, beautifully acted film that stays with you.",
    "Two hours of my life I will never get back.",
]

# Characters that show nothing: whitespace, control and format characters (zero-width spaces
# and joiners, bidi marks, BOM, word joiner, soft hyphen, variation selectors, tags, fillers).
_INVISIBLE = (
    r"\s\x00-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb"
    r"\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_VISIBLE = re.compile(f"[^{_INVISIBLE}]")


def check_text(text: str) -> str:
    """A text must show something (pydantic already refuses invalid Unicode)."""
    if _VISIBLE.search(text) is None:
        raise ValueError("text is empty, whitespace-only or made of invisible characters")
    return text


def text_list_type(max_items: int, max_text_chars: int) -> Any:
    """`list[str]` with the request limits (the API's `texts` argument)."""
    text = Annotated[
        str, Field(min_length=1, max_length=max_text_chars), AfterValidator(check_text)
    ]
    return Annotated[
        list[text],
        AfterValidator(register_texts),  # for the timing headers of each answer
        Field(
            min_length=1,
            max_length=max_items,
            description=(
                f"1 to {max_items} texts of at most {max_text_chars} characters, each showing "
                "at least one visible character; texts longer than the model window are "
                "truncated to it"
            ),
            examples=[EXAMPLE_TEXTS],
        ),
    ]


class Prediction(BaseModel):
    """One answer per input text, in input order."""

    label: str = Field(examples=["positive"])
    score: float = Field(examples=[0.97], description="probability of `label`")
    scores: dict[str, float] = Field(examples=[{"negative": 0.03, "positive": 0.97}])
