"""Recognisers of sensitive values stored in the clear, for ``dynaseal audit``.

Each detector is a cheap pre-filter plus an exact check, tuned to miss little and to flag
little that is not what it says: a card number must pass Luhn, an SSN must have a valid area,
group and serial, a JWT must have a JSON header, a Fernet token must carry Fernet's version
byte and a possible length. Values are reported masked (:func:`mask`), never whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

__all__ = ["KINDS", "detect", "mask", "walk_strings"]

_SSN = re.compile(r"(?<!\d)(\d{3})-(\d{2})-(\d{4})(?!\d)")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# with a "+" country code, or the separators a person types: a bare run of ten digits is
# more often an epoch time or an id than a phone number
_PHONE = re.compile(r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,4}"
                    r"(?![\w])|(?<![\w(])(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w])")
_AWS_KEY = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[A-Z2-7]{16}"
                      r"(?![A-Z0-9])")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_PEM = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_FERNET = re.compile(r"^gAAAAA[A-Za-z0-9_-]{50,}={0,2}$")

KINDS = ("ssn", "card", "email", "phone", "aws-access-key", "jwt", "pem-private-key",
         "fernet-token")
"""Every kind a finding can have; ``fernet-token`` means field-encrypted outside dynaseal."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _ssn(text: str) -> bool:
    for m in _SSN.finditer(text):
        area, group, serial = m.groups()
        if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
            return True
    return False


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits)


def _card(text: str) -> bool:
    for m in _CARD.finditer(text):
        run = m.group()
        if _is_card(re.sub(r"[ -]", "", run)):
            return True
        # a card with one more digit group before or after it ("4111 1111 1111 1111 12/27",
        # "qty 5 4111 ..."); only those, so that a long run of grouped digits (dates, phone
        # lists) does not offer dozens of parts, one in ten of which passes Luhn
        groups = re.split(r"[ -]", run)
        trimmed = (groups[1:], groups[:-1], groups[1:-1])
        if len(groups) > 1 and any(_is_card("".join(g)) for g in trimmed):
            return True
    return False


def _jwt(text: str) -> bool:
    for m in _JWT.finditer(text):
        head = m.group().split(".", 1)[0]
        try:
            decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except (ValueError, binascii.Error):
            continue
        if isinstance(decoded, dict) and "alg" in decoded:
            return True
    return False


def _fernet(text: str) -> bool:
    """Fernet: version byte 0x80, 8-byte time, 16-byte IV, AES-CBC blocks, 32-byte HMAC,
    base64url. The smallest token (empty plaintext) is 73 bytes."""
    if not _FERNET.match(text):
        return False
    try:
        raw = base64.urlsafe_b64decode(text)
    except (ValueError, binascii.Error):
        return False
    return raw[0] == 0x80 and len(raw) >= 73 and (len(raw) - 57) % 16 == 0


_CHECKS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("pem-private-key", lambda t: "PRIVATE KEY-----" in t and bool(_PEM.search(t))),
    ("jwt", lambda t: "eyJ" in t and _jwt(t)),
    ("aws-access-key", lambda t: bool(_AWS_KEY.search(t))),
    ("email", lambda t: "@" in t and bool(_EMAIL.search(t))),
    ("ssn", lambda t: "-" in t and _ssn(t)),
    ("card", _card),
    ("phone", lambda t: bool(_PHONE.search(t))),
)


def detect(text: str) -> list[str]:
    """The kinds of sensitive value found in ``text`` (a Fernet token is only that)."""
    if text.startswith("gAAAAA") and _fernet(text):
        return ["fernet-token"]
    if len(text) < 9:
        return []
    found = [kind for kind, check in _CHECKS if check(text)]
    if "card" in found and "phone" in found:
        found.remove("phone")  # a card number's digits also look like a phone number
    return found


def mask(text: str) -> str:
    """A masked form for reports: the length and at most the last two characters."""
    if len(text) <= 6:
        return "*" * len(text)
    return "*" * min(len(text) - 2, 16) + text[-2:]


def walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(attribute path, text) of every string and number in a value, nested ones included.

    Numbers are looked at as their digits (a card number stored as a number is still one).
    Map keys are part of the path, except one that is itself sensitive: that one is yielded as
    a value at ``<path>.<key>`` and its entries are reported under that path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int | Decimal) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= 9:
            yield path, text
    elif isinstance(value, dict):
        for k, v in value.items():
            name = k
            if isinstance(k, str) and detect(k):
                # a map key is stored in the clear too, and a path is shown whole: a key that
                # is itself a sensitive value is a finding, and is named only as <key>
                yield f"{path}.<key>", k
                name = "<key>"
            yield from walk_strings(v, f"{path}.{name}")
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from walk_strings(v, f"{path}[]")
