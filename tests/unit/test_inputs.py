"""The one reader of request bodies (clinic_backups.edge.inputs): limits, encodings, private keys
however written, and the characters PostgreSQL cannot hold."""

from __future__ import annotations

import base64
import json

import pytest
from clinic_backups.domain.errors import (
    BadRequest,
    PayloadTooLarge,
    PrivateKeyRefused,
    ValidationFailed,
)
from clinic_backups.edge.inputs import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_INT_DIGITS,
    contains_private_key,
    read_json_body,
)

KEY = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS3290GG"


def read(text: str) -> object:
    return read_json_body(text, False)


def test_an_ordinary_body_reads_as_itself():
    assert read('{"note": "Copia 🦷 ñ", "n": [1, 2.5, true, null]}') == {
        "note": "Copia 🦷 ñ",
        "n": [1, 2.5, True, None],
    }
    assert read("") == {} and read("  \n") == {}


@pytest.mark.parametrize(
    "text",
    [
        KEY,
        KEY.lower(),
        KEY.replace("-", "\u2010"),  # typographic hyphens
        KEY.replace("-", "\u2212"),  # minus signs
        "ＡＧＥ－ＳＥＣＲＥＴ－ＫＥＹ－" + KEY[15:],  # full width
        "AGE\u200b-SECRET\u200d-KEY\u2060-" + KEY[15:],  # invisible characters inside
        "ᴬGE-SECRET-KEY-",  # a modifier letter NFKC folds to A
    ],
)
def test_a_private_key_is_recognised_however_it_is_written(text):
    assert contains_private_key(text)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"note": KEY}),
        '{"note": "' + KEY.replace("-", "\\u002d") + '"}',
        '{"note": "' + "".join(f"\\u{ord(c):04x}" for c in KEY) + '"}',
        json.dumps({"a": [{"b": {"c": [KEY.lower()]}}]}),
        json.dumps({KEY: 1}),
    ],
    ids=["plain", "escaped_dashes", "all_escaped", "deep", "as_a_key"],
)
def test_a_private_key_anywhere_in_a_body_is_refused(body):
    with pytest.raises(PrivateKeyRefused):
        read(body)


def test_words_about_keys_are_not_keys():
    assert not contains_private_key("la llave secreta age1… no se comparte (secret key)")
    assert read('{"note": "AGE SECRET KEY"}') == {"note": "AGE SECRET KEY"}


@pytest.mark.parametrize(
    "text",
    [
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        '{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
        '{"n": ' + "9" * (MAX_INT_DIGITS + 1) + "}",
        '{"n": -' + "9" * 5000 + "}",
        '{"n": NaN}',
        '{"n": -Infinity}',
        "{not json",
        '{"a": 1} trailing',
    ],
)
def test_beyond_the_limits_or_not_json_is_400(text):
    with pytest.raises(BadRequest):
        read(text)


def test_brackets_inside_strings_do_not_count_as_nesting():
    deep_text = "[" * 500
    assert read(json.dumps({"note": deep_text})) == {"note": deep_text}
    assert read('{"n": ' + "9" * MAX_INT_DIGITS + "}") == {"n": int("9" * MAX_INT_DIGITS)}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"note": "caf\xe9"}',
        '{"note": "x"}'.encode("utf-16"),
        '{"note": "x"}'.encode("utf-32"),
        b"\xef\xbb\xbf{}",
        b'{"note": "\xed\xa0\x80"}',
    ],
)
def test_only_utf8_json_is_read(raw):
    with pytest.raises(BadRequest):
        read_json_body(base64.b64encode(raw).decode(), True)


def test_bad_base64_is_400_and_size_is_counted_in_bytes():
    with pytest.raises(BadRequest):
        read_json_body("not base64!", True)
    with pytest.raises(PayloadTooLarge):
        read(json.dumps({"note": "ñ" * (MAX_BODY_BYTES // 2)}))  # fewer chars than bytes
    with pytest.raises(PayloadTooLarge):
        read_json_body(base64.b64encode(b" " * (MAX_BODY_BYTES + 1)).decode(), True)


@pytest.mark.parametrize(
    "body,field",
    [
        ('{"note": "a\\u0000b"}', "note"),
        ('{"note": "\\ud800"}', "note"),
        ('{"a": {"b": ["ok", "\\udfff"]}}', "a.b.1"),
        ('{"a\\u0000": 1}', "a?"),
    ],
)
def test_nul_and_unpaired_surrogates_name_the_field(body, field):
    with pytest.raises(ValidationFailed) as caught:
        read(body)
    assert [d.field for d in caught.value.details] == [field]


def test_a_paired_surrogate_escape_is_just_an_emoji():
    assert read('{"note": "\\ud83e\\uddb7"}') == {"note": "🦷"}
