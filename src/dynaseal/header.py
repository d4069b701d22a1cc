"""The ``_ds`` attribute: the header of a sealed item, for every format version.

This module is the one place that lays the header out and parses it (docs/FORMAT.md). Format 2
adds one byte per encrypted attribute, its type tag, which format 1 kept inside the ciphertext.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .codec import T_BS, T_S, read_varint, varint
from .keyrings.interface import PROVIDER_LOCAL, WrappedKey

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "SALT_BYTES",
    "SIG_BYTES",
    "Header",
    "Parsed",
    "header_bytes",
    "key_reference",
    "name_list",
    "names_part",
    "parse",
]

FORMAT_VERSION = 2
"""The format :meth:`ItemSealer.seal` writes."""
READABLE_VERSIONS = frozenset({1, 2})
"""Every format ever written: all of them stay readable."""
SALT_BYTES = 16
SIG_BYTES = 32


_LENGTHS = tuple(bytes((n,)) for n in range(0x80))


def lp(data: bytes) -> bytes:
    """``varint(len(data)) || data``."""
    n = len(data)
    return (_LENGTHS[n] if n < 0x80 else varint(n)) + data


def read_lp(data: bytes, pos: int) -> tuple[bytes, int]:
    """The length-prefixed bytes at ``pos`` and the offset after them."""
    n = data[pos] if pos < len(data) else 0x80
    if n < 0x80:
        pos += 1
    else:
        n, pos = read_varint(data, pos)
    if pos + n > len(data):
        raise ValueError("truncated header")
    return data[pos : pos + n], pos + n


class _Names:
    """Per-name constants (the length-prefixed UTF-8), cached: the same names come back."""

    __slots__ = ("_cache",)
    _LIMIT = 4096

    def __init__(self) -> None:
        self._cache: dict[str, bytes] = {}

    def lp(self, name: str) -> bytes:
        found = self._cache.get(name)
        if found is None:
            found = lp(name.encode("utf-8"))
            if len(self._cache) < self._LIMIT:
                self._cache[name] = found
        return found


NAMES = _Names()


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed ``_ds`` attribute, without its signature."""

    version: int
    salt: bytes
    wrapped: tuple[WrappedKey, ...]
    encrypted: tuple[str, ...]
    signed: tuple[str, ...]
    types: bytes = b""
    """Format 2: the type tag of each encrypted attribute, in the order of ``encrypted``."""

    def encode(self) -> bytes:
        return header_bytes(self.version, self.salt, self.wrapped,
                            names_part(self.encrypted, self.signed) if self.version == 1
                            else names_part(self.encrypted, self.signed, self.types))

    @classmethod
    def decode(cls, data: bytes) -> tuple[Header, int]:
        """Parse a header body; return it and the offset where the signature starts."""
        version, salt, wrapped, encrypted, types, signed, pos = parse(data)
        return cls(version, salt, wrapped, encrypted, signed, types), pos


Parsed = tuple[int, bytes, tuple[WrappedKey, ...], tuple[str, ...], bytes, tuple[str, ...], int]


def parse(data: bytes) -> Parsed:
    """The fields of a header body, and the offset where the signature starts.

    A tuple rather than a :class:`Header`: this runs for every item opened. Raises ValueError
    (or UnicodeDecodeError) on anything malformed.
    """
    if len(data) < 3:
        raise ValueError("truncated header")
    if data[1] == 0 and data[2] == 1 and len(data) > 5:
        # the common shape, inline: no salt, one wrapped key with short lengths
        ref_end = 5 + data[4]
        if data[4] < 0x80 and ref_end < len(data) and data[ref_end] < 0x80:
            wrapped_end = ref_end + 1 + data[ref_end]
            if wrapped_end <= len(data) and data[0] in READABLE_VERSIONS:
                provider = data[3]
                key_id = _KEY_IDS.get((provider, data[5:ref_end]))
                if key_id is None:
                    key_id = _decode_key_id(provider, data[5:ref_end])
                    if len(_KEY_IDS) < 1024:
                        _KEY_IDS[(provider, data[5:ref_end])] = key_id
                key = WrappedKey(provider, key_id, data[ref_end + 1 : wrapped_end])
                (encrypted, types, signed), pos = _decode_names(data[0], data, wrapped_end)
                return data[0], b"", (key,), encrypted, types, signed, pos
    version = data[0]
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unknown format version {version}")
    salt_len = data[1]
    if salt_len == 0:
        salt = b""
        pos = 2
    elif salt_len == SALT_BYTES:
        pos = 2 + SALT_BYTES
        salt = data[2:pos]
        if pos >= len(data):
            raise ValueError("truncated header")
    else:
        raise ValueError("bad salt length")
    count = data[pos]
    pos += 1
    if count == 0:
        raise ValueError("no wrapped key")
    wrapped = []
    for _ in range(count):
        if pos >= len(data):
            raise ValueError("truncated header")
        provider = data[pos]
        raw_id, pos = read_lp(data, pos + 1)
        ciphertext, pos = read_lp(data, pos)
        wrapped.append(WrappedKey(provider, _decode_key_id(provider, raw_id), ciphertext))
    (encrypted, types, signed), pos = _decode_names(version, data, pos)
    return version, salt, tuple(wrapped), encrypted, types, signed, pos


def header_bytes(version: int, salt: bytes, wrapped: tuple[WrappedKey, ...],
                 names: bytes) -> bytes:
    """The header without its signature: the one function that lays it out."""
    if len(wrapped) == 1 and not salt:  # the common case: one start per key, cached
        w = wrapped[0]
        return _start(version, w.provider, w.key_id) + lp(w.ciphertext) + names
    parts = [bytes((version, len(salt))), salt, bytes((len(wrapped),))]
    for w in wrapped:
        parts += [key_reference(w.provider, w.key_id), lp(w.ciphertext)]
    parts.append(names)
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _start(version: int, provider: int, key_id: str) -> bytes:
    """A header up to its wrapped key's length: no salt, one wrapped key."""
    return bytes((version, 0, 1)) + key_reference(provider, key_id)


def names_part(encrypted: tuple[str, ...], signed: tuple[str, ...],
               types: bytes | None = None) -> bytes:
    """The name lists: encrypted names, (format 2) their type tags, signed names."""
    head, tail = name_list(encrypted), name_list(signed)
    return head + tail if types is None else head + types + tail


@functools.lru_cache(maxsize=256)
def name_list(names: tuple[str, ...]) -> bytes:
    """``varint(len(names))`` and the length-prefixed names."""
    return varint(len(names)) + b"".join(NAMES.lp(name) for name in names)


_KEY_IDS: dict[tuple[int, bytes], str] = {}
_Lists = tuple[tuple[str, ...], bytes, tuple[str, ...]]
_DECODED: dict[tuple[int, bytes], tuple[_Lists, int]] = {}


def _decode_names(version: int, data: bytes, pos: int) -> tuple[_Lists, int]:
    """The name lists at ``pos``; cached by what follows (a table has few item shapes)."""
    tail = data[pos:]
    hit = _DECODED.get((version, tail))
    if hit is not None:
        return hit[0], pos + hit[1]
    start = pos
    encrypted, pos = _read_names(data, pos)
    types = b""
    if version >= 2:
        types = data[pos : pos + len(encrypted)]
        if len(types) != len(encrypted):
            raise ValueError("truncated header")
        if any(not T_S <= t <= T_BS for t in types):
            raise ValueError("unknown type tag")
        pos += len(encrypted)
    signed, pos = _read_names(data, pos)
    result = (encrypted, types, signed)
    if pos == len(data) and len(tail) <= 1024 and len(_DECODED) < 1024:
        _DECODED[(version, tail)] = (result, pos - start)
    return result, pos


def _read_names(data: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    n, pos = read_varint(data, pos)
    names: list[str] = []
    prev = b""
    for i in range(n):
        raw, pos = read_lp(data, pos)
        if i and raw <= prev:
            raise ValueError("attribute names not in canonical order")
        prev = raw
        names.append(raw.decode("utf-8"))
    return tuple(names), pos


def _encode_key_id(provider: int, key_id: str) -> bytes:
    if provider == PROVIDER_LOCAL:
        return bytes.fromhex(key_id)
    return key_id.encode("utf-8", "surrogateescape")


def _decode_key_id(provider: int, raw: bytes) -> str:
    """A key reference as a keyring names it: a local id as 8 hex digits, any other as text.

    Bytes that are not UTF-8 (a reference of a provider this version does not know) decode
    with ``surrogateescape``: they round-trip, no keyring here matches them, and the entry is
    skipped rather than the header refused.
    """
    if provider == PROVIDER_LOCAL:
        if len(raw) != 4:
            raise ValueError("bad local key id")
        return raw.hex()
    return raw.decode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=64)
def key_reference(provider: int, key_id: str) -> bytes:
    """``u8 provider || lp(key reference)``: how a wrapped key names its key."""
    return bytes((provider,)) + lp(_encode_key_id(provider, key_id))
