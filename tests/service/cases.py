"""Client mistakes and the 4xx each must get: (id, body, content type, status, text in answer).

Each is tested once, where it lives (STYLE habit 13): `BAD_REQUESTS` are the body's validation
(the API's schema, in-process: tests/service/test_app.py); `TRANSPORT_REFUSALS` are the guard's
answers about the body as it arrives (size, media type) over a real connection
(tests/service/test_server.py)."""

from __future__ import annotations

import json

BAD_REQUESTS = [
    ("invalid-json", b'{"texts": [', "application/json", 400, "Invalid JSON"),
    ("empty-body", b"", "application/json", 400, "Field required"),
    ("missing-field", b'{"text": ["good"]}', "application/json", 400, "Field required"),
    ("not-an-object", b'["good"]', "application/json", 400, "should be an object"),
    ("texts-not-a-list", b'{"texts": "good"}', "application/json", 400, "valid array"),
    ("empty-list", b'{"texts": []}', "application/json", 400, "at least 1 item"),
    ("too-many-items", json.dumps({"texts": ["ok"] * 65}).encode(), None, 400, "at most 64 items"),
    ("text-too-long", json.dumps({"texts": ["a" * 2001]}).encode(), None, 400, "at most 2000"),
    ("blank-text", b'{"texts": ["ok", " \\n "]}', None, 400, "invisible characters"),
    ("nul-text", b'{"texts": ["\\u0000\\u0000"]}', None, 400, "invisible characters"),
    ("zero-width-text", b'{"texts": ["\\u200b\\u200d\\ufeff"]}', None, 400, "invisible"),
    ("lone-surrogate", b'{"texts": ["ok \\ud800"]}', None, 400, "Invalid JSON"),
    ("empty-text", b'{"texts": [""]}', None, 400, "at least 1 character"),
    ("number-text", b'{"texts": ["ok", 5]}', None, 400, "valid string"),
    ("null-text", b'{"texts": [null]}', None, 400, "valid string"),
]
BAD_IDS = [case[0] for case in BAD_REQUESTS]

TRANSPORT_REFUSALS = [
    ("body-too-large", b'{"texts": ["' + b"a" * 1_600_000 + b'"]}', None, 413, "MAX_BODY_BYTES"),
    ("form-content-type", b"texts=good", "application/x-www-form-urlencoded", 415, "json"),
    ("multipart", b"--x--\r\n", "multipart/form-data; boundary=x", 415, "application/json"),
]
TRANSPORT_IDS = [case[0] for case in TRANSPORT_REFUSALS]
