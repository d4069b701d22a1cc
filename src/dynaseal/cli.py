"""The ``dynaseal`` operations command: keys, tables.

Output never includes key material or item values; errors are one line on stderr, exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError

from .errors import DynasealError
from .local_keyring import LocalKeyring

__all__ = ["main"]


def _keys_generate(args: argparse.Namespace) -> int:
    ring = LocalKeyring.generate(args.path)
    print(f"created {args.path} (mode 0600) with primary key {ring.primary_key_id}")
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    ring = LocalKeyring.load(args.path)
    old = ring.primary_key_id
    new = ring.rotate()
    print(f"rotated {args.path}: primary key {old} -> {new}; {old} still decrypts")
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    ring = LocalKeyring.load(args.path)
    print(f"{'KEY ID':<10} {'CREATED':<22} PRIMARY")
    for info in ring.list_keys():
        print(f"{info.key_id:<10} {info.created_at:<22} {'yes' if info.primary else ''}")
    return 0


def _tables_create(args: argparse.Namespace) -> int:
    from .config import Config

    config = Config.load(args.config)
    for line in config.create_tables(only=args.table or None):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynaseal", description="dynaseal operations: keys and tables."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keys", help="manage a local keyset file")
    keys_sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = keys_sub.add_parser("generate", help="create a new keyset file (mode 0600)")
    p.add_argument("path")
    p.set_defaults(func=_keys_generate)
    p = keys_sub.add_parser("rotate", help="add a new primary key; older keys still decrypt")
    p.add_argument("path")
    p.set_defaults(func=_keys_rotate)
    p = keys_sub.add_parser("list", help="key ids, creation times and the primary (no material)")
    p.add_argument("path")
    p.set_defaults(func=_keys_list)

    tables = sub.add_parser("tables", help="DynamoDB tables described by the config")
    tables_sub = tables.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = tables_sub.add_parser("create", help="create the configured tables and their indexes")
    p.add_argument("--config", help="config file (default: $DYNASEAL_CONFIG or dynaseal.toml)")
    p.add_argument("--table", action="append", help="only this table (repeatable)")
    p.set_defaults(func=_tables_create)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DynasealError as e:
        print(f"dynaseal: error: {e}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as e:
        print(f"dynaseal: error: AWS request failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
