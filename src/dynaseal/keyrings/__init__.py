"""Keyrings: whoever holds the keys that wrap each item's data key.

``interface`` is what the sealer needs from a keyring; each other module is one provider.
"""

from .interface import PROVIDER_AWS_KMS, PROVIDER_LOCAL, DataKey, Keyring, UnwrapError, WrappedKey
from .local import KeyInfo, LocalKeyring

__all__ = [
    "PROVIDER_AWS_KMS",
    "PROVIDER_LOCAL",
    "DataKey",
    "KeyInfo",
    "Keyring",
    "LocalKeyring",
    "UnwrapError",
    "WrappedKey",
]
