"""Keyring.derived_keys: app secrets (token signing keys) derived from the keyset, rotating
with it."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import pytest

from dynaseal import ConfigError, DataKey, Keyring, LocalKeyring, WrappedKey
from support import key_materials, secret_forms


def test_one_32_byte_secret_per_key_deterministic(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    first = ring.derived_keys("session-tokens")
    assert len(first) == 1 and len(first[0]) == 32
    assert LocalKeyring.load(path).derived_keys("session-tokens") == first
    assert ring.derived_keys("session-tokens") == first


def test_secrets_differ_per_purpose_and_from_every_key(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    a, b = ring.derived_keys("session-tokens"), ring.derived_keys("csrf")
    assert a != b
    assert ring.index_key("t", "session-tokens") not in a
    materials = {base64.b64decode(m) for m in key_materials(path)}
    assert not materials & {*a, *b}


def test_secrets_differ_per_keyset(tmp_path):
    one = LocalKeyring.generate(tmp_path / "one.json")
    two = LocalKeyring.generate(tmp_path / "two.json")
    assert one.derived_keys("p") != two.derived_keys("p")


def test_rotation_appends_the_new_primarys_secret(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    before = ring.derived_keys("session-tokens")
    ring.rotate()
    after = LocalKeyring.load(path).derived_keys("session-tokens")
    assert len(after) == 2
    assert after[0] == before[0]  # verifiers still accept what the old primary signed
    assert after[1] not in before  # the signer moves to the new primary's secret
    ring.rotate()
    assert LocalKeyring.load(path).derived_keys("session-tokens")[:2] == after


def test_the_primarys_secret_is_last_even_when_it_is_not_the_newest(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    old_id = ring.primary_key_id
    ring.rotate()
    both = ring.derived_keys("p")
    back = ring.with_primary(old_id)  # an older key made primary again
    assert back.derived_keys("p") == [both[1], both[0]]


@pytest.mark.parametrize("purpose", ["", None, b"bytes"])
def test_purpose_is_a_non_empty_string(keyring, purpose):
    with pytest.raises(ConfigError, match="purpose must be a non-empty string"):
        keyring.derived_keys(purpose)


def test_secrets_never_in_repr(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    for secret in ring.derived_keys("p"):
        for form in (secret.hex(), repr(secret)):
            assert form not in repr(ring)
    for form in secret_forms(path):
        assert form not in repr(ring)


class _OpaqueKeyring(Keyring):
    """A keyring whose keys never leave a key service, like KMS."""

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        raise NotImplementedError

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey],
                         context: Mapping[str, str]) -> bytes | None:
        raise NotImplementedError

    def index_key(self, table: str, attribute: str) -> bytes:
        raise NotImplementedError


def test_a_keyring_that_cannot_derive_says_so():
    with pytest.raises(ConfigError) as e:
        _OpaqueKeyring().derived_keys("session-tokens")
    assert str(e.value) == ("_OpaqueKeyring cannot derive app secrets (derived_keys): its keys "
                            "never leave the key service; use a local or Secrets Manager keyset "
                            "for them")


def test_secrets_are_derived_once_per_purpose_and_key_and_dropped_with_the_key(tmp_path,
                                                                              monkeypatch):
    import dynaseal.keyrings.local as local

    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    old_id = ring.primary_key_id
    ring.rotate()
    derivations = []
    real_hkdf = local.HKDF

    def counting_hkdf(*args, **kwargs):
        derivations.append(kwargs["info"])
        return real_hkdf(*args, **kwargs)

    monkeypatch.setattr(local, "HKDF", counting_hkdf)
    first = ring.derived_keys("p")
    assert len(derivations) == 2
    assert ring.derived_keys("p") == first and len(derivations) == 2  # a request's cost: none
    assert ring.derived_keys("q") != first and len(derivations) == 4
    assert first == LocalKeyring.load(path).derived_keys("p")  # same values as a fresh derive
    ring.remove_key(old_id)
    assert ring.derived_keys("p") == first[1:]
    assert first[0] not in ring._derived.values()  # the removed key's secret is gone


def _secrets_in(values, secrets_):
    text = "".join(repr(v) for v in values)
    return [s for s in secrets_ if repr(s) in text or s in text.encode("latin-1", "replace")]


def test_refused_purpose_leaves_no_derived_secret_in_frame_locals(tmp_path):
    from support import dynaseal_locals

    ring = LocalKeyring.generate(tmp_path / "keys.json")
    cached = ring.derived_keys("session")  # now in the keyring's cache
    materials = [base64.b64decode(m) for m in key_materials(tmp_path / "keys.json")]
    with pytest.raises(ConfigError, match="encodable as UTF-8") as refused:
        ring.derived_keys("x\ud800")
    assert _secrets_in(dynaseal_locals(refused.value), [*cached, *materials]) == []


def test_failure_while_deriving_leaves_no_derived_secret_in_frame_locals(tmp_path, monkeypatch):
    import dynaseal.keyrings.local as local
    from support import dynaseal_locals

    ring = LocalKeyring.generate(tmp_path / "keys.json")
    ring.rotate()
    older = ring.derived_keys("session")[:1]  # the older key's secret is cached, the other not
    ring._derived = {k: v for k, v in ring._derived.items() if v in older}
    real_hkdf = local.HKDF

    class Exhausted:  # the second key's derivation fails (as a MemoryError would)
        def __init__(self, *args, **kwargs):
            pass

        def derive(self, material):
            raise MemoryError

    monkeypatch.setattr(local, "HKDF", Exhausted)
    with pytest.raises(MemoryError) as failed:
        ring.derived_keys("session")
    monkeypatch.setattr(local, "HKDF", real_hkdf)
    assert _secrets_in(dynaseal_locals(failed.value), older) == []
    assert ring.derived_keys("session")[:1] == older
