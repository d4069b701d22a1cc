"""The ``dynaseal`` command group: keys and tables (and, as they land, the operations jobs).

One click group serves two entry points: the ``dynaseal`` console script and ``flask dynaseal``
(the Flask extension gives each app a group that serves these same command objects, plus the
app's own). Output never includes key
material or item values; a failure is one line on stderr and exit status 1, a usage error 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from .errors import DynasealError
from .keyrings.local import LocalKeyring
from .keyrings.secrets_manager import MAX_ACTIVATE_AFTER

__all__ = ["add_config_default", "cli", "config_option", "main"]


class DynasealGroup(click.Group):
    """A click group that turns dynaseal and AWS errors into one line and exit status 1.

    Only the top-level group needs this: it wraps the invocation of every nested command, and
    the Flask extension's per-app group subclasses it, so the wrapping holds under
    ``flask dynaseal`` too.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynasealError as e:
            click.echo(f"dynaseal: error: {e}", err=True)
        except (BotoCoreError, ClientError) as e:
            click.echo(f"dynaseal: error: AWS request failed: {e}", err=True)
        ctx.exit(1)


_config_defaults: list[Callable[[], str | None]] = []


def add_config_default(provider: Callable[[], str | None]) -> None:
    """Let a host of this group supply ``--config``'s default: the Flask extension answers
    the app's DYNASEAL_CONFIG under ``flask dynaseal``. The first provider that answers wins;
    with none, Config.load falls back to $DYNASEAL_CONFIG, then ./dynaseal.toml."""
    if provider not in _config_defaults:
        _config_defaults.append(provider)


def _default_config_path() -> str | None:
    for provider in _config_defaults:
        path = provider()
        if path:
            return path
    return None


def config_option(f: Any) -> Any:
    """``--config PATH``, default the Flask app's DYNASEAL_CONFIG under ``flask dynaseal``,
    else $DYNASEAL_CONFIG, then ./dynaseal.toml."""
    return click.option(
        "--config", "config_path", default=_default_config_path, metavar="PATH",
        help="config file (default: under 'flask dynaseal' the app's DYNASEAL_CONFIG; else "
             "$DYNASEAL_CONFIG, then ./dynaseal.toml)",
    )(f)


@click.group(cls=DynasealGroup, name="dynaseal",
             help="dynaseal operations: keys, tables and jobs over sealed DynamoDB tables.")
def cli() -> None:
    pass


@cli.group(help="Manage keysets (a local keyset file, or one kept in a Secrets Manager secret).")
def keys() -> None:
    pass


def _secret_options(f: Any) -> Any:
    """``[PATH] | --secret ID [--region R]``: a keyset file or a keyset secret."""
    f = click.option("--region", default=None, metavar="REGION",
                     help="the secret's region (default: AWS_REGION / AWS_DEFAULT_REGION)")(f)
    f = click.option("--secret", "secret_id", default=None, metavar="ID",
                     help="a keyset kept in this AWS Secrets Manager secret (name or ARN)")(f)
    return click.argument("path", required=False)(f)


def _one_keyset(path: str | None, secret_id: str | None) -> None:
    if (path is None) == (secret_id is None):
        raise click.UsageError("give either a key file PATH or --secret ID")


@keys.command("generate", help="Create a new keyset: a file (mode 0600) or a new secret; "
                               "never overwrites.")
@_secret_options
def keys_generate(path: str | None, secret_id: str | None, region: str | None) -> None:
    _one_keyset(path, secret_id)
    if secret_id is not None:
        from .keyrings.secrets_manager import create_secret_keyset

        key_id = create_secret_keyset(secret_id, region=region)
        click.echo(f"created secret {secret_id} with primary key {key_id}")
        return
    ring = LocalKeyring.generate(str(path))
    click.echo(f"created {path} (mode 0600) with primary key {ring.primary_key_id}")


@keys.command("rotate", help="Add a new primary key; older keys still decrypt. With --secret, "
                             "the new key becomes primary only --activate-after seconds later.")
@_secret_options
@click.option("--activate-after", type=click.FloatRange(min=0, max=MAX_ACTIVATE_AFTER),
              default=None, metavar="SECONDS",
              help="--secret only: seconds until the new key becomes primary (default: the "
                   "readers' refresh interval for this secret in --config, else 300; 0 for "
                   "at once)")
@click.option("--config", "config_path", default=None, metavar="PATH",
              help="--secret only: read the readers' refresh interval for the secret here")
def keys_rotate(path: str | None, secret_id: str | None, region: str | None,
                activate_after: float | None, config_path: str | None) -> None:
    _one_keyset(path, secret_id)
    if secret_id is not None:
        from datetime import UTC, datetime

        from .keyrings.secrets_manager import rotate_secret_keyset

        after = activate_after
        if after is None and config_path is not None:
            from .config import Config

            after = max((kr.refresh_interval for _, kr in
                         Config.load(config_path).keyring_settings.walk()
                         if kr.type == "secretsmanager" and kr.secret_id == secret_id),
                        default=None)
        after = 300.0 if after is None else after
        old, new, at = rotate_secret_keyset(secret_id, after, region=region)
        when = ("now" if after == 0 else
                datetime.fromtimestamp(at, UTC).strftime("at %Y-%m-%dT%H:%M:%SZ"))
        click.echo(f"rotated secret {secret_id}: key {new} added, primary {when} (until then "
                   f"{old}); {old} still decrypts")
        return
    if activate_after is not None or config_path is not None:
        raise click.UsageError("--activate-after and --config apply to --secret keysets only")
    ring = LocalKeyring.load(str(path))
    old = ring.primary_key_id
    new = ring.rotate()
    click.echo(f"rotated {path}: primary key {old} -> {new}; {old} still decrypts")


@keys.command("list", help="Key ids, creation times and the primary (never key material).")
@_secret_options
def keys_list(path: str | None, secret_id: str | None, region: str | None) -> None:
    _one_keyset(path, secret_id)
    pending = ""
    if secret_id is not None:
        from datetime import UTC, datetime

        from .keyrings.secrets_manager import read_secret_keyset

        ring, next_id, at = read_secret_keyset(secret_id, region=region)
        if next_id is not None and at is not None:
            pending = next_id
            stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        ring = LocalKeyring.load(str(path))
    click.echo(f"{'KEY ID':<10} {'CREATED':<22} PRIMARY")
    for info in ring.list_keys():
        mark = "yes" if info.primary else (f"from {stamp}" if info.key_id == pending else "")
        click.echo(f"{info.key_id:<10} {info.created_at:<22} {mark}")


@cli.group(help="DynamoDB tables described by the config.")
def tables() -> None:
    pass


@tables.command("create", help="Create the configured tables, blind-index GSIs and claims tables.")
@config_option
@click.option("--table", "only", multiple=True, metavar="NAME", help="only this table (repeatable)")
def tables_create(config_path: str | None, only: tuple[str, ...]) -> None:
    from .config import Config

    config = Config.load(config_path)
    for line in config.create_tables(only=list(only) or None):
        click.echo(line)


def _add_ops_commands() -> None:
    """reencrypt, migrate, audit, keys census and keys retire (src/dynaseal/ops/)."""
    from .ops.commands import add_commands

    add_commands(cli, keys, config_option)


_add_ops_commands()


@cli.command("iam-policy", help="Print the least-privilege IAM policy (JSON) the configured "
                                "app needs.")
@config_option
@click.option("--account", default=None, metavar="ID",
              help="AWS account id of the tables (default: from a KMS key ARN in the config)")
@click.option("--region", default=None, metavar="REGION",
              help="region of the tables (default: [dynamodb] region, then AWS_REGION)")
def iam_policy_command(config_path: str | None, account: str | None, region: str | None
                       ) -> None:
    import json

    from .config import Config
    from .iam import iam_policy

    policy = iam_policy(Config.load(config_path), account=account, region=region)
    click.echo(json.dumps(policy, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command group; returns the exit status (usage errors raise SystemExit(2))."""
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        rv = cli.main(args=args, prog_name="dynaseal", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        raise SystemExit(e.exit_code) from None
    except click.exceptions.Abort:
        click.echo("dynaseal: aborted", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
