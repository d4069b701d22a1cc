"""Keysets kept in Secrets Manager (moto's standalone server over HTTP): loading, refresh on a
timer and on an unknown key id, rotation with delayed activation, and the CLI around them."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
from click.testing import CliRunner

from dynaseal import (
    ConfigError,
    DynasealError,
    ItemSealer,
    KeyringError,
    Schema,
    SecretsManagerKeyring,
)
from dynaseal.cli import cli
from dynaseal.header import Header
from dynaseal.keyrings.local import parse_keyset
from dynaseal.keyrings.secrets_manager import (
    create_secret_keyset,
    read_secret_keyset,
    rotate_secret_keyset,
)
from keyrings_support import CallCounter, FakeClock

SCHEMA = Schema("user_id")
_names = itertools.count()


@pytest.fixture
def sm(moto_server: Any) -> Any:
    return moto_server.client("secretsmanager")


@pytest.fixture
def secret(sm: Any) -> str:
    name = f"dynaseal/keys-{next(_names)}-{time.time_ns()}"
    create_secret_keyset(name, sm)
    return name


def key_id_of(stored: dict[str, Any]) -> str:
    return Header.decode(stored["_ds"][:-32])[0].wrapped[0].key_id


def sealer(keyring: Any) -> ItemSealer:
    return ItemSealer(table_name="users", schema=SCHEMA, keyring=keyring)


def test_round_trip_and_one_read_of_the_secret(sm: Any, secret: str) -> None:
    calls = CallCounter(sm)
    ring = SecretsManagerKeyring(secret, sm)
    s = sealer(ring)
    for i in range(500):
        assert s.open(s.seal({"user_id": str(i), "x": "secret"}))["x"] == "secret"
    assert dict(calls.calls) == {"GetSecretValue": 1}
    assert "material" not in repr(ring) and secret in repr(ring)


def test_rotation_is_picked_up_without_restart_on_an_unknown_key_id(sm: Any, secret: str) -> None:
    reader = SecretsManagerKeyring(secret, sm, refresh_interval=3600)
    old = reader.primary_key_id
    calls = CallCounter(sm)
    _, new, _ = rotate_secret_keyset(secret, 0, sm)  # at once: moto moves AWSCURRENT
    writer = SecretsManagerKeyring(secret, sm)
    stored = sealer(writer).seal({"user_id": "1", "x": "v"})
    assert key_id_of(stored) == new != old
    assert sealer(reader).open(stored) == {"user_id": "1", "x": "v"}  # re-read the secret
    assert reader.primary_key_id == new
    assert calls["GetSecretValue"] == 3  # the rotation, the writer, the reader's one re-read


def test_unknown_key_ids_re_read_the_secret_at_most_once_per_interval(sm: Any,
                                                                      secret: str) -> None:
    clock = FakeClock()
    reader = SecretsManagerKeyring(secret, sm, refresh_interval=3600, min_reload_interval=5,
                                   clock=clock)
    other = f"{secret}-other"
    create_secret_keyset(other, sm)
    foreign = sealer(SecretsManagerKeyring(other, sm)).seal({"user_id": "1", "x": "v"})
    assert reader.primary_key_id  # loaded once
    calls = CallCounter(sm)
    for _ in range(100):
        with pytest.raises(DynasealError):
            sealer(reader).open(foreign)
    assert calls["GetSecretValue"] == 1
    clock.advance(5)
    with pytest.raises(DynasealError):
        sealer(reader).open(foreign)
    assert calls["GetSecretValue"] == 2


def test_timer_refresh_and_delayed_activation(sm: Any, secret: str) -> None:
    clock = FakeClock()
    wall = FakeClock(time.time())
    ring = SecretsManagerKeyring(secret, sm, refresh_interval=60, clock=clock, wall_clock=wall)
    old = ring.primary_key_id
    _, new, at = rotate_secret_keyset(secret, 120, sm, now=wall.now)
    assert at >= wall.now + 120
    clock.advance(59)
    assert ring.key_ids == (old,)  # not refreshed yet
    clock.advance(1)
    assert ring.key_ids == (old, new)  # the timer re-read the secret: the new key is known ...
    assert ring.primary_key_id == old  # ... but is not primary yet
    stored = sealer(ring).seal({"user_id": "1", "x": "v"})
    assert key_id_of(stored) == old
    wall.advance(at - wall.now)
    assert ring.primary_key_id == new  # activation needs no re-read
    assert key_id_of(sealer(ring).seal({"user_id": "2", "x": "v"})) == new
    assert sealer(ring).open(stored)["x"] == "v"


def test_an_older_reader_loads_a_keyset_with_a_pending_key(sm: Any, secret: str) -> None:
    old_primary = SecretsManagerKeyring(secret, sm).primary_key_id
    rotate_secret_keyset(secret, 300, sm)
    text = sm.get_secret_value(SecretId=secret)["SecretString"]
    doc = json.loads(text)
    assert doc["primary_key_id"] == old_primary and set(doc["next_primary"]) == {"key_id",
                                                                                 "activate_at"}
    # the parser an older release runs reads only the fields it knows: the doc still loads
    ring, problem = parse_keyset(text, None)
    assert ring is not None and problem == ""
    assert ring.primary_key_id == old_primary and len(ring.key_ids) == 2


def test_a_pending_rotation_refuses_another_until_it_activates(sm: Any, secret: str) -> None:
    now = time.time()
    _, first, at = rotate_secret_keyset(secret, 300, sm, now=now)
    with pytest.raises(DynasealError, match="still pending"):
        rotate_secret_keyset(secret, 300, sm, now=now + 10)
    old, second, _ = rotate_secret_keyset(secret, 0, sm, now=at + 1)
    assert old == first  # the activated key was folded into primary_key_id first
    ring, pending, _ = read_secret_keyset(secret, sm)
    assert ring.primary_key_id == second and pending is None and len(ring.key_ids) == 3


def test_missing_secret_and_a_bad_document(sm: Any) -> None:
    with pytest.raises(KeyringError) as e:
        SecretsManagerKeyring("dynaseal/none", sm).primary_key_id  # noqa: B018
    assert e.value.code == "ResourceNotFoundException" and "dynaseal/none" in str(e.value)
    sm.create_secret(Name="dynaseal/bad", SecretString='{"not": "a keyset", "k": "c2VjcmV0"}')
    with pytest.raises(DynasealError) as e2:
        SecretsManagerKeyring("dynaseal/bad", sm).primary_key_id  # noqa: B018
    assert "not a valid dynaseal keyset" in str(e2.value) and "c2VjcmV0" not in str(e2.value)
    with pytest.raises(KeyringError, match="already exists"):
        create_secret_keyset("dynaseal/bad", sm)


def test_a_failed_refresh_keeps_the_cached_keyset(sm: Any, secret: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    ring = SecretsManagerKeyring(secret, sm, refresh_interval=10, clock=clock)
    primary = ring.primary_key_id
    sm.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
    clock.advance(10)
    assert ring.primary_key_id == primary
    assert "could not refresh keyset secret" in caplog.text


def test_cli_generate_rotate_list(moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETSMANAGER", moto_server.endpoint_url)
    name = f"dynaseal/cli-{time.time_ns()}"
    runner = CliRunner()
    out = runner.invoke(cli, ["keys", "generate", "--secret", name])
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"created secret {name} with primary key ")
    first = out.output.split()[-1]
    out = runner.invoke(cli, ["keys", "rotate", "--secret", name, "--activate-after", "600"])
    assert out.exit_code == 0, out.output
    assert "primary at 20" in out.output and f"(until then {first})" in out.output
    listing = runner.invoke(cli, ["keys", "list", "--secret", name])
    assert listing.exit_code == 0
    rows = listing.output.splitlines()[1:]
    assert rows[0].split()[0] == first and rows[0].split()[-1] == "yes"
    assert rows[1].split()[-2] == "from"
    text = moto_server.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]
    for material in [k["material"] for k in json.loads(text)["keys"]]:
        assert material not in out.output + listing.output
    again = runner.invoke(cli, ["keys", "generate", "--secret", name])
    assert again.exit_code == 1 and "already exists" in again.output
    both = runner.invoke(cli, ["keys", "rotate", "k.json", "--secret", name])
    assert both.exit_code == 2
    local = runner.invoke(cli, ["keys", "rotate", "k.json", "--activate-after", "5"])
    assert local.exit_code == 2 and "--secret keysets only" in local.output


def test_a_refused_secret_leaves_no_key_material_in_traceback_frames(sm: Any) -> None:
    material = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="  # 32 bytes, base64
    doc = {"type": "dynaseal-local-keyset", "version": 1, "primary_key_id": "0badc0de",
           "index_key": "short",
           "keys": [{"id": "0badc0de", "created_at": "2026-12-01T00:00:00Z",
                     "material": material}]}
    name = f"dynaseal/refused-{time.time_ns()}"
    sm.create_secret(Name=name, SecretString=json.dumps(doc))
    with pytest.raises(DynasealError) as e:
        SecretsManagerKeyring(name, sm).primary_key_id  # noqa: B018
    assert "index key is not a 256-bit key" in str(e.value)
    tb = e.value.__traceback__.tb_next  # the frames below this test's own
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            assert not (isinstance(value, str | bytes) and material in str(value)), \
                tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    assert e.value.__context__ is None


def test_app_secrets_from_a_secret_keyset(sm: Any, secret: str) -> None:
    ring = SecretsManagerKeyring(secret, sm)
    ring2, _, _ = read_secret_keyset(secret, sm)
    assert ring.derived_keys("tokens") == ring2.derived_keys("tokens")
    assert len(ring.derived_keys("tokens")) == 1 and len(ring.derived_keys("tokens")[0]) == 32


def test_cli_rotate_waits_the_configured_refresh_interval(moto_server: Any, sm: Any,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Any) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETSMANAGER", moto_server.endpoint_url)
    name = f"dynaseal/cfg-rotate-{time.time_ns()}"
    create_secret_keyset(name, sm)
    config = tmp_path / "dynaseal.toml"
    config.write_text(f'[keyring]\ntype = "secretsmanager"\nsecret_id = "{name}"\n'
                      'refresh_interval = 900\n\n[tables.users]\npartition_key = "user_id"\n')
    before = time.time()
    out = CliRunner().invoke(cli, ["keys", "rotate", "--secret", name, "--config", str(config)])
    assert out.exit_code == 0, out.output
    _, pending, at = read_secret_keyset(name, sm)
    assert pending is not None and at is not None
    assert before + 900 <= at <= time.time() + 901


def test_botocore_debug_logging_never_shows_the_keyset(sm: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    import logging

    name = f"dynaseal/log-{time.time_ns()}"
    with caplog.at_level(logging.DEBUG, logger="botocore"):
        create_secret_keyset(name, sm)
        rotate_secret_keyset(name, 0, sm)
        SecretsManagerKeyring(name, sm).primary_key_id  # noqa: B018
    text = sm.get_secret_value(SecretId=name)["SecretString"]
    assert "was not logged" in caplog.text
    for material in [k["material"] for k in json.loads(text)["keys"]]:
        assert material not in caplog.text
        assert material.replace("/", "\\/") not in caplog.text


def test_an_activation_time_out_of_range_is_refused_without_raising_anything_else(
        sm: Any, secret: str) -> None:
    text = sm.get_secret_value(SecretId=secret)["SecretString"]
    doc = json.loads(text)
    doc["next_primary"] = {"key_id": doc["primary_key_id"],
                           "activate_at": "0001-01-01T00:00:00+01:00"}  # overflows in UTC
    sm.put_secret_value(SecretId=secret, SecretString=json.dumps(doc))
    with pytest.raises(DynasealError, match="no valid activation time") as e:
        SecretsManagerKeyring(secret, sm).primary_key_id  # noqa: B018
    assert e.value.__context__ is None


@pytest.mark.parametrize("seconds", [1e300, float("inf"), float("nan"), -1])
def test_rotate_refuses_an_activation_delay_out_of_range(sm: Any, secret: str,
                                                         seconds: float) -> None:
    with pytest.raises(ConfigError, match="from 0 to"):
        rotate_secret_keyset(secret, seconds, sm)
    ring, pending, _ = read_secret_keyset(secret, sm)
    assert pending is None and len(ring.key_ids) == 1  # nothing was written


def test_cli_rotate_refuses_an_activation_delay_of_more_than_a_year(
        moto_server: Any, monkeypatch: pytest.MonkeyPatch, sm: Any, secret: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETSMANAGER", moto_server.endpoint_url)
    result = CliRunner().invoke(cli, ["keys", "rotate", "--secret", secret,
                                      "--activate-after", "1e300"])
    assert result.exit_code == 2 and "--activate-after" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
