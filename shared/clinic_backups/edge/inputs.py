"""What a request body may be: reading it, and refusing what must never go further.

Every JSON body goes through `read_json_body` before any model sees it:

- **Bytes.** At most `MAX_BODY_BYTES`; strict UTF-8 (RFC 8259), so a Latin-1, UTF-16 or
  BOM-prefixed body is a 400 `bad_request` rather than a decoding crash.
- **Shape.** Nested at most `MAX_DEPTH` deep (Python's parser recurses: thousands of `[`
  raise RecursionError), integers of at most `MAX_INT_DIGITS` digits (Python refuses to
  convert more than 4,300 digits with a ValueError), no `NaN`/`Infinity` (not JSON). Beyond
  these limits: 400 `bad_request`.
- **Private keys.** The raw text and every string in it — values and keys, at any depth, after
  JSON unescaping — are normalised (NFKC, invisible format characters dropped, every dash
  made `-`) and compared case-insensitively with `AGE-SECRET-KEY-`: a match is a 422
  `private_key_refused`, before anything could store, log or echo it.
- **Characters PostgreSQL cannot hold.** A NUL or a lone UTF-16 surrogate in any string is a
  422 `validation_error` naming the field (`note`, `weekdays.0`, `extra.1`…).

Pure functions: `api.parse_body` calls them; the unit tests call them directly.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from typing import Any

from clinic_backups.domain.errors import (
    BadRequest,
    FieldProblem,
    PayloadTooLarge,
    PrivateKeyRefused,
    ValidationFailed,
)

MAX_BODY_BYTES = 16 * 1024
MAX_DEPTH = 32
MAX_INT_DIGITS = 40
PRIVATE_KEY_MARK = "AGE-SECRET-KEY-"

# Characters that are not text: NUL, which PostgreSQL's text type cannot store, and UTF-16
# surrogates, which no UTF-8 encoder (libpq's included) accepts on their own.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def decode_body(raw: str | None, base64_encoded: bool) -> str:
    """The body as text: API Gateway sends text bodies as they are and anything it does not
    take for text base64-encoded. Only UTF-8 is JSON (RFC 8259 §8.1)."""
    if not raw:
        return ""
    if base64_encoded:
        if len(raw) > MAX_BODY_BYTES * 4 // 3 + 4:
            raise PayloadTooLarge()
        try:
            data = base64.b64decode(raw.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise BadRequest("The body could not be read.") from None
    else:
        try:
            data = raw.encode("utf-8")
        except UnicodeEncodeError:
            # Text that was never UTF-8 (a surrogate smuggled into the event).
            raise BadRequest("The body is not valid UTF-8 JSON.") from None
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body is not valid UTF-8 JSON.") from None
    if text.startswith("\ufeff"):
        raise BadRequest("The body starts with a byte-order mark; send plain UTF-8 JSON.")
    return text


def normalise(text: str) -> str:
    """What a human reads: compatibility forms folded (NFKC: full-width letters, ligatures),
    invisible format characters (zero-width spaces, joiners, bidi marks) dropped, every dash
    a hyphen-minus, upper case."""
    folded = unicodedata.normalize("NFKC", text)
    kept = []
    for char in folded:
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        kept.append("-" if category == "Pd" or char == "\u2212" else char)
    return "".join(kept).upper()


def contains_private_key(text: str) -> bool:
    if PRIVATE_KEY_MARK in text.upper():
        return True
    try:
        return PRIVATE_KEY_MARK in normalise(text)
    except ValueError:  # pragma: no cover - unicodedata on lone surrogates is fine; belt only
        return True


def _depth_exceeded(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (a linear scan: the parser
    itself would recurse)."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


class _NotJson(Exception):
    pass


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotJson(f"a number in the body has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def parse_json(text: str) -> Any:
    """The JSON value of `text`, within the limits (400 `bad_request` beyond them)."""
    if _depth_exceeded(text, MAX_DEPTH):
        raise BadRequest(f"The body is nested more than {MAX_DEPTH} levels deep.")
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except _NotJson as error:
        raise BadRequest(f"The body is not valid JSON: {error}.") from None
    except (ValueError, RecursionError):
        # JSONDecodeError is a ValueError; RecursionError only if the scan above missed.
        raise BadRequest("The body is not valid JSON.") from None


def _field(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path) or "body"


def _printable_key(key: str) -> str:
    return _UNSTORABLE.sub("?", key)[:80]


def screen(value: Any, path: tuple[str | int, ...] = ()) -> None:
    """Refuse a private key in any string (value or key, any depth) and, then, NUL or lone
    surrogates (naming the field). Raises PrivateKeyRefused / ValidationFailed."""
    problems: list[FieldProblem] = []

    def walk(item: Any, where: tuple[str | int, ...]) -> None:
        if isinstance(item, str):
            if contains_private_key(item):
                raise PrivateKeyRefused()
            if _UNSTORABLE.search(item):
                problems.append(
                    FieldProblem(_field(where), "must not contain NUL or unpaired surrogates")
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if contains_private_key(key):
                    raise PrivateKeyRefused()
                name = _printable_key(key)
                if name != key[:80]:
                    problems.append(
                        FieldProblem(
                            _field((*where, name)),
                            "a field name must not contain NUL or unpaired surrogates",
                        )
                    )
                walk(child, (*where, name))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, (*where, index))

    walk(value, path)
    if problems:
        raise ValidationFailed(details=problems)


def read_json_body(raw: str | None, base64_encoded: bool) -> Any:
    """The screened JSON value of a request body (`{}` for an empty one)."""
    text = decode_body(raw, base64_encoded)
    # The raw text first: a key pasted anywhere is refused even in a body that is not JSON.
    if contains_private_key(text):
        raise PrivateKeyRefused()
    if not text.strip():
        return {}
    value = parse_json(text)
    screen(value)
    return value
