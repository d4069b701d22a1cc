"""Second-reader review (R1): secrets that could reach an error message or the locals of a
traceback frame (what error reporters such as Sentry record) in the operations tools."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from dynaseal import ConfigError, IntegrityError, Schema
from dynaseal.readers import FernetReader, ddbec_provider, fernet_keys
from support import dynaseal_locals

KEY = Fernet.generate_key()
OTHER = Fernet.generate_key()




def holds(values: list[Any], needle: bytes | str) -> bool:
    def walk(v: Any, depth: int = 0) -> bool:
        if isinstance(v, str | bytes) and (v == needle or (type(v) is type(needle)
                                                            and needle in v)):
            return True
        if depth < 3 and isinstance(v, dict):
            return any(walk(x, depth + 1) for x in (*v.keys(), *v.values()))
        if depth < 3 and isinstance(v, list | tuple | set):
            return any(walk(x, depth + 1) for x in v)
        return False
    return any(walk(v) for v in values)


def _item(**tokens: bytes) -> dict[str, Any]:
    return {"user_id": "u1", **{k: v.decode() for k, v in tokens.items()}}


@pytest.mark.parametrize("case", ["second token fails", "rename clash"])
def test_fernet_reader_failure_leaves_no_plaintext_in_locals(case: str) -> None:
    reader = FernetReader("t", Schema("user_id"), [KEY])
    good = Fernet(KEY).encrypt(b"ada@example.com")
    if case == "second token fails":
        stored = _item(email_enc=good, ssn_enc=Fernet(OTHER).encrypt(b"078-05-1120"))
        reason = "Fernet token in 'ssn_enc' failed to decrypt"
    else:  # the second token decrypts, then its new name is taken by the first one's
        stored = _item(email_enc=good, zz=Fernet(KEY).encrypt(b"078-05-1120"))
        reader.renames["zz"] = "email"
        reason = "'zz' would be renamed to 'email'"
    with pytest.raises(IntegrityError) as info:
        reader.read(stored)
    assert info.value.reason.startswith(reason)
    found = dynaseal_locals(info.value)
    assert not holds(found, b"ada@example.com") and not holds(found, "ada@example.com")
    assert not holds(found, b"078-05-1120") and not holds(found, "078-05-1120")


def test_fernet_key_passed_as_the_variable_name_is_not_echoed(monkeypatch) -> None:
    """``--fernet-key-env "$FERNET_KEY"``: the key itself where its variable's name goes."""
    key = KEY.decode()
    with pytest.raises(ConfigError) as info:
        fernet_keys([key], "--from fernet")
    assert key not in str(info.value) and key[:20] not in str(info.value)
    assert "not the name of an environment variable" in str(info.value)
    for looks_like_a_key in ("a3f9c2d18e7b6a5f4c3d2e1f0a9b8c7d", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg"):
        with pytest.raises(ConfigError) as info:
            fernet_keys([looks_like_a_key], "--from fernet")
        assert looks_like_a_key not in str(info.value)
    # a real variable name is still named when it is not set
    monkeypatch.delenv("FERNET_KEY_2", raising=False)
    with pytest.raises(ConfigError, match="environment variable FERNET_KEY_2 is not set"):
        fernet_keys(["FERNET_KEY_2"], "--from fernet")


def test_ddbec_key_passed_as_the_variable_name_is_not_echoed() -> None:
    key = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80="
    with pytest.raises(ConfigError) as info:
        ddbec_provider({"provider": "wrapped", "wrapping_key_env": key,
                        "signing_key_env": "SIGN"}, "tables.t.ddbec")
    assert key not in str(info.value) and key[:16] not in str(info.value)


def test_fernet_keys_read_before_a_missing_one_are_not_in_locals(monkeypatch) -> None:
    monkeypatch.setenv("FERNET_KEY", KEY.decode())
    monkeypatch.delenv("FERNET_KEY_OLD", raising=False)
    with pytest.raises(ConfigError) as info:
        fernet_keys(["FERNET_KEY", "FERNET_KEY_OLD"], "--from fernet")
    assert "FERNET_KEY_OLD is not set" in str(info.value)
    assert not holds(dynaseal_locals(info.value), KEY)


def test_a_bad_fernet_key_leaves_the_good_ones_out_of_locals() -> None:
    with pytest.raises(ConfigError) as info:
        FernetReader("t", Schema("user_id"), [KEY, b"not a fernet key"])
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert not holds(dynaseal_locals(info.value), KEY)


def test_ddbec_key_too_short_is_not_in_locals(monkeypatch) -> None:
    monkeypatch.setenv("WRAP", "c2hvcnRrZXk=")  # 8 bytes: refused
    with pytest.raises(ConfigError, match="WRAP must hold a base64 key") as info:
        ddbec_provider({"provider": "wrapped", "wrapping_key_env": "WRAP",
                        "signing_key_env": "WRAP"}, "tables.t.ddbec")
    found = dynaseal_locals(info.value)
    assert not holds(found, "c2hvcnRrZXk=") and not holds(found, b"shortkey")


def test_audit_masks_a_sensitive_value_in_an_item_key_and_in_a_map_key(tmp_path, make_table,
                                                                          dynalite) -> None:
    """The report shows items by key and attributes by path: neither may print a value the
    audit flags (a table keyed by e-mail address, a map keyed by SSN)."""
    import json

    from ops_support import write_config

    from dynaseal import Config, LocalKeyring
    from dynaseal.ops.audit import audit_table
    from dynaseal.ops.audit_html import render_html
    from dynaseal.ops.engine import RunOptions

    LocalKeyring.generate(tmp_path / "keys.json")
    raw = make_table(pk="email")
    raw.put_item(Item={"email": "ada@example.com", "note": "hello"})
    raw.put_item(Item={"email": "plain-id", "by_ssn": {"078-05-1120": "x", "tag": "y"},
                       "bob@example.org": "hello"})
    config = write_config(tmp_path / "dynaseal.toml", dynalite.endpoint_url,
                          {"users": {"table_name": raw.name, "partition_key": "email"}})
    report = audit_table(Config.load(config), "users", RunOptions(page_size=10))
    found = {(f.attribute, f.kind): f for f in report.sensitive.values()}
    assert set(found) == {("email", "email"), ("by_ssn.<key>", "ssn"),
                          ("<attribute name>", "email")}
    assert found[("<attribute name>", "email")].examples == [
        {"key": "{email='plain-id'}", "masked": "*************rg"}]
    assert found[("email", "email")].examples == [
        {"key": "{email='*************om'}", "masked": "*************om"}]
    assert found[("by_ssn.<key>", "ssn")].examples == [
        {"key": "{email='plain-id'}", "masked": "*********20"}]
    assert {f["key"] for f in report.failures} == {"{email='*************om'}",
                                                   "{email='plain-id'}"}
    for rendered in (report.text(), json.dumps(report.as_dict()), render_html(report)):
        assert "ada@example.com" not in rendered and "ada@example" not in rendered
        assert "078-05-1120" not in rendered and "078-05" not in rendered
        assert "bob@example" not in rendered


@pytest.mark.parametrize("text", ["4111 1111 1111 1111 12/27", "qty 5 4111 1111 1111 1111",
                                  "1 4111-1111-1111-1111 2", "4111111111111111 7"])
def test_audit_finds_a_card_beside_another_digit_group(text: str) -> None:
    """Before, the whole digit run failed Luhn and a card stored with its expiry was missed."""
    from dynaseal.ops.detectors import detect

    assert detect(text) == ["card"]
    wrong = text[::-1].replace("1111", "2111", 1)[::-1]  # the card's last digit changed
    assert detect(wrong) == []
