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


def test_names_promised_since_0_3_are_exported():
    """Issues 8-11: scoped views, the extension, the keyrings, the migration readers."""
    import dynaseal_users
    import flask_dynaseal

    promised = {"ScopedTable", "ItemNotFoundError", "KmsKeyring", "MultiKeyring",
                "SecretsManagerKeyring", "KeyringError", "PlaintextReader", "DdbecReader",
                "FernetReader", "MigrationReader"}
    assert promised <= set(dynaseal.__all__)
    for name in promised:
        assert getattr(dynaseal, name).__module__.startswith("dynaseal.")
    assert issubclass(dynaseal.ItemNotFoundError, dynaseal.DynasealError)
    assert issubclass(dynaseal.KeyringError, dynaseal.DynasealError)
    assert callable(dynaseal.SealedTable.scoped)
    assert {"Dynaseal", "redact", "RedactingFilter"} <= set(flask_dynaseal.__all__)
    assert dynaseal_users.__all__ == ["create_app"]


def test_the_core_never_imports_the_layers_above_it():
    import subprocess
    import sys

    code = ("import sys, dynaseal, dynaseal.cli, dynaseal.ops, dynaseal.keyrings; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'flask_dynaseal', 'dynaseal_users')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
