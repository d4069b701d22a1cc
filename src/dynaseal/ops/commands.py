"""The operations commands of the ``dynaseal`` click group: reencrypt, migrate, audit and
``keys census`` / ``keys retire``.

Defined here and added to the group by :func:`add_commands`, so cli.py stays a thin list of
groups. Every command takes ``--config PATH``; the long-running ones share the engine's options
(segments, resume, rate, dry run, JSON summary). Output names tables, keys and counts, never an
item value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import DynasealError
from .engine import RunOptions, Summary, parse_segments

__all__ = ["add_commands"]


def _scan_options(f: Any) -> Any:
    """The options of read-only scans (census, audit)."""
    options = [
        click.option("--segments", "total_segments", type=int, default=4, show_default=True,
                     metavar="T", help="scan in T parallel segments"),
        click.option("--page-size", type=int, default=100, show_default=True,
                     help="items per scan page"),
        click.option("--progress/--no-progress", default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _scan_run_options(opts: dict[str, Any]) -> RunOptions:
    return RunOptions(total_segments=opts["total_segments"], page_size=opts["page_size"],
                      checkpoints=False, progress=opts["progress"] is not False)


def _engine_options(f: Any) -> Any:
    options = [
        click.option("--segments", "--total-segments", "total_segments", type=int, default=4,
                     show_default=True, metavar="T",
                     help="split the scan into T segments (the same T on every host)"),
        click.option("--segment", "segment", default=None, metavar="I[-J]",
                     help="run only segment I, or I to J (default: all T here)"),
        click.option("--resume", is_flag=True,
                     help="continue from the job's checkpoints (none: from the start)"),
        click.option("--rate", type=float, default=None, metavar="N",
                     help="at most N writes per second from this process"),
        click.option("--dry-run", is_flag=True, help="count what would be done; write nothing"),
        click.option("--page-size", type=int, default=100, show_default=True,
                     help="items per scan page (a checkpoint is saved after each page)"),
        click.option("--job-id", default=None, metavar="ID",
                     help="checkpoint name (default: COMMAND:TABLE)"),
        click.option("--checkpoint-table", default="dynaseal-ops-checkpoints",
                     show_default=True, help="DynamoDB table holding the checkpoints"),
        click.option("--json", "as_json", is_flag=True, help="print the summary as JSON"),
        click.option("--progress/--no-progress", default=None,
                     help="progress bar on stderr (default: when stderr is a terminal)"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run_options(opts: dict[str, Any], job_id: str | None = None) -> RunOptions:
    total = opts["total_segments"]
    return RunOptions(
        total_segments=total,
        segments=parse_segments(opts["segment"], total),
        resume=opts["resume"],
        rate=opts["rate"],
        dry_run=opts["dry_run"],
        page_size=opts["page_size"],
        job_id=opts["job_id"] or job_id,
        checkpoint_table=opts["checkpoint_table"],
        progress=opts["progress"] is not False,
    )


def _report(summary: Summary, as_json: bool, written: str = "resealed") -> int:
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(summary.text(written))
    if summary.error:
        click.echo(f"dynaseal: error: {summary.error}", err=True)
        return 2
    return 1 if summary.failures else 0


def _exit_2_on_error(f: Callable[..., int]) -> Callable[..., int]:
    """Errors (configuration, AWS) exit with status 2, so 1 keeps meaning "findings" or
    "items failed" for scripts and CI gates."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            return f(*args, **kwargs)
        except DynasealError as e:
            click.echo(f"dynaseal: error: {e}", err=True)
        except (BotoCoreError, ClientError) as e:
            click.echo(f"dynaseal: error: AWS request failed: {e}", err=True)
        except OSError as e:  # a file that cannot be read or written: an error, not "refused"
            where = f"{e.filename}: " if e.filename else ""
            click.echo(f"dynaseal: error: {where}{e.strerror or e}", err=True)
        return 2

    return wrapper


def add_commands(cli: click.Group, keys: click.Group,
                 config_option: Callable[[Any], Any]) -> None:
    """Add the operations commands to the top-level group and the ``keys`` group."""

    @cli.command("reencrypt", help="Reseal every item not under the primary key (online, "
                 "resumable). Exit 0 done, 1 some items failed verification, 2 stopped by "
                 "an error.")
    @click.argument("table")
    @config_option
    @_engine_options
    @_exit_2_on_error
    def reencrypt(table: str, config_path: str | None, as_json: bool, **opts: Any) -> int:
        from ..config import Config
        from .engine import run_job
        from .reencrypt import ReencryptJob

        sealed = Config.load(config_path).sealed_table(table)
        summary = run_job(sealed, ReencryptJob(sealed), _run_options(opts))
        return _report(summary, as_json)

    @cli.command("migrate", help="Seal, in place and online, the items of a table written "
                 "in plaintext, by the legacy dynamodb-encryption-sdk, or with Fernet-encrypted "
                 "fields (resumable). Exit 0 done, 1 some items could not be read, 2 stopped "
                 "by an error.")
    @click.argument("table")
    @click.option("--from", "source", required=True,
                  type=click.Choice(["plaintext", "ddbec", "fernet"]),
                  help="what the items are now")
    @click.option("--fernet-key-env", "fernet_key_env", multiple=True, metavar="VAR",
                  help="--from fernet: environment variable holding a Fernet key (repeat "
                  "for MultiFernet keys); keys are never taken from the command line")
    @click.option("--rename", "renames", multiple=True, metavar="OLD=NEW",
                  help="--from fernet: store the decrypted OLD attribute as NEW (default: "
                  "drop an _enc suffix)")
    @click.option("--fernet-max-age", type=int, default=None, metavar="SECONDS",
                  help="--from fernet: tokens older than this fail (listed by key)")
    @config_option
    @_engine_options
    @_exit_2_on_error
    def migrate(table: str, source: str, fernet_key_env: tuple[str, ...],
                renames: tuple[str, ...], fernet_max_age: int | None,
                config_path: str | None, as_json: bool, **opts: Any) -> int:
        from ..config import Config
        from .engine import run_job
        from .migrate import MigrateJob

        overrides: dict[str, Any] = {}
        if source != "fernet" and (fernet_key_env or renames or fernet_max_age):
            raise DynasealError("--fernet-key-env, --rename and --fernet-max-age go with "
                                "--from fernet")
        if fernet_key_env:
            overrides["key_env"] = list(fernet_key_env)
        if renames:
            pairs = [r.split("=", 1) for r in renames]
            if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
                raise DynasealError("--rename: expected OLD=NEW")
            overrides["rename"] = dict(pairs)
        if fernet_max_age is not None:
            overrides["max_age"] = fernet_max_age
        config = Config.load(config_path)
        sealed = config.sealed_table(table)
        job = MigrateJob(sealed, config.migration_reader(table, source, overrides))
        summary = run_job(sealed, job, _run_options(opts))
        return _report(summary, as_json, written="sealed")

    @keys.command("census", help="Count the items of a configured table per key (headers "
                  "only; --check-indexes also opens each item to check its blind indexes).")
    @click.argument("table")
    @config_option
    @click.option("--check-indexes", is_flag=True,
                  help="open every item and count current and stale blind-index values")
    @click.option("--json", "as_json", is_flag=True, help="print the census as JSON")
    @_scan_options
    @_exit_2_on_error
    def census(table: str, config_path: str | None, check_indexes: bool, as_json: bool,
               **opts: Any) -> int:
        from ..config import Config
        from .census import take_census

        sealed = Config.load(config_path).sealed_table(table)
        result, summary = take_census(sealed, _scan_run_options(opts), check_indexes)
        if summary.error:
            raise DynasealError(summary.error)
        click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.text())
        return 0

    @keys.command("retire", help="Retire a key no item of any configured table depends on: "
                  "removed from its key file, or a KMS key of [[keyring.others]] marked "
                  "retired = true in the config. Exit 0 retired (or already), 1 refused "
                  "(items remain), 2 error (a primary key, a key the config does not name).")
    @click.argument("key_id")
    @config_option
    @_scan_options
    @_exit_2_on_error
    def retire(key_id: str, config_path: str | None, **opts: Any) -> int:
        from ..config import Config
        from .retire import retire_key

        result = retire_key(Config.load(config_path), key_id, _scan_run_options(opts))
        for line in result.lines:
            click.echo(line, err=result.status != 0)
        return result.status

    @cli.command("audit", help="Report sensitive values in the clear, items that fail "
                 "verification, the key census, table settings and configuration problems. "
                 "Exit 0 clean, 1 findings, 2 the audit could not run.")
    @click.argument("table")
    @config_option
    @click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]),
                  default="text", show_default=True)
    @click.option("--output", "-o", default=None, metavar="FILE",
                  help="write the report here instead of stdout")
    @click.option("--strict", is_flag=True,
                  help="weak table settings count as findings, not warnings")
    @_scan_options
    @_exit_2_on_error
    def audit(table: str, config_path: str | None, fmt: str, output: str | None, strict: bool,
              **opts: Any) -> int:
        from ..config import Config
        from .audit import audit_table

        config = Config.load(config_path)
        report = audit_table(config, table, _scan_run_options(opts), strict=strict)
        if fmt == "json":
            text = json.dumps(report.as_dict(), indent=2) + "\n"
        elif fmt == "html":
            from .audit_html import render_html

            text = render_html(report)
        else:
            text = report.text() + "\n"
        if output:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
        else:
            click.echo(text, nl=False)
        return report.exit_status
