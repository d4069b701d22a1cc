"""Keyrings: whoever holds the keys that wrap each item's data key.

``interface`` is what the sealer needs from a keyring; each other module is one provider.
"""

from .cache import DataKeyCache
from .interface import PROVIDER_AWS_KMS, PROVIDER_LOCAL, DataKey, Keyring, UnwrapError, WrappedKey
from .kms import KmsKeyring
from .local import KeyInfo, LocalKeyring
from .multi import MultiKeyring
from .secrets_manager import SecretsManagerKeyring

__all__ = [
    "PROVIDER_AWS_KMS",
    "PROVIDER_LOCAL",
    "DataKey",
    "DataKeyCache",
    "KeyInfo",
    "Keyring",
    "KmsKeyring",
    "LocalKeyring",
    "MultiKeyring",
    "SecretsManagerKeyring",
    "UnwrapError",
    "WrappedKey",
]
