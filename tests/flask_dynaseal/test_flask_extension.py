"""flask_dynaseal.Dynaseal: conventions, fail-fast validation, the current app's tables."""

from __future__ import annotations

import logging
import os

import pytest
from flask import Flask
from flask_support import *  # noqa: F403 (the fixtures: attach, flask_env, make_app)
from flask_support import write_config

from dynaseal import Config, ConfigError, LocalKeyring, SealedTable
from flask_dynaseal import EXTENSION_KEY, Dynaseal, DynasealState
from support import errors_of, run_concurrently

# -- conventions ----------------------------------------------------------------------------


def test_state_lives_in_app_extensions_never_on_the_extension(make_app, flask_env):
    app = make_app(init=False)
    ds = Dynaseal()
    ds.init_app(app)
    assert not hasattr(ds, "app")
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state, DynasealState)
    assert state.config.path == flask_env.config_path
    with app.app_context():
        users = ds.table("users")
        assert isinstance(users, SealedTable)
        assert users.name == flask_env.table_name
        assert ds.table("users") is users  # one per app
        assert ds.config is state.config
        assert isinstance(ds.keyring, LocalKeyring)
        assert ds.keyring.path == flask_env.key_path
        assert ds.state() is state


def test_constructor_form_and_one_extension_for_many_apps(make_app):
    first = make_app(init=False)
    ds = Dynaseal(first)
    second = make_app(init=False)
    ds.init_app(second)
    with first.app_context():
        a = ds.table("users")
    with second.app_context():
        b = ds.table("users")
    assert a is not b  # each app has its own tables
    assert ds.state(first).tables["users"] is a


def test_second_init_app_on_one_app_is_refused(make_app):
    app = make_app()
    with pytest.raises(RuntimeError, match="init_app was already called for this app"):
        Dynaseal().init_app(app)


def test_use_outside_an_app_context_is_a_clear_error(make_app):
    ds = Dynaseal()
    ds.init_app(make_app(init=False))
    for use in (lambda: ds.table("users"), lambda: ds.config, lambda: ds.keyring, ds.state):
        with pytest.raises(RuntimeError, match="no Flask app is active; use this inside a "
                                               "request, a CLI command or"):
            use()


def test_an_app_without_the_extension_is_a_clear_error(make_app):
    ds = Dynaseal()
    ds.init_app(make_app(init=False))
    other = make_app(init=False)
    with other.app_context(), pytest.raises(
            RuntimeError, match="the app 'flask_dynaseal_tests' has no dynaseal; call "
                                r"Dynaseal\(\).init_app\(app\)"):
        ds.table("users")
    with pytest.raises(RuntimeError, match="has no dynaseal"):
        ds.state(other)


def test_unknown_table(make_app, flask_env):
    app = make_app()
    with app.app_context(), pytest.raises(ConfigError) as e:
        Dynaseal().state().table("orders")
    assert str(e.value) == (f"flask_dynaseal: no table 'orders' is configured in "
                            f"{flask_env.config_path}")


def test_table_works_in_a_request(make_app):
    app = make_app()
    ds = Dynaseal()  # a second object finds the same state: nothing lives on the object

    @app.get("/<uid>")
    def read(uid: str) -> dict[str, str]:
        item = ds.table("users").get_item({"user_id": uid})
        return {"email": item["email"]} if item else {}

    with app.app_context():
        ds.table("users").put_item({"user_id": "req-1", "email": "req@example.com"})
    assert app.test_client().get("/req-1").get_json() == {"email": "req@example.com"}
    assert app.test_client().get("/nope").get_json() == {}


def test_threads_of_a_worker_share_one_table(make_app):
    app = make_app()
    ds = Dynaseal()

    def work(t: int) -> SealedTable:
        with app.app_context():
            users = ds.table("users")
            users.put_item({"user_id": f"thr-{t}", "email": f"thr-{t}@example.com"})
            assert users.get_item({"user_id": f"thr-{t}"})["email"] == f"thr-{t}@example.com"
            users.update_item({"user_id": f"thr-{t}"}, set={"n": t})
            return users

    results = run_concurrently(12, work)
    assert errors_of(results) == []
    assert len({id(r) for r in results}) == 1
    with app.app_context():
        got = ds.table("users").batch_get([{"user_id": f"thr-{t}"} for t in range(12)])
    assert [i["n"] for i in got] == list(range(12))


# -- configuration --------------------------------------------------------------------------


def test_defaults_are_set_with_setdefault(make_app, flask_env, monkeypatch):
    monkeypatch.setenv("DYNASEAL_CONFIG", str(flask_env.config_path))
    app = Flask("defaults")
    app.config["DYNASEAL_REDACT_LOGS"] = False
    Dynaseal(app)
    assert app.config["DYNASEAL_CONFIG"] == str(flask_env.config_path)  # from the environment
    assert app.config["DYNASEAL_REDACT_LOGS"] is False                   # the app's own value
    assert app.config["DYNASEAL_UNSAFE_AWS_DEBUG_LOGS"] is False
    assert app.config["DYNASEAL_REDACT_FIELDS"] == ()


def test_default_config_is_dynaseal_toml_in_the_working_directory(flask_env, monkeypatch):
    monkeypatch.delenv("DYNASEAL_CONFIG", raising=False)
    monkeypatch.chdir(flask_env.root)
    app = Flask("cwd")
    Dynaseal(app)
    assert app.config["DYNASEAL_CONFIG"] == "dynaseal.toml"
    assert app.extensions[EXTENSION_KEY].settings.config_path == flask_env.config_path


def test_missing_config_file_fails_fast(tmp_path):
    app = Flask("missing")
    app.config["DYNASEAL_CONFIG"] = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        Dynaseal(app)
    assert EXTENSION_KEY not in app.extensions


@pytest.mark.parametrize(("key", "value", "message"), [
    ("DYNASEAL_CONFIG", 42, "DYNASEAL_CONFIG must be the path of a dynaseal.toml"),
    ("DYNASEAL_CONFIG", "", "DYNASEAL_CONFIG must be the path of a dynaseal.toml"),
    ("DYNASEAL_REDACT_LOGS", "yes", "DYNASEAL_REDACT_LOGS must be True or False"),
    ("DYNASEAL_UNSAFE_AWS_DEBUG_LOGS", 1, "DYNASEAL_UNSAFE_AWS_DEBUG_LOGS must be True or False"),
    ("DYNASEAL_REDACT_FIELDS", "ssn", "DYNASEAL_REDACT_FIELDS must be a list of field names"),
])
def test_wrong_types_are_refused(make_app, key, value, message):
    with pytest.raises(ConfigError, match=message):
        make_app(**{key: value})


def test_plaintext_http_to_a_remote_host_fails_fast(flask_env, tmp_path):
    (tmp_path / "keys.json").symlink_to(flask_env.key_path)
    path = write_config(tmp_path, "http://dynamodb.example.com", "t-remote")
    app = Flask("insecure")
    app.config["DYNASEAL_CONFIG"] = str(path)
    with pytest.raises(ConfigError, match="plaintext http:// is refused for a non-loopback "
                                          "host"):
        Dynaseal(app)


def test_an_insecure_endpoint_from_the_environment_fails_fast(make_app, flask_env, tmp_path,
                                                              monkeypatch):
    (tmp_path / "keys.json").symlink_to(flask_env.key_path)
    doc_path = write_config(tmp_path, "http://127.0.0.1:1", "t-env")
    # the config names no endpoint; boto3 would take the environment's plaintext one
    doc_path.write_text(doc_path.read_text().replace('endpoint_url = "http://127.0.0.1:1"\n',
                                                     ""), encoding="utf-8")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamodb.example.com")
    with pytest.raises(ConfigError, match="plaintext http:// is refused"):
        make_app(DYNASEAL_CONFIG=str(doc_path))


def test_a_key_file_others_can_read_fails_fast(dynalite, tmp_path):
    LocalKeyring.generate(tmp_path / "keys.json")
    os.chmod(tmp_path / "keys.json", 0o644)
    path = write_config(tmp_path, dynalite.endpoint_url, "t-mode")
    app = Flask("mode")
    app.config["DYNASEAL_CONFIG"] = str(path)
    with pytest.raises(ConfigError) as e:
        Dynaseal(app)
    assert "key file is accessible by group or others (mode 0644)" in str(e.value)
    assert EXTENSION_KEY not in app.extensions


KEY_B64 = "q8BvXy1Q0d0e6V9fU3m0c2x1Z0h6T2dQb1Z2c3F4eXo="


@pytest.mark.parametrize(("key", "value"), [
    ("DYNASEAL_KEY", "anything"),                       # by name
    ("DYNASEAL_TOKEN_SECRET", ["a", "b"]),              # by name
    ("DYNASEAL_PRIMARY_MATERIAL", {"x": 1}),            # by name
    ("DYNASEAL_EXTRA", KEY_B64),                        # by shape: base64 of 32 bytes
    ("DYNASEAL_EXTRA", "00" * 32),                      # by shape: hex
    ("DYNASEAL_EXTRA", os.urandom(32)),                 # by shape: raw bytes
    ("USERS_KEYSET", {"type": "dynaseal-local-keyset", "keys": []}),  # a keyset, any name
    ("ANYTHING", '{"type": "dynaseal-local-keyset"}'),
])
def test_inline_key_material_is_refused_outside_debug_and_testing(make_app, key, value):
    with pytest.raises(ConfigError) as e:
        make_app(**{key: value})
    assert str(e.value) == (f"flask_dynaseal: key material in app.config ({key}); keys belong "
                            "in the keyring named by the dynaseal config file (DYNASEAL_CONFIG), "
                            "never in app.config")
    if isinstance(value, str):
        assert value not in str(e.value)


@pytest.mark.parametrize("mode", ["TESTING", "DEBUG"])
def test_inline_key_material_is_only_warned_about_in_debug_or_testing(make_app, caplog, mode):
    app = Flask("lenient")
    app.config.update({mode: True, "DYNASEAL_KEY": KEY_B64})
    app.config["DYNASEAL_CONFIG"] = make_app(init=False).config["DYNASEAL_CONFIG"]
    with caplog.at_level(logging.WARNING, logger="flask_dynaseal"):
        Dynaseal(app)
    assert ("flask_dynaseal: key material in app.config (DYNASEAL_KEY) is ignored and would be "
            "refused outside debug/testing") in caplog.messages
    assert KEY_B64 not in caplog.text


@pytest.mark.parametrize(("key", "value"), [
    ("DYNASEAL_TABLE_PREFIX", "prod-"),
    ("DYNASEAL_REGION_NAME", "us-east-1"),
    ("DYNASEAL_NOTE", "averylongidentifierwithoutanydigitsatall"),
    ("SECRET_KEY", KEY_B64),  # Flask's own secret: not dynaseal's business
])
def test_ordinary_values_are_not_key_material(make_app, caplog, key, value):
    with caplog.at_level(logging.WARNING, logger="flask_dynaseal"):
        make_app(**{key: value})
    ours = [r.getMessage() for r in caplog.records if r.name == "flask_dynaseal"]
    if key.startswith("DYNASEAL_"):
        assert ours == [f"flask_dynaseal: unknown config key {key} is ignored"]
    else:
        assert ours == []


def test_config_is_read_once(make_app, flask_env, tmp_path):
    app = make_app()
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state.config, Config)
    app.config["DYNASEAL_CONFIG"] = str(tmp_path / "changed.toml")  # too late: ignored
    with app.app_context():
        assert Dynaseal().config.path == flask_env.config_path
