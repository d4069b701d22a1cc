"""A keyring of keyrings: one data key, wrapped by several, so any of them can open an item.

Why: moving between keys, accounts, regions or providers without downtime. During a move from
a local keyset to KMS, ``MultiKeyring(generator=KmsKeyring(...), others=[LocalKeyring...])``
seals every new item so that both can open it and opens old items (local only) and new ones
side by side. The header already stores a list of wrapped copies (docs/FORMAT.md), so nothing
in the stored format changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import DynasealError, KeyringError
from .cache import DataKeyCache
from .interface import DataKey, Keyring, UnwrapError, WrappedKey

__all__ = ["MultiKeyring"]

_MEMO_TTL = 24 * 3600.0


class MultiKeyring(Keyring):
    """Seals with a data key from ``generator``, wrapped also by each of ``others``; opens
    with the first keyring that holds a key the item names, generator first.

    When the generator reuses a data key (a cached KMS key), the other keyrings' wrapped
    copies are reused with it, so a KMS child's ``Encrypt`` runs once per data key, not once
    per item. Blind-index keys come from the first keyring that has one (generator first):
    keep the keyset whose index key built the existing indexes in the list.
    """

    def __init__(self, generator: Keyring, others: Sequence[Keyring] = ()) -> None:
        if not isinstance(generator, Keyring) or not all(isinstance(k, Keyring) for k in others):
            raise TypeError("MultiKeyring takes keyrings")
        self.generator = generator
        self.others = tuple(others)
        self._memo: DataKeyCache[DataKey] = DataKeyCache(ttl=_MEMO_TTL, max_entries=16)

    def __repr__(self) -> str:
        return f"MultiKeyring(generator={self.generator!r}, others={list(self.others)!r})"

    @property
    def keyrings(self) -> tuple[Keyring, ...]:
        return (self.generator, *self.others)

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        key = self.generator.new_data_key(context)
        if not self.others:
            return key
        if key.single_use:
            return self._wrap_all(key, context)
        return self._memo.get((key.wrapped, tuple(sorted(context.items()))),
                              lambda: self._wrap_all(key, context),
                              size=lambda dk: 32 + sum(len(w.ciphertext) for w in dk.wrapped))

    def _wrap_all(self, key: DataKey, context: Mapping[str, str]) -> DataKey:
        wrapped = list(key.wrapped)
        for other in self.others:
            wrapped.append(other.wrap_data_key(key.plaintext, context))
        return DataKey(key.plaintext, wrapped, single_use=key.single_use)

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
                         ) -> bytes | None:
        """The first keyring that opens a copy wins. A copy that fails to authenticate, or a
        key service that fails, does not stop the others from trying; if none opens, the
        service failure (else the authentication failure) is raised."""
        failure: KeyringError | None = None
        unwrap_failed = False
        for keyring in self.keyrings:
            try:
                found = keyring.decrypt_data_key(wrapped, context)
            except UnwrapError:
                unwrap_failed = True
                continue
            except KeyringError as e:
                failure = failure or e
                continue
            if found is not None:
                return found
        if failure is not None:
            raise failure
        if unwrap_failed:
            raise UnwrapError
        return None

    def wrap_data_key(self, plaintext: bytes, context: Mapping[str, str]) -> WrappedKey:
        return self.generator.wrap_data_key(plaintext, context)

    def index_key(self, table: str, attribute: str) -> bytes:
        for keyring in self.keyrings:
            try:
                return keyring.index_key(table, attribute)
            except NotImplementedError:
                continue
        raise DynasealError("no keyring of the MultiKeyring holds a blind-index key")

    def derived_keys(self, purpose: str) -> list[bytes]:
        """From the first keyring that can derive app secrets (a keyset), generator first."""
        for keyring in self.keyrings:
            if type(keyring).derived_keys is not Keyring.derived_keys:
                return keyring.derived_keys(purpose)
        return super().derived_keys(purpose)
