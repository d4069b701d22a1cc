"""The schemes the benchmarks compare, each behind the same ``seal`` / ``open`` interface.

- :class:`Dynaseal`: ``ItemSealer`` with a ``LocalKeyring``.
- :class:`LegacySdk`: ``dynamodb-encryption-sdk`` 3.3.0 item encryptor, wrapped-key provider.
- :class:`FernetFields`: the tutorial scheme, one static Fernet key, each sensitive field
  encrypted on its own (no signature, nothing bound to the item). A baseline only.
- :class:`RawAesGcm`: bare AES-256-GCM of one binary attribute, random 96-bit nonce.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from data import PARTITION_KEY, SIGNED, TABLE_NAME
from dynamodb_encryption_sdk.delegated_keys.jce import JceNameLocalDelegatedKey
from dynamodb_encryption_sdk.encrypted import CryptoConfig
from dynamodb_encryption_sdk.encrypted.item import decrypt_python_item, encrypt_python_item
from dynamodb_encryption_sdk.identifiers import CryptoAction, EncryptionKeyType, KeyEncodingType
from dynamodb_encryption_sdk.material_providers.wrapped import (
    WrappedCryptographicMaterialsProvider,
)
from dynamodb_encryption_sdk.structures import AttributeActions, EncryptionContext

from dynaseal import ItemSealer, LocalKeyring, Schema

Item = dict[str, Any]


class Codec(Protocol):
    """Turns a plaintext item into what is stored, and back."""

    label: str

    def seal(self, item: Mapping[str, Any]) -> Item: ...

    def open(self, stored: Mapping[str, Any]) -> Item: ...


def user_schema(**kwargs: Any) -> Schema:
    """The reference schema: ``user_id`` key, ``created_at`` signed, everything else encrypted."""
    return Schema(PARTITION_KEY, sign=SIGNED, **kwargs)


class Dynaseal:
    """dynaseal's no-I/O core with a fresh local keyset file."""

    label = "dynaseal"

    def __init__(self, key_file: Path, schema: Schema | None = None) -> None:
        self.keyring = LocalKeyring.generate(key_file)
        self.sealer = ItemSealer(table_name=TABLE_NAME, schema=schema or user_schema(),
                                 keyring=self.keyring)
        self.seal = self.sealer.seal
        self.open = self.sealer.open


class LegacySdk:
    """``encrypt_python_item`` / ``decrypt_python_item`` with the same actions as dynaseal.

    AES-256 wrapping key ("AES", i.e. AES key wrap of the per-item content key) and an
    HmacSHA256 signing key, both raw local keys. One ``CryptoConfig`` is built up front and
    reused: the cheapest way to drive the SDK (its table helpers build one per item).
    """

    label = "dynamodb-encryption-sdk 3.3.0"

    def __init__(self) -> None:
        wrapping = JceNameLocalDelegatedKey(
            key=os.urandom(32), algorithm="AES",
            key_type=EncryptionKeyType.SYMMETRIC, key_encoding=KeyEncodingType.RAW,
        )
        signing = JceNameLocalDelegatedKey(
            key=os.urandom(32), algorithm="HmacSHA256",
            key_type=EncryptionKeyType.SYMMETRIC, key_encoding=KeyEncodingType.RAW,
        )
        provider = WrappedCryptographicMaterialsProvider(
            signing_key=signing, wrapping_key=wrapping, unwrapping_key=wrapping,
        )
        actions = AttributeActions(
            default_action=CryptoAction.ENCRYPT_AND_SIGN,
            attribute_actions={name: CryptoAction.SIGN_ONLY for name in (PARTITION_KEY, *SIGNED)},
        )
        context = EncryptionContext(table_name=TABLE_NAME, partition_key_name=PARTITION_KEY)
        self.config = CryptoConfig(materials_provider=provider, encryption_context=context,
                                   attribute_actions=actions)

    def seal(self, item: Mapping[str, Any]) -> Item:
        return encrypt_python_item(item, self.config)  # type: ignore[no-any-return]

    def open(self, stored: Mapping[str, Any]) -> Item:
        return decrypt_python_item(stored, self.config)  # type: ignore[no-any-return]


class FernetFields:
    """``Fernet(key).encrypt(value.encode())`` on each sensitive string field."""

    label = "Fernet per field (static key)"

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self.fernet = Fernet(Fernet.generate_key())

    def seal(self, item: Mapping[str, Any]) -> Item:
        out = dict(item)
        encrypt = self.fernet.encrypt
        for name in self.fields:
            out[name] = encrypt(item[name].encode())
        return out

    def open(self, stored: Mapping[str, Any]) -> Item:
        out = dict(stored)
        decrypt = self.fernet.decrypt
        for name in self.fields:
            out[name] = decrypt(stored[name]).decode()
        return out


class RawAesGcm:
    """``AESGCM.encrypt`` of one attribute's bytes: the floor for sealing a large value."""

    label = "raw AESGCM"

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(self, item: Mapping[str, Any]) -> Item:
        nonce = os.urandom(12)
        return {"nonce": nonce, "ct": self.aead.encrypt(nonce, item[self.attribute], None)}

    def open(self, stored: Mapping[str, Any]) -> Item:
        return {self.attribute: self.aead.decrypt(stored["nonce"], stored["ct"], None)}
