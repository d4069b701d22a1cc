"""Blind indexes: equality lookups on encrypted attributes.

Next to an encrypted value the sealer stores a truncated HMAC-SHA256 of its normalised plaintext,
under a key derived for that table and attribute. Equal values give equal index values, so a GSI
on the index attribute finds candidates; truncation makes unrelated values collide on purpose, so
the index alone does not tell which items share a value. Callers never see a false positive:
:meth:`SealedTable.find` opens every candidate and compares the real plaintext.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from . import codec
from .errors import ConfigError, InvalidItemError

__all__ = ["NORMALIZERS", "BlindIndex"]


def _identity(s: str) -> str:
    return s


def _casefold(s: str) -> str:
    return unicodedata.normalize("NFKC", s).casefold()


def _strip_casefold(s: str) -> str:
    return _casefold(s).strip()


def _digits(s: str) -> str:
    # decimal digits of any script, as ASCII: Arabic-Indic 555 and ASCII 555 are one phone
    # number; digits that are not decimal (superscripts, circled digits) are not kept, NFKC
    # first turns the compatible ones into decimal digits
    return "".join(str(unicodedata.decimal(c)) for c in unicodedata.normalize("NFKC", s)
                   if c.isdecimal())


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": _identity,
    "casefold": _casefold,
    "strip-casefold": _strip_casefold,
    "digits": _digits,
}
"""Named normalisations applied to string values before indexing (and before comparing)."""

_LABEL = b"dynaseal/v1/bidx"


@dataclass(frozen=True)
class BlindIndex:
    """A blind index on one encrypted attribute.

    ``bits`` (1 to 256) sets how much of the HMAC is kept: fewer bits, more false positives and
    less that an observer of the index learns (see docs/BLIND_INDEXES.md). ``unique`` makes two
    items with the same normalised value impossible.
    """

    attribute: str
    bits: int = 32
    normalize: str = "none"
    unique: bool = False
    _fn: Callable[[str], str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute:
            raise ConfigError("blind index: attribute must be a non-empty string")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not (
            1 <= self.bits <= 256
        ):
            raise ConfigError("blind index: bits must be an integer from 1 to 256")
        fn = NORMALIZERS.get(self.normalize)
        if fn is None:
            names = ", ".join(NORMALIZERS)
            raise ConfigError(f"blind index: normalize must be one of {names}")
        object.__setattr__(self, "_fn", fn)

    def normalized(self, value: Any) -> bytes:
        """Canonical bytes of the normalised value: what is indexed and what is compared.

        Every representation a normalisation accepts maps to one form: for ``digits``, the
        string ``"555-0100"`` and the numbers ``5550100`` and ``Decimal("5550100")`` are one
        value, and a number that is not a non-negative whole number (or binary) is refused.
        """
        if isinstance(value, str):
            value = self._fn(value)
        elif self.normalize == "digits" and not isinstance(value, bool | float):
            value = _digits_of_number(value)
        elif isinstance(value, bool):
            raise InvalidItemError("blind index: booleans cannot be indexed")
        elif isinstance(value, float):
            raise InvalidItemError("blind index: float is not supported; use decimal.Decimal")
        elif not isinstance(value, int | Decimal | bytes | bytearray):
            raise InvalidItemError(
                "blind index: only string, number or binary values can be indexed"
            )
        return codec.encode_value(value, self.attribute)

    def compute(self, key: bytes, value: Any) -> bytes:
        """The stored index value: the first ``bits`` bits of the HMAC, the rest zeroed.

        The value is checked before the key is used, and a refused value leaves no key in this
        frame's locals (where an error reporter would record it).
        """
        try:
            data = _LABEL + self.normalized(value)
        except BaseException:
            key = b""
            raise
        return self._digest(key, data)

    def _digest(self, key: bytes, data: bytes) -> bytes:
        """The truncated HMAC of bytes already normalised and labelled; never raises."""
        h = crypto_hmac.HMAC(key, hashes.SHA256())
        h.update(data)
        digest = h.finalize()
        nbytes = (self.bits + 7) // 8
        out = bytearray(digest[:nbytes])
        spare = nbytes * 8 - self.bits
        if spare:
            out[-1] &= (0xFF << spare) & 0xFF
        return bytes(out)


_DIGITS_LIMIT = 10**126
"""Above DynamoDB's largest number: such an int cannot be stored at all."""


def _digits_of_number(value: Any) -> str:
    """A non-string value given to a ``digits`` index: a non-negative whole number, as the
    string of its digits (so that it meets the same value written as text); else refused."""
    if isinstance(value, int) and 0 <= value < _DIGITS_LIMIT:
        return str(value)  # bounded: str() of a huge int raises ValueError
    if (isinstance(value, Decimal) and value.is_finite() and (not value.is_signed() or not value)
            and value.adjusted() <= 125 and value == value.to_integral_value()):
        return str(int(value))
    raise InvalidItemError(
        "blind index: a digits index takes strings or non-negative whole numbers"
    )
