"""The web page at /ui in a real Chromium (Playwright) against a real `bentoml serve` of the tiny
model: what a person sees and does, found by role, label and visible text."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.tiny import LABELS, tiny_dataset
from tests.ui.browser import DESKTOP, PHONE, png_size
from tests.ui.conftest import API_KEY

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.browser]

TEXTS_FIELD = "Texts to classify, one per line"


def reviews(n: int) -> list[dict]:
    """Tiny-dataset rows (negative, positive, ...): the tiny model labels them right."""
    return tiny_dataset(n, seed=3)


def predictions(page: Page):
    return page.get_by_role("list", name="Predictions").get_by_role("listitem")


def classify_and_wait(page: Page, url: str):
    """Click Classify; the /classify answer the page got."""
    with page.expect_response(f"{url}/classify") as answer:
        page.get_by_role("button", name="Classify").click()
    return answer.value


def bar_values(item) -> dict[str, float]:
    """{label: probability} from a result's bars; each bar is drawn at its probability."""
    values = {}
    for meter in item.get_by_role("meter").all():
        value = float(meter.get_attribute("aria-valuenow"))
        track, fill = meter.bounding_box(), meter.locator("span").bounding_box()
        assert fill["width"] == pytest.approx(value * track["width"], abs=1.5)
        values[meter.get_attribute("aria-label")] = value
    return values


def test_two_texts_get_a_label_and_a_bar_per_label(page, offline, classify_server, artifacts):
    rows = reviews(2)
    page.set_viewport_size(DESKTOP)
    page.goto(f"{classify_server}/ui")  # no trailing slash
    expect(page).to_have_url(f"{classify_server}/ui/")

    page.get_by_label(TEXTS_FIELD).fill("\n\n".join(row["text"] for row in rows))
    expect(page.get_by_text("2 texts (at most 64)")).to_be_visible()  # limits from /docs.json
    response = classify_and_wait(page, classify_server)

    answers = response.json()
    items = predictions(page)
    expect(items).to_have_count(2)
    for i, (row, answer, item) in enumerate(zip(rows, answers, items.all(), strict=True)):
        expect(item).to_have_accessible_name(f"Text {i + 1}: {row['label']}")
        expect(item.get_by_text(row["text"])).to_be_visible()
        values = bar_values(item)
        assert values == pytest.approx(answer["scores"])
        assert set(values) == set(LABELS)
        assert values[row["label"]] > 0.5
    info = page.get_by_role("status")
    expect(info).to_contain_text(f"request id {response.headers['x-request-id']}")
    expect(info).to_contain_text(f"{response.headers['x-total-time']} ms in the service")
    expect(info).to_contain_text(re.compile(r"\d+ ms in the browser"))
    page.screenshot(path=str(artifacts / "desktop.png"), full_page=True)

    page.get_by_role("tab", name="Summary").click()
    table = page.get_by_role("table")
    expect(table).to_be_visible()
    for label in LABELS:
        row = table.get_by_role("row").filter(has=page.get_by_role("rowheader", name=label))
        expect(row.get_by_role("cell").first).to_have_text("1")
        expect(row.get_by_role("meter", name=label)).to_have_attribute("aria-valuenow", "0.5")
    page.screenshot(path=str(artifacts / "desktop-summary.png"), full_page=True)

    assert png_size(artifacts / "desktop.png")[0] == DESKTOP["width"]
    assert offline == []  # nothing but the service itself was asked for anything


def test_keyboard_only_on_a_phone_width_screen(page, offline, classify_server, artifacts):
    rows = reviews(4)
    page.set_viewport_size(PHONE)
    page.goto(f"{classify_server}/ui/")

    texts = page.get_by_label(TEXTS_FIELD)
    for _ in range(5):  # Tab from the top of the page to the text box
        page.keyboard.press("Tab")
        if texts.evaluate("e => e === document.activeElement"):
            break
    expect(texts).to_be_focused()
    page.keyboard.type("\n".join(row["text"] for row in rows))
    page.keyboard.press("Control+Enter")

    items = predictions(page)
    expect(items).to_have_count(4)
    for i, (row, item) in enumerate(zip(rows, items.all(), strict=True)):
        expect(item).to_have_accessible_name(f"Text {i + 1}: {row['label']}")
        expect(item.get_by_role("meter")).to_have_count(len(LABELS))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways on a phone"
    page.screenshot(path=str(artifacts / "phone.png"), full_page=True)
    assert png_size(artifacts / "phone.png")[0] == PHONE["width"]

    page.get_by_role("tab", name="Per text").focus()  # tabs: the arrow keys move between them
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("tab", name="Summary")).to_be_focused()
    expect(page.get_by_role("tab", name="Summary")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("table")).to_contain_text("4 texts by predicted label")
    assert offline == []


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(["A really great film.", "a" * 2001], id="text-over-the-limit"),
        pytest.param(["A really great film."] * 65, id="too-many-texts"),
    ],
)
def test_api_errors_are_shown_in_the_apis_words(page, classify_server, lines):
    page.goto(f"{classify_server}/ui/")
    page.get_by_role("button", name="A positive one").click()  # a result to be replaced
    expect(predictions(page)).to_have_count(1)

    page.get_by_label(TEXTS_FIELD).fill("\n".join(lines))
    response = classify_and_wait(page, classify_server)

    assert response.status == 400
    api = httpx.post(f"{classify_server}/classify", json={"texts": lines}).json()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("400 Bad Request")
    expect(alert).to_contain_text(api["error"])
    for detail in api["detail"]:
        expect(alert).to_contain_text(detail["msg"])
    expect(alert).to_contain_text(f"request id {response.headers['x-request-id']}")
    expect(predictions(page)).to_have_count(0)  # the old result is gone, not left as if new
    expect(page.get_by_label(TEXTS_FIELD)).to_have_value("\n".join(lines))


def test_api_key_is_asked_for_on_401_and_kept_for_the_tab_only(
    page, new_context, keyed_server, artifacts
):
    rows = reviews(2)
    page.goto(f"{keyed_server}/ui")  # the page itself needs no key
    key_field = page.get_by_label("API key")
    expect(key_field).to_be_hidden()
    page.get_by_label(TEXTS_FIELD).fill("\n".join(row["text"] for row in rows))

    assert classify_and_wait(page, keyed_server).status == 401
    missing = httpx.post(f"{keyed_server}/classify", json={"texts": ["ok"]}).json()["error"]
    expect(page.get_by_role("alert")).to_contain_text("401 Unauthorized")
    expect(page.get_by_role("alert")).to_contain_text(missing)
    expect(key_field).to_be_visible()
    expect(key_field).to_be_focused()
    page.screenshot(path=str(artifacts / "api-key.png"), full_page=True)

    key_field.fill("not-the-key")
    assert classify_and_wait(page, keyed_server).status == 401
    wrong = httpx.post(
        f"{keyed_server}/classify", json={"texts": ["ok"]}, headers={"X-API-Key": "nope"}
    ).json()["error"]
    assert wrong != missing
    expect(page.get_by_role("alert")).to_contain_text(wrong)

    key_field.fill(API_KEY)
    assert classify_and_wait(page, keyed_server).status == 200
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(predictions(page)).to_have_count(2)
    expect(predictions(page).first).to_have_accessible_name(f"Text 1: {rows[0]['label']}")

    page.reload()  # same tab: the key is still there
    expect(page.get_by_label("API key")).to_have_value(API_KEY)
    other_tab = new_context().new_page()  # another session: it is not
    other_tab.goto(f"{keyed_server}/ui/")
    expect(other_tab.get_by_label("API key")).to_be_hidden()
    assert other_tab.evaluate("sessionStorage.length") == 0


def test_the_api_docs_page_links_to_the_web_page_and_examples_are_one_click(
    page, offline, classify_server
):
    docs = page
    docs.goto(f"{classify_server}/")  # BentoML's OpenAPI page: the link is in its description
    with docs.context.expect_page() as new_tab:  # Swagger UI opens description links in a tab
        docs.get_by_role("link", name="Try it in the browser").click()
    page = new_tab.value
    expect(page).to_have_url(f"{classify_server}/ui/")
    expect(page.get_by_role("heading", name="Sentiment classifier")).to_be_visible()

    with page.expect_response(f"{classify_server}/classify"):
        page.get_by_role("button", name="A few reviews").click()
    texts = page.get_by_label(TEXTS_FIELD).input_value().splitlines()
    assert len(texts) > 2
    expect(predictions(page)).to_have_count(len(texts))
    for text, item in zip(texts, predictions(page).all(), strict=True):
        expect(item.get_by_text(text)).to_be_visible()
        expect(item.get_by_role("meter")).to_have_count(len(LABELS))

    page.get_by_role("link", name="API docs").click()
    expect(page).to_have_url(f"{classify_server}/")
    expect(page.get_by_role("link", name="Try it in the browser")).to_be_visible()
    # The OpenAPI page tries Google Tag Manager (BentoML's template); the web page asks nothing.
    assert all("googletagmanager" in url for url in offline), offline
