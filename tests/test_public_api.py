"""The names the issues promise to users, importable from the top-level package."""

import dynaseal


def test_promised_names_are_exported():
    promised = {"LocalKeyring", "Schema", "SealedTable", "ItemSealer", "DynasealError",
                "IntegrityError", "KeyNotFoundError", "Config", "BlindIndex", "ConfigError",
                "UniqueConstraintError"}
    assert promised <= set(dynaseal.__all__)
    for name in promised:
        assert getattr(dynaseal, name).__module__.startswith("dynaseal.")


def test_error_hierarchy():
    assert issubclass(dynaseal.IntegrityError, dynaseal.DynasealError)
    assert issubclass(dynaseal.KeyNotFoundError, dynaseal.IntegrityError)
    assert issubclass(dynaseal.ConfigError, dynaseal.DynasealError)
    assert issubclass(dynaseal.UniqueConstraintError, dynaseal.DynasealError)
    assert issubclass(dynaseal.InvalidItemError, ValueError)


def test_config_load_is_the_documented_entry_point(tmp_path, monkeypatch):
    (tmp_path / "dynaseal.toml").write_text(
        '[keyring]\npath = "k.json"\n[tables.users]\npartition_key = "user_id"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DYNASEAL_CONFIG", raising=False)
    config = dynaseal.Config.load()
    assert config.keyring_path == tmp_path / "k.json"
    assert config.settings("users").schema.partition_key == "user_id"
