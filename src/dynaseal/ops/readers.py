"""Readers for items not (yet) sealed by dynaseal: what a migration starts from.

A reader turns one stored item in the old form into the plain item the application means, or
raises :class:`~dynaseal.IntegrityError` naming the table and key. The same reader serves two
places:

- ``SealedTable(table, schema=..., keyring=..., migrating_from=reader)``: while a migration
  runs, the application reads both forms (an item without a dynaseal header goes to the
  reader) and writes only sealed items. Without the option an unsealed item is an
  ``IntegrityError``, as always; remove it when the migration has finished.
- ``dynaseal migrate --from SOURCE``: reads each unsealed item with the reader and writes it
  back sealed, on condition that it is unchanged.

Sources: ``plaintext`` (everything stored in the clear), ``ddbec`` (items written by the legacy
``dynamodb-encryption-sdk``, opened with its own code and material providers). A new source
(Fernet-encrypted fields, say) is one more class with ``source``, ``read`` and ``unchanged``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ..errors import ConfigError, DynasealError, IntegrityError
from ..schema import HEADER_ATTRIBUTE, Schema
from ..sealer import describe_key
from .conditions import unchanged_condition

__all__ = [
    "DDBEC_MATERIAL_DESCRIPTION",
    "DDBEC_SIGNATURE",
    "DdbecReader",
    "MigrationReader",
    "PlaintextReader",
    "reader_from_config",
]

DDBEC_MATERIAL_DESCRIPTION = "*amzn-ddb-map-desc*"
DDBEC_SIGNATURE = "*amzn-ddb-map-sig*"


class MigrationReader(Protocol):
    """Reads one stored item that dynaseal did not seal; see the module docstring."""

    source: str
    """The ``--from`` name: ``plaintext``, ``ddbec``, ..."""

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The plain item; ``IntegrityError`` when the item is not valid in this form."""

    def unchanged(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        """``put_item`` arguments making a write conditional on ``stored`` being unchanged."""


class _Reader:
    source = ""

    def __init__(self, table_name: str, schema: Schema) -> None:
        self.table_name = table_name
        self.schema = schema

    def _fail(self, stored: Mapping[str, Any], reason: str) -> IntegrityError:
        return IntegrityError(self.table_name, describe_key(self.schema, stored), reason)

    def _check_unsealed(self, stored: Mapping[str, Any]) -> None:
        if HEADER_ATTRIBUTE in stored:
            raise self._fail(stored, "item is sealed; open it with the sealer")
        missing = [n for n in self.schema.key_names if n not in stored]
        if missing:
            raise self._fail(stored, "key attribute missing")

    def unchanged(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        return unchanged_condition(stored)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(table={self.table_name!r})"


class PlaintextReader(_Reader):
    """Items an application stored entirely in the clear: the item is what is stored.

    Refuses an item that carries the legacy SDK's signature attributes (that item is
    ciphertext, not plaintext: migrate it with ``--from ddbec``) and any attribute name
    dynaseal reserves (the blind-index attributes), which no plaintext app could have written.
    """

    source = "plaintext"

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        self._check_unsealed(stored)
        if DDBEC_SIGNATURE in stored or DDBEC_MATERIAL_DESCRIPTION in stored:
            raise self._fail(stored, "item was written by the dynamodb-encryption-sdk, "
                                     "not in plaintext (migrate it with --from ddbec)")
        reserved = {ix.attribute for ix in self.schema.blind_indexes.values()}
        if reserved & stored.keys():
            raise self._fail(stored, "a plaintext item holds a blind-index attribute")
        return dict(stored)


class DdbecReader(_Reader):
    """Items written by the legacy DynamoDB Encryption Client (``dynamodb-encryption-sdk``),
    opened by that library itself with the material provider and attribute actions the
    application used; its signature check is what authenticates them."""

    source = "ddbec"

    def __init__(self, table_name: str, schema: Schema, materials_provider: Any,
                 sign_only: Iterable[str] = (), do_nothing: Iterable[str] = ()) -> None:
        super().__init__(table_name, schema)
        try:
            from dynamodb_encryption_sdk.encrypted import CryptoConfig
            from dynamodb_encryption_sdk.identifiers import CryptoAction
            from dynamodb_encryption_sdk.structures import AttributeActions, EncryptionContext
        except ImportError:
            raise ConfigError("--from ddbec needs the legacy library: "
                              "pip install 'dynamodb-encryption-sdk==3.3.*'") from None
        actions = {name: CryptoAction.SIGN_ONLY
                   for name in (*schema.key_names, *sign_only)}
        actions.update({name: CryptoAction.DO_NOTHING for name in do_nothing})
        self._config = CryptoConfig(
            materials_provider=materials_provider,
            encryption_context=EncryptionContext(
                table_name=table_name, partition_key_name=schema.partition_key,
                sort_key_name=schema.sort_key),
            attribute_actions=AttributeActions(default_action=CryptoAction.ENCRYPT_AND_SIGN,
                                               attribute_actions=actions),
        )

    def read(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        from dynamodb_encryption_sdk.encrypted.item import decrypt_python_item
        from dynamodb_encryption_sdk.exceptions import DynamodbEncryptionSdkError

        self._check_unsealed(stored)
        if DDBEC_SIGNATURE not in stored or DDBEC_MATERIAL_DESCRIPTION not in stored:
            raise self._fail(stored, "item is neither sealed by dynaseal nor signed by the "
                                     "dynamodb-encryption-sdk")
        failed = False
        try:
            item: dict[str, Any] = decrypt_python_item(dict(stored), self._config)
        except (DynamodbEncryptionSdkError, ValueError, TypeError, KeyError):
            failed = True  # raised below, outside the handler: the SDK's error may hold values
        if failed:
            raise self._fail(stored, "dynamodb-encryption-sdk could not verify and decrypt "
                                     "this item")
        return item


def _env_key(variable: Any, where: str) -> bytes:
    if not isinstance(variable, str) or not variable:
        raise ConfigError(f"{where}: the name of an environment variable is required")
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{where}: environment variable {variable} is not set")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        key = None
    if key is None or len(key) < 16:
        raise ConfigError(f"{where}: {variable} must hold a base64 key of at least 16 bytes")
    return key


def ddbec_provider(settings: Mapping[str, Any], where: str) -> Any:
    """The legacy SDK's material provider described by a ``[tables.X.ddbec]`` section.

    ``provider = "wrapped"`` (raw keys, read from the environment variables named by
    ``wrapping_key_env`` and ``signing_key_env``, base64) or ``provider = "aws-kms"``
    (``kms_key_id``). Key material never goes in the config file.
    """
    try:
        from dynamodb_encryption_sdk.delegated_keys.jce import JceNameLocalDelegatedKey
        from dynamodb_encryption_sdk.identifiers import EncryptionKeyType, KeyEncodingType
        from dynamodb_encryption_sdk.material_providers.aws_kms import (
            AwsKmsCryptographicMaterialsProvider,
        )
        from dynamodb_encryption_sdk.material_providers.wrapped import (
            WrappedCryptographicMaterialsProvider,
        )
    except ImportError:
        raise ConfigError("--from ddbec needs the legacy library: "
                          "pip install 'dynamodb-encryption-sdk==3.3.*'") from None
    kind = settings.get("provider")
    if kind == "wrapped":
        def local(variable: str, algorithm: str) -> Any:
            return JceNameLocalDelegatedKey(
                key=_env_key(settings.get(variable), f"{where}.{variable}"),
                algorithm=algorithm, key_type=EncryptionKeyType.SYMMETRIC,
                key_encoding=KeyEncodingType.RAW)

        wrapping = local("wrapping_key_env", settings.get("wrapping_algorithm", "AES"))
        signing = local("signing_key_env", settings.get("signing_algorithm", "HmacSHA256"))
        return WrappedCryptographicMaterialsProvider(
            signing_key=signing, wrapping_key=wrapping, unwrapping_key=wrapping)
    if kind == "aws-kms":
        key_id = settings.get("kms_key_id")
        if not isinstance(key_id, str) or not key_id:
            raise ConfigError(f"{where}.kms_key_id: a KMS key id or ARN is required")
        return AwsKmsCryptographicMaterialsProvider(key_id=key_id)
    raise ConfigError(f"{where}.provider: must be \"wrapped\" or \"aws-kms\"")


_DDBEC_KEYS = {"provider", "wrapping_key_env", "signing_key_env", "wrapping_algorithm",
               "signing_algorithm", "kms_key_id", "sign_only", "do_nothing"}


def reader_from_config(source: str, table_name: str, schema: Schema,
                       settings: Mapping[str, Any] | None, where: str) -> MigrationReader:
    """The reader for ``--from SOURCE`` (or a table's ``migrating_from``) and its section."""
    if source == "plaintext":
        return PlaintextReader(table_name, schema)
    if source == "ddbec":
        if not settings:
            raise ConfigError(f"{where}.ddbec: the legacy material provider is not configured")
        unknown = sorted(set(settings) - _DDBEC_KEYS)
        if unknown:
            raise ConfigError(f"{where}.ddbec.{unknown[0]}: unknown key")
        return DdbecReader(table_name, schema, ddbec_provider(settings, f"{where}.ddbec"),
                           sign_only=settings.get("sign_only", ()),
                           do_nothing=settings.get("do_nothing", ()))
    raise DynasealError(f"unknown migration source {source!r} (plaintext, ddbec)")
