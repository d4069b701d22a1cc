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
    return "".join(c for c in s if c.isdigit())


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
        """Canonical bytes of the normalised value: what is indexed and what is compared."""
        if isinstance(value, str):
            value = self._fn(value)
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
        """The stored index value: the first ``bits`` bits of the HMAC, the rest zeroed."""
        h = crypto_hmac.HMAC(key, hashes.SHA256())
        h.update(_LABEL + self.normalized(value))
        digest = h.finalize()
        nbytes = (self.bits + 7) // 8
        out = bytearray(digest[:nbytes])
        spare = nbytes * 8 - self.bits
        if spare:
            out[-1] &= (0xFF << spare) & 0xFF
        return bytes(out)
