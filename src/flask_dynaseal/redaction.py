"""Log redaction: secrets and personal data never reach a log handler.

A :class:`RedactingFilter` goes on *handlers*, not loggers, because a logger's filter only sees
records logged to that very logger, never those propagated from its children. It rewrites the
record in place, once (every later handler sees the redacted record):

- the rendered message (``msg % args``) is redacted and ``args`` cleared, so no formatter can
  render the raw arguments again;
- exception and stack text are rendered, redacted and kept as text; ``exc_info`` is dropped so
  no handler re-renders the traceback (or reads its frames) unredacted;
- ``extra`` fields are replaced whole when their name is sensitive, and redacted by shape
  otherwise.

By name (case-insensitive, anywhere in the name): ``password``, ``passwd``, ``token``,
``authorization``, ``secret``, ``cookie``, ``api_key``, ``ssn``; plus exact names an app adds
(the Flask extension adds every configured blind-index source and ``DYNASEAL_REDACT_FIELDS``).
In text, ``name=value`` / ``name: value`` / ``"name": "value"`` pairs with such a name lose
their value (an unquoted value ends at white space or one of ``, ; & } ]``, as in a query
string, so an unquoted password holding those characters loses only its first part: the
quoted forms of JSON and of a dict's repr are redacted whole, ``b'...'`` literals, argon2
hashes and calls such as ``Decimal('78051120')`` or ``Binary(b'...')`` too, which is how a
logged DynamoDB item shows its numbers and binary values).

By shape: US social security numbers written ``123-45-6789`` (or with spaces); card numbers of
13 to 19 digits (spaces or dashes allowed) that start with 2 to 6 and pass the Luhn check;
e-mail addresses (URL-encoded ones too); ``Bearer``/``Basic`` credentials; argon2 hashes; AWS
access key ids.

Deliberate limits, so that logs stay useful: a bare 9-digit number is *not* treated as an SSN
(order ids, zip+4 codes and counters look the same; an SSN in a field named ``ssn`` is caught by
name), and a digit run that fails Luhn or starts with 0, 1, 7, 8 or 9 is not a card number
(millisecond timestamps start with 1). Redaction is a safety net under "never log it", not a
licence to log it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "RedactingFilter", "redact", "redact_mapping", "sensitive_name"]

REDACTED = "[REDACTED]"

_NAME_PARTS = ("password", "passwd", "token", "authorization", "secret", "cookie", "api_key",
               "apikey", "ssn", "credential")
_NAME_RE = "|".join(["api[_-]?key" if p == "api_key" else p for p in _NAME_PARTS
                     if p != "apikey"])

# Every pattern is linear in the text (a log line is attacker-influenced): a name is a whole
# word (possessive, from a word start) followed by ``=`` or ``:``, and the keyword is looked for
# in it afterwards; ``[\w-]*keyword[\w-]*`` instead retries from every position of a long word.
_NAME_SEP = re.compile(r"(?<![\w-])(?P<name>[\w-]++)(?P<sep>[\"']?[ \t]*[:=][ \t]*)")
_STRING = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_QUOTED = r"[bru]{0,2}(?:" + _STRING + ")"
# a value is a quoted string (a bytes or raw literal too: ``b'...'`` in a dict's repr), a
# credential, an argon2 hash (commas inside), a call in a repr (``Decimal('78051120')``,
# ``Binary(b'...')``: every DynamoDB number and binary value of a logged item), or a bare word
_VALUE = re.compile(_QUOTED + r"|(?:bearer|basic)[ \t]+[^\s,;&]+"
                    r"|\$argon2(?:id|i|d)\$[A-Za-z0-9$=,+/.]+"
                    # inside the call, a literal's b/r prefix is an ordinary character, so
                    # that each text has one parse (no backtracking blow-up)
                    r"|[A-Za-z_][\w.]*\((?:" + _STRING + r"|[^()'\"])*\)"
                    r"|[^\s\"',;&}\]]+", re.IGNORECASE)
_SENSITIVE_NAME = re.compile(_NAME_RE, re.IGNORECASE)
_CREDENTIAL = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*")
_ARGON2 = re.compile(r"\$argon2(?:id|i|d)\$[A-Za-z0-9$=,+/.]+")
_AWS_KEY_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "AROA", "ANPA",
                     "ANVA", "APKA")
_AWS_KEY_ID = re.compile(
    r"(?<![A-Z0-9])(?:" + "|".join(_AWS_KEY_PREFIXES) + r")[A-Z0-9]{16}(?![A-Z0-9])")
# what _SENSITIVE_NAME matches, as plain substrings of ASCII text (see _could_name)
_NAME_SUBSTRINGS = (*(p for p in _NAME_PARTS if p != "api_key"), "api_key", "api-key")
# also URL-encoded (``ada%40example.com`` in a query string of an access log)
_EMAIL = re.compile(r"(?<![\w.+%-])(?:[\w.+-]|%[0-9A-Fa-f]{2})+(?:@|%40)[\w-]+(?:\.[\w-]+)+")
_SSN = re.compile(r"(?<![\w-])\d{3}(?P<sep>[- ])\d{2}(?P=sep)\d{4}(?![\w-])")
_CARD = re.compile(r"(?<![\w.-])[2-6](?:[ -]?\d){12,18}(?![\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    text = m.group(0)
    digits = re.sub(r"[ -]", "", text)
    if 13 <= len(digits) <= 19 and _luhn(digits):
        return "[REDACTED:card]"
    # the digit run may hold a card between other digit groups ("4111 1111 1111 1111 12/27",
    # "5 4111 ..."): the longest part from group to group that is a card goes
    starts = [0] + [i + 1 for i, c in enumerate(text) if c in " -" and text[i + 1] in "23456"]
    ends = [i for i, c in enumerate(text) if c in " -"] + [len(text)]
    best: tuple[int, int] | None = None
    for start in starts:
        for end in ends:
            part = text[start:end].replace(" ", "").replace("-", "")
            if (end > start and 13 <= len(part) <= 19 and _luhn(part)
                    and (best is None or end - start > best[1] - best[0])):
                best = (start, end)
    if best is None:
        return text
    return text[:best[0]] + "[REDACTED:card]" + text[best[1]:]


def _redact_named(text: str, exact: frozenset[str]) -> str:
    """Values after sensitive names; a value may hold ``=`` (a cookie), so a name inside a
    value already redacted is skipped, and a non-sensitive name consumes nothing."""
    out: list[str] = []
    pos = 0
    for m in _NAME_SEP.finditer(text):
        if m.start() < pos:
            continue
        name = m.group("name")
        if _SENSITIVE_NAME.search(name) is None and name.lower() not in exact:
            continue
        value = _VALUE.match(text, m.end())
        if value is None:
            continue
        out += (text[pos:m.end()], REDACTED)
        pos = value.end()
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def redact(text: str, names: Iterable[str] = ()) -> str:
    """``text`` with secrets and personal data replaced (see the module docstring for what is
    recognised, and what deliberately is not). ``names``: more field names whose values go
    (``home: ...``, ``"home": "..."``), matched whole and in any case."""
    return _redact(text, frozenset(n.lower() for n in names))


def _could_name(lowered: str, exact: frozenset[str]) -> bool:
    """Could :func:`_redact_named` find a sensitive name in this ASCII text, lower-cased?
    In ASCII, a case-insensitive match of a name part (or a name) is a substring of the
    lower-cased text; outside ASCII, case rules (the long s, the Kelvin sign, a final sigma) make
    that untrue, so only ASCII text takes this shortcut."""
    return (any(part in lowered for part in _NAME_SUBSTRINGS)
            or any(name in lowered for name in exact))


def _redact(text: str, exact: frozenset[str]) -> str:
    if not text:
        return text
    lowered = text.lower()  # substring checks skip patterns that cannot match (most lines)
    if not text.isascii() or _could_name(lowered, exact):
        named = _redact_named(text, exact)  # the same object when it found nothing
        if named is not text:
            text, lowered = named, named.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _CREDENTIAL.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    if "$argon2" in text:
        text = _ARGON2.sub("[REDACTED:argon2]", text)
    if any(prefix in text for prefix in _AWS_KEY_PREFIXES):  # the pattern is case-sensitive
        text = _AWS_KEY_ID.sub("[REDACTED:aws-key-id]", text)
    if "@" in text or "%40" in text:
        text = _EMAIL.sub("[REDACTED:email]", text)
    text = _SSN.sub("[REDACTED:ssn]", text)
    return _CARD.sub(_card, text)


def sensitive_name(name: str, exact: Iterable[str] = ()) -> bool:
    """Is a field called ``name`` secret by its name alone? (``exact``: more names, any case)"""
    return _sensitive(name, frozenset(e.lower() for e in exact))


def _sensitive(name: str, exact: frozenset[str]) -> bool:
    lowered = name.lower().replace("-", "_")
    return lowered in exact or any(part in lowered for part in _NAME_PARTS)


def _redact_value(value: Any, exact: frozenset[str]) -> Any:
    if isinstance(value, str):
        return _redact(value, exact)
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED  # raw bytes in a log record are never needed and cannot be read safely
    if isinstance(value, Mapping):
        return _redact_mapping(value, exact)
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v, exact) for v in value]
    if value is None or isinstance(value, bool | float):
        return value
    # numbers (a card number as an int) and objects (their str is what a formatter renders)
    try:
        text = str(value)
    except Exception:  # an object that cannot show itself is not shown
        return REDACTED
    return value if _redact(text, exact) == text else REDACTED


def _redact_mapping(data: Mapping[Any, Any], exact: frozenset[str]) -> dict[Any, Any]:
    return {k: REDACTED if isinstance(k, str) and _sensitive(k, exact)
            else _redact_value(v, exact) for k, v in data.items()}


def redact_mapping(data: Mapping[Any, Any], names: Iterable[str] = ()) -> dict[Any, Any]:
    """A copy of ``data`` (nested mappings and lists too) with values of sensitive names
    replaced and every other value redacted by shape; for structured logs an app writes
    itself. ``names`` are extra field names to drop (matched exactly, any case)."""
    return _redact_mapping(data, frozenset(n.lower() for n in names))


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime"}
_MARK = "_dynaseal_redacted"


class RedactingFilter(logging.Filter):
    """Redacts every record a handler is about to emit (see the module docstring).

    Put it on handlers. It never drops a record, and it rewrites each record only once, so one
    instance can sit on many handlers. ``names`` are extra field names whose values are always
    replaced; :meth:`add_names` adds more later (the Flask extension adds each app's).
    """

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__()
        self._names = frozenset(n.lower() for n in names)

    @property
    def names(self) -> frozenset[str]:
        return self._names

    def add_names(self, names: Iterable[str]) -> None:
        self._names = self._names | {n.lower() for n in names}  # one atomic swap

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _MARK, False):
            return True
        try:
            self._rewrite(record)
        except Exception as e:  # a filter that raised would fail the logging call (a request)
            record.msg = f"[log record withheld: redaction failed with {type(e).__name__}]"
            record.args = None
            record.exc_info = record.exc_text = record.stack_info = None
            for key in [k for k in record.__dict__ if k not in _STANDARD]:
                record.__dict__[key] = REDACTED
            if "message" in record.__dict__:
                record.message = record.msg
        setattr(record, _MARK, True)
        return True

    def _rewrite(self, record: logging.LogRecord) -> None:
        names = self._names
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what can be shown, redacted
            message = f"{record.msg!s} (log arguments could not be formatted)"
        record.msg = _redact(message, names)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = _redact(record.exc_text, names)
        if record.stack_info:
            record.stack_info = _redact(record.stack_info, names)
        fields = record.__dict__
        for key in [k for k in fields if k not in _STANDARD]:
            fields[key] = REDACTED if _sensitive(key, names) else _redact_value(
                fields[key], names)
        if "message" in fields:  # an earlier handler formatted it before this filter ran
            record.message = record.msg
