"""Passwords, tokens, rate limits, the admin command and refusals of unsafe configuration."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask
from itsdangerous import URLSafeTimedSerializer
from users_support import PASSWORD, USERS_TABLE, FlaskHttp, User, UsersEnv, log_in, new_user

from dynaseal import Config, ConfigError, LocalKeyring, SealedTable
from dynaseal.cli import cli as dynaseal_cli
from dynaseal.cli import main as dynaseal_main
from dynaseal_users import create_app
from dynaseal_users.auth import RATE_LIMIT_PURPOSE, TOKEN_PURPOSE, Tokens, account_key
from support import base_doc, to_toml

CHEAP = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}


def _http(app: Flask, address: str = "127.0.0.1") -> FlaskHttp:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return FlaskHttp(client)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(http: FlaskHttp, email: str, password: str) -> Any:
    return http("POST", "/sessions", json={"email": email, "password": password})


# -- rate limits -------------------------------------------------------------------------------


def test_failed_logins_are_limited_per_account(make_app: Callable[..., Flask]) -> None:
    app = make_app(USERS_LOGIN_LIMIT_ACCOUNT="2 per minute",
                   USERS_LOGIN_LIMIT_ADDRESS="100 per minute")
    http = _http(app)
    user, bystander = new_user(http, login=False), new_user(http, login=False)
    assert _login(http, user.email, "wrong").status == 401
    assert _login(http, user.email.upper(), "wrong").status == 401  # one account, any case
    limited = _login(http, user.email, PASSWORD)  # even the right password waits now
    assert limited.status == 429
    assert limited.json() == {"error": "too_many_requests", "message": "too many requests"}
    assert 0 < int(limited.headers["retry-after"]) <= 60
    assert _login(http, bystander.email, PASSWORD).status == 201
    assert _login(http, bystander.email, "wrong").status == 401


def test_successful_logins_are_not_counted(make_app: Callable[..., Flask]) -> None:
    app = make_app(USERS_LOGIN_LIMIT_ACCOUNT="2 per minute",
                   USERS_LOGIN_LIMIT_ADDRESS="2 per minute")
    http = _http(app)
    user = new_user(http, login=False)
    for _ in range(4):
        assert _login(http, user.email, PASSWORD).status == 201


def test_failed_logins_are_limited_per_address(make_app: Callable[..., Flask]) -> None:
    app = make_app(USERS_LOGIN_LIMIT_ACCOUNT="100 per minute",
                   USERS_LOGIN_LIMIT_ADDRESS="3 per minute")
    http, elsewhere = _http(app), _http(app, "10.0.0.2")
    for i in range(3):
        assert _login(http, f"nobody{i}@example.com", "x").status == 401
    r = _login(http, "someone.else@example.com", "x")
    assert r.status == 429 and int(r.headers["retry-after"]) > 0
    assert _login(elsewhere, "someone.else@example.com", "x").status == 401


def test_routes_without_limits_skip_the_limiters_check(make_app: Callable[..., Flask]) -> None:
    """Only the login route has limits, checked by its own decorators: flask-limiter's
    app-wide before_request check is unhooked, and its after_request hook (which charges the
    failures and writes the X-RateLimit headers) runs for the login route only."""
    app = make_app(USERS_LOGIN_LIMIT_ADDRESS="1 per minute")
    limiter = app.extensions["dynaseal_users"].limiter
    assert limiter not in [getattr(f, "__self__", None) for f in app.before_request_funcs[None]]
    http = _http(app)
    failed = _login(http, "nobody@example.com", "x")
    assert (failed.status, failed.headers["x-ratelimit-limit"]) == (401, "1")
    limited = _login(http, "nobody@example.com", "x")  # still counted and limited
    assert limited.status == 429 and int(limited.headers["retry-after"]) > 0
    for _ in range(3):
        r = http("GET", "/healthz")
        assert r.status == 200 and not any(h.startswith("x-ratelimit") for h in r.headers)


def test_app_wide_limits_keep_the_limiters_check(make_app: Callable[..., Flask]) -> None:
    """Given flask-limiter's own default limits, its check stays and applies them."""
    app = make_app(RATELIMIT_DEFAULT="2 per minute")
    http = _http(app)
    assert [http("GET", "/healthz").status for _ in range(3)] == [200, 200, 429]
    assert http("GET", "/healthz").json() == {"error": "too_many_requests",
                                              "message": "too many requests"}


def test_the_limiter_never_sees_the_email(make_app: Callable[..., Flask],
                                          caplog: pytest.LogCaptureFixture) -> None:
    """Its storage keys and its log name the account by an HMAC of the normalised e-mail."""
    app = make_app(USERS_LOGIN_LIMIT_ACCOUNT="1 per minute",
                   USERS_LOGIN_LIMIT_ADDRESS="100 per minute")
    http = _http(app)
    email = "Limited.Person@Example.com"
    with caplog.at_level(logging.DEBUG):
        assert _login(http, email, "x").status == 401
        assert _login(http, email.lower(), "x").status == 429
    ds = app.extensions["dynaseal"]
    users = Config.load(app.config["DYNASEAL_CONFIG"]).sealed_table("users")
    key = account_key(ds.keyring, users.schema.blind_indexes["email"], email)
    limiter = next(iter(app.extensions["limiter"]))
    stored_keys = list(limiter.storage.storage)  # memory storage: every counter by key
    assert any(key in k for k in stored_keys)
    assert not any("example" in k.lower() for k in stored_keys)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert key in text
    assert "example" not in text.lower()


# -- failed logins cost the same -------------------------------------------------------------


class CountingHasher(PasswordHasher):
    calls = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        CountingHasher.calls += 1
        return super().verify(hash, password)


def test_every_login_verifies_one_hash(app: Flask) -> None:
    """Unknown accounts are checked against a dummy hash: one argon2 verification each."""
    passwords = app.extensions["dynaseal_users"].passwords
    original = passwords.hasher
    passwords.hasher = CountingHasher()
    try:
        http = _http(app)
        user = new_user(http, login=False)
        for email, password in ((user.email, PASSWORD), (user.email, "wrong"),
                                ("unknown@example.com", PASSWORD), ("garbage", "")):
            CountingHasher.calls = 0
            _login(http, email, password)
            assert CountingHasher.calls == 1
    finally:
        passwords.hasher = original


# -- tokens ------------------------------------------------------------------------------------


def _serializer(keys: list[bytes]) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys, salt="session",
                                  signer_kwargs={"digest_method": hashlib.sha256})


def test_tokens_expire(make_app: Callable[..., Flask]) -> None:
    app = make_app(USERS_TOKEN_MAX_AGE=1)
    http = _http(app)
    user = new_user(http)
    assert http("GET", f"/users/{user.id}", headers=user.auth).status == 200
    time.sleep(2.1)
    assert http("GET", f"/users/{user.id}", headers=user.auth).status == 401


def test_forged_and_altered_tokens_are_refused(app: Flask, tmp_path: Any) -> None:
    http = _http(app)
    user = new_user(http)
    keys = app.extensions["dynaseal"].keyring.derived_keys(TOKEN_PURPOSE)
    good = _serializer(keys)
    assert good.loads(user.token) == {"sub": user.id, "tv": 0}
    assert http("GET", f"/users/{user.id}", headers=_bearer(good.dumps({"sub": user.id, "tv": 0}))
                ).status == 200
    stranger = LocalKeyring.generate(tmp_path / "other.json").derived_keys(TOKEN_PURPOSE)
    forged = [
        _serializer(stranger).dumps({"sub": user.id, "tv": 0}),      # another keyset
        good.dumps({"sub": user.id, "tv": 1}),                       # a version not yet issued
        good.dumps({"sub": user.id, "tv": 0, "role": "admin"}),      # more than id and version
        good.dumps({"sub": user.id, "tv": "0"}),
        good.dumps([user.id, 0]),
        URLSafeTimedSerializer(keys, salt="session").dumps({"sub": user.id, "tv": 0}),  # SHA-1
        URLSafeTimedSerializer(keys, salt="other", signer_kwargs={
            "digest_method": hashlib.sha256}).dumps({"sub": user.id, "tv": 0}),
        user.token[:-2] + ("AA" if not user.token.endswith("AA") else "BB"),
    ]
    rate = app.extensions["dynaseal"].keyring.derived_keys(RATE_LIMIT_PURPOSE)
    forged.append(_serializer(rate).dumps({"sub": user.id, "tv": 0}))  # another purpose's key
    for token in forged:
        assert http("GET", f"/users/{user.id}", headers=_bearer(token)).status == 401, token


def _isolated_env(tmp_path: Any, endpoint: str) -> UsersEnv:
    """A key file and table of its own, for tests that rotate keys."""
    LocalKeyring.generate(tmp_path / "keys.json")
    doc = base_doc(endpoint)
    doc["tables"] = {"users": {"table_name": f"users-rot-{os.getpid()}-{time.time_ns()}",
                               **USERS_TABLE}}
    (tmp_path / "dynaseal.toml").write_text(to_toml(doc), encoding="utf-8")
    config = Config.load(tmp_path / "dynaseal.toml")
    list(config.create_tables())
    return UsersEnv(tmp_path / "dynaseal.toml", tmp_path / "keys.json", config)


def test_token_key_rotates_with_the_keyset(tmp_path: Any, dynalite: Any) -> None:
    """After ``dynaseal keys rotate`` new tokens are signed with the new key; tokens signed
    before still verify (the old key is a fallback) until they expire."""
    env = _isolated_env(tmp_path, dynalite.endpoint_url)
    settings = {"DYNASEAL_CONFIG": str(env.config_path)}
    before = create_app(settings)
    user = new_user(_http(before))
    old_keys = before.extensions["dynaseal"].keyring.derived_keys(TOKEN_PURPOSE)
    LocalKeyring.load(env.key_path).rotate()
    after = create_app(settings)
    new_keys = after.extensions["dynaseal"].keyring.derived_keys(TOKEN_PURPOSE)
    assert new_keys[:-1] == old_keys and len(new_keys) == 2
    http = _http(after)
    assert http("GET", f"/users/{user.id}", headers=user.auth).status == 200
    token = log_in(http, user.email, PASSWORD)
    assert _serializer(new_keys[-1:]).loads(token) == {"sub": user.id, "tv": 0}
    with pytest.raises(Exception, match="does not match"):
        _serializer(old_keys).loads(token)


def test_a_running_app_follows_a_rotation_of_its_keyring() -> None:
    """The token serializer is built once per key list: reused while the keys stay, rebuilt
    when the keyring the app holds rotates (no restart)."""
    ring = LocalKeyring.new_keyset()
    tokens = Tokens(ring, max_age=60)
    first = tokens.issue("A" * 22, 0)
    assert tokens._serializer() is tokens._serializer()  # nothing rebuilt per request
    old_keys = ring.derived_keys(TOKEN_PURPOSE)
    ring.rotate()
    second = tokens.issue("B" * 22, 1)
    assert _serializer(ring.derived_keys(TOKEN_PURPOSE)[-1:]).loads(second) == {
        "sub": "B" * 22, "tv": 1}  # signed with the new key at once
    with pytest.raises(Exception, match="does not match"):
        _serializer(old_keys).loads(second)
    assert (tokens.verify(first), tokens.verify(second)) == (("A" * 22, 0), ("B" * 22, 1))
    assert Tokens(LocalKeyring.new_keyset(), max_age=60).verify(second) is None


# -- passwords ---------------------------------------------------------------------------------


def test_login_rehashes_when_the_parameters_change(make_app: Callable[..., Flask],
                                                   sealed_users: SealedTable) -> None:
    """A lower profile is accepted only under TESTING; here it stands for an old deployment."""
    old = make_app(TESTING=True, USERS_ARGON2=CHEAP)
    user = new_user(_http(old), login=False)
    stored = sealed_users.get_item({"user_id": user.id})
    assert stored is not None and "$m=1024,t=1,p=1$" in stored["password_hash"]
    current = _http(make_app())
    assert _login(current, user.email, PASSWORD).status == 201
    stored = sealed_users.get_item({"user_id": user.id})
    assert stored is not None and "$m=65536,t=3,p=4$" in stored["password_hash"]
    assert _login(current, user.email, PASSWORD).status == 201


def test_a_profile_below_the_owasp_floor_needs_testing(users_env: UsersEnv) -> None:
    for profile in (CHEAP, {"memory_cost": 19455}, {"time_cost": 1}):
        with pytest.raises(ConfigError, match="below the OWASP floor"):
            create_app({"DYNASEAL_CONFIG": str(users_env.config_path), "USERS_ARGON2": profile})
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_app({"DYNASEAL_CONFIG": str(users_env.config_path), "USERS_ARGON2": {"salt": 1}})


def test_refuses_a_users_table_without_signed_owner(tmp_path: Any, dynalite: Any) -> None:
    env = _isolated_env(tmp_path, dynalite.endpoint_url)
    doc = base_doc(dynalite.endpoint_url)
    (tmp_path / "weak.toml").write_text(to_toml(doc), encoding="utf-8")  # signs role only
    with pytest.raises(ConfigError, match="sign owner, role, created_at, token_version"):
        create_app({"DYNASEAL_CONFIG": str(tmp_path / "weak.toml")})
    assert env.config_path.exists()


# -- the admin command -------------------------------------------------------------------------


def test_grant_and_revoke_admin(app: Flask, sealed_users: SealedTable) -> None:
    user: User = new_user(_http(app), login=False)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["dynaseal", "users", "grant-admin", user.id])
    assert (result.exit_code, result.output) == (0, f"user {user.id} is now an admin\n")
    assert sealed_users.get_item({"user_id": user.id})["role"] == "admin"  # type: ignore[index]
    result = runner.invoke(args=["dynaseal", "users", "revoke-admin", user.id])
    assert (result.exit_code, result.output) == (0, f"user {user.id} is now a member\n")
    assert sealed_users.get_item({"user_id": user.id})["role"] == "member"  # type: ignore[index]
    result = runner.invoke(args=["dynaseal", "users", "grant-admin", "A" * 22])
    assert result.exit_code == 1 and f"no user {'A' * 22}" in result.output
    result = runner.invoke(args=["dynaseal", "users", "grant-admin", "../x"])
    assert result.exit_code == 1 and "not a user id" in result.output
    for dashed in ("-B" + "A" * 20, "--" + "A" * 20):  # ids may begin with "-"
        for command in ("grant-admin", "revoke-admin"):
            result = runner.invoke(args=["dynaseal", "users", command, dashed])
            assert (result.exit_code, result.output) == (1, f"Error: no user {dashed}\n")


def test_the_admin_command_lives_under_flask_dynaseal_only(app: Flask) -> None:
    runner = app.test_cli_runner()
    old = runner.invoke(args=["users", "grant-admin", "A" * 22])  # one way: no alias
    assert old.exit_code == 2 and "No such command 'users'" in old.output
    listing = runner.invoke(args=["dynaseal", "--help"])
    assert listing.exit_code == 0
    assert {"users", "keys", "tables"} <= {line.split()[0] for line in
                                         listing.output.split("Commands:")[1].splitlines()
                                         if line.strip()}
    # the standalone ``dynaseal`` command is not changed by building the app
    assert "users" not in dynaseal_cli.commands
    with pytest.raises(SystemExit) as exited:
        dynaseal_main(["users", "grant-admin", "A" * 22])
    assert exited.value.code == 2


def test_the_documented_admin_command(app: Flask, users_env: UsersEnv,
                                      sealed_users: SealedTable) -> None:
    """``flask --app dynaseal_users dynaseal users grant-admin ID``, as the README writes it, in
    a subprocess (the app factory found by Flask, the config from $DYNASEAL_CONFIG)."""
    user: User = new_user(_http(app), login=False)
    flask = Path(sys.executable).with_name("flask")
    env = {**os.environ, "DYNASEAL_CONFIG": str(users_env.config_path)}
    for user_id, command, status, output in (
            (user.id, "grant-admin", 0, f"user {user.id} is now an admin\n"),
            ("-" + "A" * 21, "grant-admin", 1, f"Error: no user {'-' + 'A' * 21}\n")):
        done = subprocess.run([str(flask), "--app", "dynaseal_users", "dynaseal", "users",
                               command, user_id], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        # stderr also holds the config's warning about plaintext HTTP to the local dynalite
        assert (done.returncode, done.stdout if status == 0 else done.stderr[-len(output):]
                ) == (status, output)
    assert sealed_users.get_item({"user_id": user.id})["role"] == "admin"  # type: ignore[index]


# -- a record changed in the table -----------------------------------------------------------


def test_a_record_moved_to_another_owner_in_the_table_is_refused(
        app: Flask, sealed_users: SealedTable, caplog: pytest.LogCaptureFixture) -> None:
    http = _http(app)
    victim, attacker = new_user(http), new_user(http)
    raw = sealed_users.table
    item = raw.get_item(Key={"user_id": victim.id}, ConsistentRead=True)["Item"]
    raw.put_item(Item={**item, "owner": attacker.id})   # someone with write access to the table
    internal = b'{"error":"internal_error","message":"internal error"}'
    with caplog.at_level(logging.ERROR, logger="dynaseal_users"):
        by_attacker = http("GET", f"/users/{victim.id}", headers=attacker.auth)
        by_victim = http("GET", f"/users/{victim.id}", headers=victim.auth)
    # the signature no longer verifies: neither the new "owner" nor the old one is served it
    assert (by_attacker.status, by_attacker.body) == (500, internal)
    assert (by_victim.status, by_victim.body) == (500, internal)
    messages = [r.getMessage() for r in caplog.records if r.name == "dynaseal_users"]
    assert messages == ["unhandled IntegrityError in GET /users/<user_id>"] * 2
    for record in caplog.records:
        assert victim.body["email"] not in record.getMessage()
        assert victim.body["ssn"] not in (record.exc_text or "")


# -- the OpenAPI document --------------------------------------------------------------------


def test_openapi_lists_every_route_and_method_of_the_app(app: Flask) -> None:
    doc = app.test_client().get("/openapi.json").get_json()
    served = {(rule.rule.replace("<", "{").replace(">", "}"), method.lower())
              for rule in app.url_map.iter_rules() if rule.endpoint != "static"
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"}, (path, method, status)
    assert doc["components"]["schemas"]["RegisterRequest"]["additionalProperties"] is False
    assert "401" in doc["paths"]["/users/{user_id}"]["get"]["responses"]
    assert doc["paths"]["/sessions"]["post"]["responses"]["429"]["headers"]["Retry-After"]
