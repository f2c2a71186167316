"""The service's settings: environment variables, typed, a bad value names its variable."""

from __future__ import annotations

import pytest

from serving.settings import ServiceSettings


def test_defaults_and_overrides():
    settings = ServiceSettings.from_env({"MAX_ITEMS": "8", "MODEL_TAG": "x:1", "ORT_THREADS": "0"})
    assert (settings.max_items, settings.model_tag, settings.ort_threads) == (8, "x:1", 0)
    assert settings.session_threads == 1 and settings.processes >= 1
    assert ServiceSettings.from_env({}).max_items == 64
    assert ServiceSettings.from_env({"INFERENCE_PROCESSES": "0"}).processes == 0


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on"])
def test_booleans_take_the_usual_spellings(value):
    assert ServiceSettings.from_env({"ACCESS_LOG": value}).access_log is True
    assert ServiceSettings.from_env({"ACCESS_LOG": "false"}).access_log is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAX_BATCH_SIZE": "many"}, "MAX_BATCH_SIZE='many'"),
        ({"WORKERS": "0"}, "WORKERS='0': Input should be greater than or equal to 1"),
        ({"ACCESS_LOG": "maybe"}, "ACCESS_LOG='maybe'"),
        ({"REQUEST_TIMEOUT_S": "-1"}, "REQUEST_TIMEOUT_S='-1'"),
        ({"BATCH_WAIT_MS": "5", "BATCH_MIN_WAIT_MS": "9"}, "BATCH_MIN_WAIT_MS must not exceed"),
    ],
)
def test_a_bad_value_names_its_variable(env, message):
    with pytest.raises(ValueError, match=message):
        ServiceSettings.from_env(env)


def test_the_process_environment_is_read(monkeypatch):
    monkeypatch.setenv("MAX_TEXT_CHARS", "100")
    monkeypatch.setenv("ACCESS_LOG", "on")
    settings = ServiceSettings.from_env()
    assert settings.max_text_chars == 100 and settings.access_log
    monkeypatch.setenv("MAX_TEXT_CHARS", "lots")
    with pytest.raises(ValueError, match="MAX_TEXT_CHARS='lots'"):
        ServiceSettings.from_env()


def test_body_limit_fits_the_largest_request_within_the_item_limits():
    import json

    settings = ServiceSettings.from_env({})
    worst = json.dumps({"texts": ["\U0001f600" * settings.max_text_chars] * settings.max_items})
    assert len(worst.encode()) <= settings.body_limit  # every character an escaped emoji
    assert ServiceSettings.from_env({"MAX_BODY_BYTES": "1000"}).body_limit == 1000


def test_api_key_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert ServiceSettings.from_env({"API_KEY_FILE": str(secret)}).resolved_api_key() == "s3cret"
    assert ServiceSettings.from_env({"API_KEY": "k"}).resolved_api_key() == "k"
    assert ServiceSettings.from_env({}).resolved_api_key() is None
    with pytest.raises(ValueError, match="API_KEY_FILE=.*cannot read"):
        ServiceSettings.from_env({"API_KEY_FILE": str(tmp_path / "nope")}).resolved_api_key()
    with pytest.raises(ValueError, match="not both"):
        ServiceSettings.from_env({"API_KEY": "k", "API_KEY_FILE": str(secret)})


def test_the_docs_document_every_setting_with_its_default():
    """The settings table (docs/serving.md, section "Settings") has a row per setting and
    nothing else; a numeric default there is the code's."""
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    assert "\n## Settings\n" in page, "docs/serving.md lacks its Settings section"
    section = page.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `") and line.count("|") >= 4:
            name, default = (cell.strip() for cell in line.split("|")[1:3])
            rows[name.strip("`")] = default
    defaults = ServiceSettings.from_env({})
    documented = set()
    for field, info in ServiceSettings.model_fields.items():
        if field == "bentoml_containerized":  # set by BentoML's Dockerfile, not by users
            continue
        env = field.upper()
        documented.add(env)
        assert env in rows, f"docs/serving.md's settings table lacks a row for {env}"
        value = getattr(defaults, field)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and info.default is not None:
            assert float(rows[env].replace(",", "")) == value, (env, rows[env], value)
    assert set(rows) == documented, f"rows for no setting: {sorted(set(rows) - documented)}"
