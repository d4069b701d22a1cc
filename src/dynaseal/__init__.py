"""dynaseal: client-side, field-level envelope encryption and signing of DynamoDB items."""

from .blind_index import BlindIndex
from .config import Config
from .errors import (
    ConfigError,
    DynasealError,
    IntegrityError,
    InvalidItemError,
    ItemNotFoundError,
    KeyNotFoundError,
    KeyringError,
    UniqueConstraintError,
)
from .keyrings.interface import DataKey, Keyring, WrappedKey
from .keyrings.kms import KmsKeyring
from .keyrings.local import KeyInfo, LocalKeyring
from .keyrings.multi import MultiKeyring
from .keyrings.secrets_manager import SecretsManagerKeyring
from .readers import DdbecReader, FernetReader, MigrationReader, PlaintextReader
from .schema import HEADER_ATTRIBUTE, Schema
from .scoped import ScopedTable
from .sealer import FORMAT_VERSION, ItemSealer
from .table import SealedBatchWriter, SealedTable

__version__ = "0.3.0"

__all__ = [
    "FORMAT_VERSION",
    "HEADER_ATTRIBUTE",
    "BlindIndex",
    "Config",
    "ConfigError",
    "DataKey",
    "DdbecReader",
    "DynasealError",
    "FernetReader",
    "IntegrityError",
    "InvalidItemError",
    "ItemNotFoundError",
    "ItemSealer",
    "KeyInfo",
    "KeyNotFoundError",
    "Keyring",
    "KeyringError",
    "KmsKeyring",
    "LocalKeyring",
    "MigrationReader",
    "MultiKeyring",
    "PlaintextReader",
    "Schema",
    "ScopedTable",
    "SealedBatchWriter",
    "SealedTable",
    "SecretsManagerKeyring",
    "UniqueConstraintError",
    "WrappedKey",
]
