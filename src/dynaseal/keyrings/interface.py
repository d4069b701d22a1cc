"""The keyring interface: what the sealer needs from whoever holds the keys.

A keyring hands out data keys wrapped under its key(s) and unwraps them again. The header of a
sealed item stores a list of wrapped copies, each tagged with a provider number and key id, so a
multi-keyring (several providers wrapping one data key) and a caching KMS keyring (one data key
reused for a bounded number of items) fit the same stored format.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import NamedTuple

__all__ = [
    "PROVIDER_AWS_KMS",
    "PROVIDER_LOCAL",
    "DataKey",
    "Keyring",
    "UnwrapError",
    "WrappedKey",
]

PROVIDER_LOCAL = 1
"""A key from a local keyset file (:class:`~dynaseal.LocalKeyring`)."""
PROVIDER_AWS_KMS = 2
"""An AWS KMS key; reserved for the KMS keyring."""


class WrappedKey(NamedTuple):
    """One encrypted copy of a data key, as stored in an item's header. Not secret.

    A named tuple: immutable and hashable (a cache can key on it), and cheap to build, which
    matters because one is made for every item sealed and every item opened.
    """

    provider: int
    key_id: str
    ciphertext: bytes

    def __repr__(self) -> str:
        return f"WrappedKey(provider={self.provider}, key_id={self.key_id!r})"


class DataKey:
    """A plaintext data key with its wrapped copies. Its ``repr`` never shows the key.

    ``single_use`` promises that this key protects exactly one item. A keyring that reuses a data
    key for several items (a cache) must leave it False: the sealer then adds a random per-item
    salt so that every item still gets its own encryption key and nonces never repeat.
    """

    __slots__ = ("_plaintext", "single_use", "wrapped")

    def __init__(
        self, plaintext: bytes, wrapped: Sequence[WrappedKey], *, single_use: bool = False
    ) -> None:
        if len(plaintext) != 32:
            raise ValueError("data keys are 256-bit")
        if isinstance(wrapped, WrappedKey):
            raise TypeError("wrapped: a sequence of WrappedKey, not one WrappedKey")
        if not wrapped:
            raise ValueError("a data key needs at least one wrapped copy")
        self._plaintext = plaintext
        self.wrapped = tuple(wrapped)
        self.single_use = single_use

    @property
    def plaintext(self) -> bytes:
        return self._plaintext

    def __repr__(self) -> str:
        ids = ", ".join(f"{w.provider}:{w.key_id}" for w in self.wrapped)
        return f"DataKey(<redacted>, wrapped=[{ids}])"


class UnwrapError(Exception):
    """A keyring holds the named key but the wrapped copy failed to authenticate."""


class Keyring(abc.ABC):
    """Source of data keys. Implementations keep key material out of ``repr`` and errors."""

    @abc.abstractmethod
    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        """A data key for sealing, wrapped under the primary key and bound to ``context``."""

    @abc.abstractmethod
    def decrypt_data_key(
        self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
    ) -> bytes | None:
        """The plaintext data key, or None when no wrapped copy names a key held here.

        Raises :class:`UnwrapError` when a copy names a held key but does not authenticate.
        """

    @abc.abstractmethod
    def index_key(self, table: str, attribute: str) -> bytes:
        """A 256-bit key for one blind index; independent of every data key and of rotation."""

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str]) -> WrappedKey:
        """Wrap a data key another keyring made, under this keyring's primary key.

        What a :class:`~dynaseal.MultiKeyring` asks of each keyring beside its generator. Not
        abstract: a keyring that cannot wrap a foreign key only cannot be such a child.
        """
        raise TypeError(f"{type(self).__name__} cannot wrap a data key made by another keyring")

    def derived_keys(self, purpose: str) -> list[bytes]:
        """32-byte secrets derived with HKDF from every key of the keyset for one ``purpose``
        (say ``"session-tokens"``), oldest first, the primary's last: a signer uses the last
        and verifiers accept all, so rotating the keyset rotates them with fallbacks.

        For an app's own secrets (token signing keys), kept with the other keys and apart from
        every data key. Never log or show them. Not abstract: a keyring whose keys never leave
        a key service (KMS) cannot derive such secrets and says so.
        """
        from ..errors import ConfigError

        raise ConfigError(
            f"{type(self).__name__} cannot derive app secrets (derived_keys): its keys never "
            "leave the key service; use a local or Secrets Manager keyset for them"
        )
