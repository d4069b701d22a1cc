"""LocalKeyring: the keyset file, its permissions, rotation, and keeping key material private."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from dynaseal import DynasealError, ItemSealer, KeyNotFoundError, LocalKeyring, Schema
from dynaseal.keyrings.interface import PROVIDER_LOCAL, UnwrapError, WrappedKey
from support import errors_of, run_concurrently, secret_forms

CONTEXT = {"dynaseal:table": "users"}


def read_doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_keyset(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# -- generate ----------------------------------------------------------------------------------


def test_generate_creates_owner_only_file_with_one_primary_key(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    assert path.is_file()
    assert mode_of(path) == 0o600
    assert len(ring.key_ids) == 1
    assert ring.primary_key_id == ring.key_ids[0]
    assert re.fullmatch(r"[0-9a-f]{8}", ring.primary_key_id)
    assert ring.path == path
    doc = read_doc(path)
    assert doc["type"] == "dynaseal-local-keyset"
    assert doc["version"] == 1
    assert doc["primary_key_id"] == ring.primary_key_id
    assert [k["id"] for k in doc["keys"]] == [ring.primary_key_id]
    assert len(base64.b64decode(doc["keys"][0]["material"])) == 32
    assert len(base64.b64decode(doc["index_key"])) == 32
    infos = ring.list_keys()
    assert len(infos) == 1
    assert infos[0].key_id == ring.primary_key_id
    assert infos[0].primary is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", infos[0].created_at)


def test_generate_twice_gives_unrelated_keysets(tmp_path):
    a = LocalKeyring.generate(tmp_path / "a.json")
    b = LocalKeyring.generate(tmp_path / "b.json")
    assert a.primary_key_id != b.primary_key_id
    assert read_doc(tmp_path / "a.json")["keys"][0]["material"] != \
        read_doc(tmp_path / "b.json")["keys"][0]["material"]


def test_generate_refuses_to_overwrite(tmp_path):
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    before = path.read_bytes()
    with pytest.raises(DynasealError) as info:
        LocalKeyring.generate(path)
    assert type(info.value) is DynasealError
    assert "already exists" in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    for secret in secret_forms(path):
        assert secret not in str(info.value)


def test_generate_refuses_to_overwrite_any_existing_file(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text("not mine\n")
    with pytest.raises(DynasealError):
        LocalKeyring.generate(path)
    assert path.read_text() == "not mine\n"


def test_generate_does_not_widen_permissions_under_a_lax_umask(tmp_path):
    old = os.umask(0)
    try:
        LocalKeyring.generate(tmp_path / "keys.json")
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "keys.json") == 0o600


# -- load --------------------------------------------------------------------------------------


def test_load_reads_back_the_same_keyset(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    loaded = LocalKeyring.load(path)
    assert loaded.primary_key_id == ring.primary_key_id
    assert loaded.key_ids == ring.key_ids
    assert loaded.list_keys() == ring.list_keys()
    assert loaded.index_key("users", "email") == ring.index_key("users", "email")
    # A data key from one opens with the other.
    dk = ring.new_data_key(CONTEXT)
    assert loaded.decrypt_data_key(dk.wrapped, CONTEXT) == dk.plaintext


def test_load_accepts_str_path(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(str(path))
    assert LocalKeyring.load(str(path)).primary_key_id == ring.primary_key_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o606, 0o644, 0o620, 0o602, 0o610,
                                  0o601, 0o666, 0o777], ids=oct)
def test_load_refuses_file_accessible_by_group_or_others(tmp_path, mode):
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    os.chmod(path, mode)
    with pytest.raises(DynasealError) as info:
        LocalKeyring.load(path)
    message = str(info.value)
    assert type(info.value) is DynasealError
    assert "chmod 600" in message
    assert str(path) in message
    assert f"{mode:04o}" in message
    for secret in secret_forms(path):
        assert secret not in message


def test_load_accepts_owner_only_modes(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    for mode in (0o400, 0o600, 0o700):
        os.chmod(path, mode)
        assert LocalKeyring.load(path).primary_key_id == ring.primary_key_id


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(DynasealError) as info:
        LocalKeyring.load(path)
    assert type(info.value) is DynasealError
    assert str(path) in str(info.value)
    assert "dynaseal keys generate" in str(info.value)


def _valid_doc(tmp_path: Path) -> dict[str, Any]:
    LocalKeyring.generate(tmp_path / "template.json")
    return read_doc(tmp_path / "template.json")


MATERIAL_SECRET = base64.b64encode(b"\x5a" * 16).decode()  # a short (128-bit) key


def _malformed(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "not json": "{this is not json " + MATERIAL_SECRET,
        "empty": "",
        "json list": json.dumps([doc]),
        "missing type": json.dumps({k: v for k, v in doc.items() if k != "type"}),
        "wrong type": json.dumps({**doc, "type": "something-else"}),
        "missing version": json.dumps({k: v for k, v in doc.items() if k != "version"}),
        "future version": json.dumps({**doc, "version": 2}),
        "missing keys": json.dumps({k: v for k, v in doc.items() if k != "keys"}),
        "empty keys": json.dumps({**doc, "keys": []}),
        "key not object": json.dumps({**doc, "keys": ["x"]}),
        "missing key id": json.dumps({**doc, "keys": [
            {k: v for k, v in doc["keys"][0].items() if k != "id"}]}),
        "key id not hex": json.dumps({**doc, "keys": [{**doc["keys"][0], "id": "zzzzzzzz"}]}),
        "key id short": json.dumps({**doc, "keys": [{**doc["keys"][0], "id": "abc"}]}),
        "missing material": json.dumps({**doc, "keys": [
            {k: v for k, v in doc["keys"][0].items() if k != "material"}]}),
        "short material": json.dumps({**doc, "keys": [
            {**doc["keys"][0], "material": MATERIAL_SECRET}]}),
        "long material": json.dumps({**doc, "keys": [
            {**doc["keys"][0], "material": base64.b64encode(b"\x5a" * 33).decode()}]}),
        "material not base64": json.dumps({**doc, "keys": [
            {**doc["keys"][0], "material": "!!" + MATERIAL_SECRET}]}),
        "missing created_at": json.dumps({**doc, "keys": [
            {k: v for k, v in doc["keys"][0].items() if k != "created_at"}]}),
        "duplicate key id": json.dumps({**doc, "keys": [doc["keys"][0], doc["keys"][0]]}),
        "missing index key": json.dumps({k: v for k, v in doc.items() if k != "index_key"}),
        "short index key": json.dumps({**doc, "index_key": MATERIAL_SECRET}),
        "missing primary": json.dumps({k: v for k, v in doc.items() if k != "primary_key_id"}),
        "primary names no key": json.dumps({**doc, "primary_key_id": "00000001"}),
    }


MALFORMED_CASES = list(_malformed({"keys": [{}]}))


@pytest.mark.parametrize("case", MALFORMED_CASES)
def test_load_refuses_malformed_file_without_echoing_it(tmp_path, case):
    doc = _valid_doc(tmp_path)
    text = _malformed(doc)[case]
    path = tmp_path / "keys.json"
    write_keyset(path, text)
    with pytest.raises(DynasealError) as info:
        LocalKeyring.load(path)
    message = str(info.value)
    assert type(info.value) is DynasealError
    assert message.startswith(f"{path}: not a valid dynaseal keyset (")
    assert MATERIAL_SECRET not in message
    assert doc["keys"][0]["material"] not in message
    assert doc["index_key"] not in message
    assert base64.b64decode(doc["keys"][0]["material"]).hex() not in message
    if text:
        assert text not in message
    # Nothing chained that would print the file in a traceback.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


# -- rotation ----------------------------------------------------------------------------------


def test_rotate_adds_a_new_primary_and_persists_it(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    first = ring.primary_key_id
    new = ring.rotate()
    assert new != first
    assert ring.primary_key_id == new
    assert ring.key_ids == (first, new)
    assert [(k.key_id, k.primary) for k in ring.list_keys()] == [(first, False), (new, True)]
    assert mode_of(path) == 0o600
    reloaded = LocalKeyring.load(path)
    assert reloaded.primary_key_id == new
    assert reloaded.key_ids == (first, new)
    third = reloaded.rotate()
    assert LocalKeyring.load(path).key_ids == (first, new, third)
    # The old material is kept unchanged in the file.
    doc = read_doc(path)
    assert [k["id"] for k in doc["keys"]] == [first, new, third]
    assert doc["primary_key_id"] == third


def test_rotate_keeps_old_keys_able_to_decrypt_and_index_keys_stable(tmp_path):
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    old_index = ring.index_key("users", "email")
    before = ring.new_data_key(CONTEXT)
    ring.rotate()
    after = ring.new_data_key(CONTEXT)
    assert before.wrapped[0].key_id != after.wrapped[0].key_id
    assert after.wrapped[0].key_id == ring.primary_key_id
    assert ring.decrypt_data_key(before.wrapped, CONTEXT) == before.plaintext
    assert ring.decrypt_data_key(after.wrapped, CONTEXT) == after.plaintext
    assert ring.index_key("users", "email") == old_index


def test_rotate_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    ring.rotate()
    ring.rotate()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["keys.json", "keys.json.lock"]


def test_rotate_refuses_a_keyset_file_made_world_readable(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    os.chmod(path, 0o644)
    with pytest.raises(DynasealError, match="chmod 600"):
        ring.rotate()
    # The refused rotation left the keyset as it was.
    os.chmod(path, 0o600)
    assert LocalKeyring.load(path).key_ids == ring.key_ids


def test_rotate_picks_up_keys_added_by_another_object(tmp_path):
    path = tmp_path / "keys.json"
    a = LocalKeyring.generate(path)
    b = LocalKeyring.load(path)
    ka = a.rotate()
    kb = b.rotate()
    final = LocalKeyring.load(path)
    assert final.key_ids == (a.key_ids[0], ka, kb)
    assert final.primary_key_id == kb
    assert b.key_ids == final.key_ids


def test_concurrent_rotations_from_two_objects_both_land(tmp_path):
    path = tmp_path / "keys.json"
    original = LocalKeyring.generate(path)
    rings = [LocalKeyring.load(path), LocalKeyring.load(path)]
    results = run_concurrently(len(rings), lambda i: rings[i].rotate(), timeout=30)
    assert errors_of(results) == []
    final = LocalKeyring.load(path)
    assert len(final.key_ids) == 3
    assert set(final.key_ids) == {original.primary_key_id, *results}
    assert final.primary_key_id in results
    assert mode_of(path) == 0o600


def test_many_concurrent_rotations_all_land(tmp_path):
    path = tmp_path / "keys.json"
    LocalKeyring.generate(path)
    rings = [LocalKeyring.load(path) for _ in range(4)]
    per_ring = run_concurrently(len(rings), lambda i: [rings[i].rotate() for _ in range(5)])
    assert errors_of(per_ring) == []
    results = [key_id for ids in per_ring for key_id in ids]
    final = LocalKeyring.load(path)
    assert len(final.key_ids) == 1 + 20
    assert set(results) <= set(final.key_ids)
    assert len(set(results)) == 20


# -- no key material in repr / str / errors ----------------------------------------------------


def test_repr_and_str_hold_no_key_material(tmp_path):
    path = tmp_path / "keys.json"
    ring = LocalKeyring.generate(path)
    ring.rotate()
    secrets_ = secret_forms(path)
    dk = ring.new_data_key(CONTEXT)
    texts = [repr(ring), str(ring), repr(ring.list_keys()), str(ring.list_keys()),
             repr(LocalKeyring.load(path)), repr(dk), str(dk), repr(dk.wrapped),
             repr(ItemSealer("users", Schema("id"), ring)), f"{ring}", f"{ring!r}"]
    for text in texts:
        for secret in [*secrets_, dk.plaintext.hex(), repr(dk.plaintext),
                       base64.b64encode(dk.plaintext).decode()]:
            assert secret not in text
    assert repr(ring) == (f"LocalKeyring({str(path)!r}, primary_key_id={ring.primary_key_id!r}, "
                          f"key_ids={ring.key_ids!r})")
    assert str(ring) == repr(ring)


def test_wrapped_key_repr_hides_ciphertext(tmp_path):
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    w = ring.new_data_key(CONTEXT).wrapped[0]
    assert w.provider == PROVIDER_LOCAL
    assert w.key_id == ring.primary_key_id
    assert len(w.ciphertext) == 12 + 32 + 16
    assert repr(w) == f"WrappedKey(provider=1, key_id={ring.primary_key_id!r})"


# -- the Keyring contract ----------------------------------------------------------------------


def test_data_keys_are_fresh_and_single_use(tmp_path):
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    a = ring.new_data_key(CONTEXT)
    b = ring.new_data_key(CONTEXT)
    assert a.single_use is True
    assert len(a.plaintext) == 32
    assert a.plaintext != b.plaintext
    assert a.wrapped[0].ciphertext != b.wrapped[0].ciphertext


def test_decrypt_data_key_is_bound_to_context_and_key(tmp_path):
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    other = LocalKeyring.generate(tmp_path / "other.json")
    dk = ring.new_data_key(CONTEXT)
    w = dk.wrapped[0]
    # Another table's context does not authenticate.
    with pytest.raises(UnwrapError):
        ring.decrypt_data_key(dk.wrapped, {"dynaseal:table": "orders"})
    # A flipped ciphertext bit does not authenticate.
    flipped = bytearray(w.ciphertext)
    flipped[20] ^= 0x01
    with pytest.raises(UnwrapError):
        ring.decrypt_data_key([WrappedKey(w.provider, w.key_id, bytes(flipped))], CONTEXT)
    # A wrong-length ciphertext is refused.
    with pytest.raises(UnwrapError):
        ring.decrypt_data_key([WrappedKey(w.provider, w.key_id, w.ciphertext[:-1])], CONTEXT)
    # An unknown key id or another provider: not held here.
    assert other.decrypt_data_key(dk.wrapped, CONTEXT) is None
    assert ring.decrypt_data_key([WrappedKey(2, w.key_id, w.ciphertext)], CONTEXT) is None
    # A list with an unknown copy first still finds the held one.
    foreign = other.new_data_key(CONTEXT).wrapped[0]
    assert ring.decrypt_data_key([foreign, w], CONTEXT) == dk.plaintext


def test_index_keys_depend_on_table_attribute_and_keyset(tmp_path):
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    other = LocalKeyring.generate(tmp_path / "other.json")
    k = ring.index_key("users", "email")
    assert len(k) == 32
    assert k == ring.index_key("users", "email")
    assert k != ring.index_key("users", "phone")
    assert k != ring.index_key("orders", "email")
    assert k != other.index_key("users", "email")
    # Length-prefixed: ("ab", "c") and ("a", "bc") differ.
    assert ring.index_key("ab", "c") != ring.index_key("a", "bc")


def test_item_from_unrelated_keyset_reports_missing_key(tmp_path):
    path_a = tmp_path / "a.json"
    a = LocalKeyring.generate(path_a)
    b = LocalKeyring.generate(tmp_path / "b.json")
    schema = Schema("id")
    stored = ItemSealer("users", schema, a).seal({"id": "k1", "secret": "hunter2"})
    with pytest.raises(KeyNotFoundError) as info:
        ItemSealer("users", schema, b).open(stored)
    message = str(info.value)
    assert info.value.key_ids == (a.primary_key_id,)
    assert a.primary_key_id in message
    assert "'users'" in message
    assert "id='k1'" in message
    assert "hunter2" not in message
    for secret in secret_forms(path_a) + secret_forms(tmp_path / "b.json"):
        assert secret not in message
