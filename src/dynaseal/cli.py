"""The ``dynaseal`` command group: keys and tables (and, as they land, the operations jobs).

One click group serves two entry points: the ``dynaseal`` console script and ``flask dynaseal``
(the Flask extension registers this same group on ``app.cli``). Output never includes key
material or item values; a failure is one line on stderr and exit status 1, a usage error 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from .errors import DynasealError
from .keyrings.local import LocalKeyring

__all__ = ["cli", "config_option", "main"]


class DynasealGroup(click.Group):
    """A click group that turns dynaseal and AWS errors into one line and exit status 1.

    Only the top-level group needs this: it wraps the invocation of every nested command, and
    the wrapping travels with the group when Flask mounts it under ``flask dynaseal``.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DynasealError as e:
            click.echo(f"dynaseal: error: {e}", err=True)
        except (BotoCoreError, ClientError) as e:
            click.echo(f"dynaseal: error: AWS request failed: {e}", err=True)
        ctx.exit(1)


def config_option(f: Any) -> Any:
    """``--config PATH``, default $DYNASEAL_CONFIG, then ./dynaseal.toml."""
    return click.option(
        "--config", "config_path", default=None, metavar="PATH",
        help="config file (default: $DYNASEAL_CONFIG, then ./dynaseal.toml)",
    )(f)


@click.group(cls=DynasealGroup, name="dynaseal",
             help="dynaseal operations: keys, tables and jobs over sealed DynamoDB tables.")
def cli() -> None:
    pass


@cli.group(help="Manage keysets (a local keyset file).")
def keys() -> None:
    pass


@keys.command("generate", help="Create a new keyset file (mode 0600); never overwrites.")
@click.argument("path")
def keys_generate(path: str) -> None:
    ring = LocalKeyring.generate(path)
    click.echo(f"created {path} (mode 0600) with primary key {ring.primary_key_id}")


@keys.command("rotate", help="Add a new primary key; older keys still decrypt.")
@click.argument("path")
def keys_rotate(path: str) -> None:
    ring = LocalKeyring.load(path)
    old = ring.primary_key_id
    new = ring.rotate()
    click.echo(f"rotated {path}: primary key {old} -> {new}; {old} still decrypts")


@keys.command("list", help="Key ids, creation times and the primary (never key material).")
@click.argument("path")
def keys_list(path: str) -> None:
    ring = LocalKeyring.load(path)
    click.echo(f"{'KEY ID':<10} {'CREATED':<22} PRIMARY")
    for info in ring.list_keys():
        click.echo(f"{info.key_id:<10} {info.created_at:<22} {'yes' if info.primary else ''}")


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
