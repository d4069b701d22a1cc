"""dynaseal migrate --from fernet (issue 11): a table written the tutorial's way (Fernet
tokens under *_enc, everything else in the clear), migrated online with a live reader and
writer, killed with SIGKILL and resumed; failing tokens reported by key and left untouched."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import boto3
import pytest
from cryptography.fernet import Fernet
from ops_support import Relay, kill_repeatedly, run_job, write_config

from dynaseal import BlindIndex, Config, IntegrityError, LocalKeyring, Schema, SealedTable
from dynaseal.readers import FernetReader, fernet_token
from support import raw_items

SCHEMA = Schema("user_id", sign=["created_at", "role"],
                blind_indexes={"email": BlindIndex("email_bidx", bits=32, normalize="casefold")})
SPEC = {"partition_key": "user_id", "sign": ["created_at", "role"],
        "blind_indexes": {"email": {"attribute": "email_bidx", "bits": 32,
                                    "normalize": "casefold"}}}
OLD_KEY = Fernet.generate_key()
NEW_KEY = Fernet.generate_key()


def _plain(i: int) -> dict[str, Any]:
    return {"user_id": f"u{i:05d}", "created_at": "2026-11-28", "role": "member",
            "name": f"Ada {i}", "email": f"Ada{i}@Example.com", "ssn": f"078-05-{i:04d}"}


def _tutorial(i: int) -> dict[str, Any]:
    """What the tutorial app stores: tokens under *_enc (half under an older key)."""
    f = Fernet(OLD_KEY if i % 2 else NEW_KEY)
    p = _plain(i)
    return {"user_id": p["user_id"], "created_at": p["created_at"], "role": p["role"],
            "name": p["name"], "email_enc": f.encrypt(p["email"].encode()).decode(),
            "ssn_enc": f.encrypt(p["ssn"].encode()).decode()}


@pytest.fixture
def fernet_env(monkeypatch):
    monkeypatch.setenv("FERNET_KEY", NEW_KEY.decode())
    monkeypatch.setenv("FERNET_KEY_OLD", OLD_KEY.decode())


def _config(tmp_path, endpoint, table_name, **extra) -> Any:
    return write_config(tmp_path / "dynaseal.toml", endpoint,
                        {"users": {"table_name": table_name, **SPEC, **extra}})


def test_reader_decrypts_renames_and_refuses(fernet_env):
    reader = FernetReader("t", SCHEMA, [NEW_KEY, OLD_KEY], {"ssn_enc": "tax_id"})
    item = reader.read(_tutorial(3))
    assert item == {**{k: v for k, v in _plain(3).items() if k != "ssn"},
                    "tax_id": "078-05-0003"}
    assert fernet_token(_tutorial(3)["email_enc"]) is not None
    assert fernet_token("not-a-token") is None and fernet_token(12) is None
    with pytest.raises(IntegrityError, match="'ssn_enc' should hold a Fernet token"):
        reader.read({**_tutorial(5), "ssn_enc": "078-05-0005"})
    clash = {**_tutorial(4), "email": "also@example.com"}
    with pytest.raises(IntegrityError, match="would be renamed to 'email'"):
        reader.read(clash)


def test_fernet_migration_killed_and_resumed_under_live_traffic(tmp_path, make_table,
                                                                dynalite, fernet_env):
    n = 1500
    raw = make_table(gsis=("email_bidx",))
    with raw.batch_writer() as batch:
        for i in range(n):
            batch.put_item(Item=_tutorial(i))
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    fernet = {"key_env": ["FERNET_KEY", "FERNET_KEY_OLD"]}
    with Relay(dynalite.endpoint_url) as relay:
        config = _config(tmp_path, relay.endpoint_url, raw.name, migrating_from="fernet",
                         fernet=fernet)
        app = Config.load(config).sealed_table("users")
        assert isinstance(app.migrating_from, FernetReader)
        assert app.get_item({"user_id": "u00001"}) == _plain(1)

        stop = threading.Event()
        errors: list[BaseException] = []
        reads = [0]
        acked: dict[str, int] = {}

        def handle() -> SealedTable:
            resource = boto3.session.Session().resource(
                "dynamodb", endpoint_url=dynalite.endpoint_url, region_name="us-east-1")
            return SealedTable(resource.Table(raw.name), schema=SCHEMA,
                               keyring=LocalKeyring.load(ring.path),
                               migrating_from=app.migrating_from)

        def reader() -> None:
            table = handle()
            rng = random.Random(1)
            try:
                while not stop.is_set():
                    i = rng.randrange(n)
                    item = table.get_item({"user_id": f"u{i:05d}"}, ConsistentRead=True)
                    item.pop("logins", None)
                    assert item == _plain(i)
                    reads[0] += 1
            except BaseException as e:
                errors.append(e)

        def writer() -> None:
            table = handle()
            rng = random.Random(2)
            count = 0
            try:
                while not stop.is_set():
                    uid = f"u{rng.randrange(n):05d}"
                    count += 1
                    table.update_item({"user_id": uid}, set={"logins": count})
                    acked[uid] = count
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
        for t in threads:
            t.start()
        args = ("migrate", "users", "--from", "fernet", "--config", str(config),
                "--segments", "3", "--page-size", "20", "--resume", "--no-progress")
        try:
            kills = kill_repeatedly(args, 3, 0.4, 1.5)
            status, summary, err = run_job(*args, "--json")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
    assert not errors, errors[0]
    assert kills == 3 and reads[0] > 0 and acked
    assert status == 0, err
    assert summary["failures"] == 0

    stored = raw_items(raw)
    assert len(stored) == n
    for item in stored:
        assert "_ds" in item
        assert not {"email_enc", "ssn_enc"} & item.keys()
        for value in item.values():
            assert fernet_token(value) is None
        assert not isinstance(item["email"], str) and not isinstance(item["ssn"], str)
    strict = SealedTable(raw, schema=SCHEMA, keyring=LocalKeyring.load(ring.path))
    for item in strict.scan():
        want = _plain(int(item["user_id"][1:]))
        if item["user_id"] in acked:
            want["logins"] = acked[item["user_id"]]
        assert item == want
    assert [i["user_id"] for i in strict.find("email", "ada42@example.COM")] == ["u00042"]
    before = {i["user_id"]: bytes(i["_ds"]) for i in stored}
    config = _config(tmp_path, dynalite.endpoint_url, raw.name, fernet=fernet)  # relay closed
    status, again, _ = run_job("migrate", "users", "--from", "fernet", "--config", str(config),
                               "--json", "--no-progress")
    assert status == 0
    assert (again["scanned"], again["resealed"]) == (n, 0)
    assert {i["user_id"]: bytes(i["_ds"]) for i in raw_items(raw)} == before


def test_failing_tokens_are_reported_and_left_untouched(tmp_path, make_table, dynalite,
                                                        fernet_env):
    raw = make_table(gsis=("email_bidx",))
    good = [_tutorial(i) for i in range(4)]
    wrong_key = {**_tutorial(10),
                 "email_enc": Fernet(Fernet.generate_key()).encrypt(b"x@y.org").decode()}
    token = _tutorial(11)["ssn_enc"]
    truncated = {**_tutorial(11), "ssn_enc": token[:-8]}
    tampered_token = token[:60] + ("A" if token[60] != "A" else "B") + token[61:]
    tampered = {**_tutorial(12), "ssn_enc": tampered_token}
    old = {**_tutorial(13),
           "email_enc": Fernet(NEW_KEY).encrypt_at_time(b"o@y.org", int(time.time()) - 7200
                                                        ).decode()}
    for item in (*good, wrong_key, truncated, tampered, old):
        raw.put_item(Item=item)
    ring = LocalKeyring.generate(tmp_path / "keys.json")
    config = _config(tmp_path, dynalite.endpoint_url, raw.name)
    status, summary, err = run_job(
        "migrate", "users", "--from", "fernet", "--config", str(config), "--json",
        "--fernet-key-env", "FERNET_KEY", "--fernet-key-env", "FERNET_KEY_OLD",
        "--rename", "email_enc=email", "--rename", "ssn_enc=ssn", "--fernet-max-age", "3600")
    assert status == 1, err
    assert (summary["scanned"], summary["resealed"], summary["failures"]) == (8, 4, 4)
    reason = ("Fernet token in {!r} failed to decrypt (wrong key, truncated, tampered with, "
              "or too old)")
    assert sorted(summary["failed_items"], key=lambda f: f["key"]) == [
        {"key": "{user_id='u00010'}", "reason": reason.format("email_enc")},
        {"key": "{user_id='u00011'}", "reason": reason.format("ssn_enc")},
        {"key": "{user_id='u00012'}", "reason": reason.format("ssn_enc")},
        {"key": "{user_id='u00013'}", "reason": reason.format("email_enc")},
    ]
    by_id = {i["user_id"]: i for i in raw_items(raw)}
    for item in (wrong_key, truncated, tampered, old):
        assert by_id[item["user_id"]] == item
    strict = SealedTable(raw, schema=SCHEMA, keyring=LocalKeyring.load(ring.path))
    assert strict.get_item({"user_id": "u00002"}) == _plain(2)


def test_fernet_keys_come_from_the_environment_only(tmp_path, make_table, dynalite,
                                                    monkeypatch):
    monkeypatch.delenv("NO_SUCH_FERNET_KEY", raising=False)
    raw = make_table()
    LocalKeyring.generate(tmp_path / "keys.json")
    config = _config(tmp_path, dynalite.endpoint_url, raw.name)
    status, _, err = run_job("migrate", "users", "--from", "fernet", "--config", str(config))
    assert status == 2
    assert "name the environment variable(s) holding the Fernet key" in err
    status, _, err = run_job("migrate", "users", "--from", "fernet", "--config", str(config),
                             "--fernet-key-env", "NO_SUCH_FERNET_KEY")
    assert status == 2
    assert "environment variable NO_SUCH_FERNET_KEY is not set" in err
    status, _, err = run_job("migrate", "users", "--from", "plaintext", "--config", str(config),
                             "--rename", "a=b")
    assert status == 2
    assert "go with --from fernet" in err
