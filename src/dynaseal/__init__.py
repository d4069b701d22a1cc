"""dynaseal: client-side, field-level envelope encryption and signing of DynamoDB items."""

from .blind_index import BlindIndex
from .config import Config
from .errors import (
    ConfigError,
    DynasealError,
    IntegrityError,
    InvalidItemError,
    KeyNotFoundError,
    UniqueConstraintError,
)
from .keyrings.interface import DataKey, Keyring, WrappedKey
from .keyrings.local import KeyInfo, LocalKeyring
from .schema import HEADER_ATTRIBUTE, Schema
from .sealer import FORMAT_VERSION, ItemSealer
from .table import SealedBatchWriter, SealedTable

__version__ = "0.2.0"

__all__ = [
    "FORMAT_VERSION",
    "HEADER_ATTRIBUTE",
    "BlindIndex",
    "Config",
    "ConfigError",
    "DataKey",
    "DynasealError",
    "IntegrityError",
    "InvalidItemError",
    "ItemSealer",
    "KeyInfo",
    "KeyNotFoundError",
    "Keyring",
    "LocalKeyring",
    "Schema",
    "SealedBatchWriter",
    "SealedTable",
    "UniqueConstraintError",
    "WrappedKey",
]
