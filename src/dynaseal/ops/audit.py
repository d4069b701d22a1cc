"""``dynaseal audit TABLE``: what an attacker with read access to the table would see.

One scan (the ops engine, read-only) collects:

- **sensitive values in the clear**: every string or number stored outside a seal (key,
  signed and plain attributes, and every attribute of an unsealed item) is run through
  :mod:`~dynaseal.ops.detectors`; findings are grouped by attribute and kind, with a few
  example item keys and masked values (never a value);
- **verification failures**: items that do not open (tampered, unknown key, not sealed at all
  in a table that is not being migrated), by key;
- **the key census** (:mod:`~dynaseal.ops.census`);

and, outside the scan, the table's own settings (server-side encryption, point-in-time
recovery, deletion protection: a warning when weak, "unknown" when the endpoint does not say,
never a finding unless ``--strict``) and configuration problems (plaintext endpoint, key file
readable by others).

Exit status: 0 clean, 1 findings, 2 the audit could not run.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from ..connection import is_loopback
from ..errors import DynasealError, IntegrityError
from ..keyrings.interface import DataKey, Keyring, WrappedKey
from ..schema import HEADER_ATTRIBUTE
from ..sealer import describe_key
from ..table import SealedTable
from .census import Census, key_label
from .detectors import detect, mask, walk_strings
from .engine import SKIP, Decision, RunOptions, run_job
from .reencrypt import header_references

__all__ = ["AuditReport", "audit_table"]

MAX_EXAMPLES = 5
"""Example item keys kept per (attribute, kind) finding: flat memory on any table size."""
MAX_FAILURES = 100

FERNET_NOTE = "field-encrypted outside dynaseal, migrate with `--from fernet`"


@dataclass
class SensitiveFinding:
    attribute: str
    kind: str
    count: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attribute": self.attribute, "kind": self.kind,
                               "count": self.count, "examples": self.examples}
        if self.kind == "fernet-token":
            out["note"] = FERNET_NOTE
        return out


@dataclass
class AuditReport:
    """Everything the audit found; rendered as text, JSON (:meth:`as_dict`) or HTML."""

    table: str
    config: str
    strict: bool = False
    census: Census | None = None
    sensitive: dict[tuple[str, str], SensitiveFinding] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    failure_count: int = 0
    not_migrated: int = 0
    configuration: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    verified: bool = True

    @property
    def finding_count(self) -> int:
        n = sum(f.count for f in self.sensitive.values()) + self.failure_count
        n += len(self.configuration)
        return n + (len(self.warnings) if self.strict else 0)

    @property
    def exit_status(self) -> int:
        return 1 if self.finding_count else 0

    def sensitive_sorted(self) -> list[SensitiveFinding]:
        return sorted(self.sensitive.values(), key=lambda f: (f.attribute, f.kind))

    def findings_per_attribute(self) -> dict[str, int]:
        per: Counter[str] = Counter()
        for f in self.sensitive.values():
            per[f.attribute] += f.count
        return dict(sorted(per.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "config": self.config,
            "status": "findings" if self.finding_count else "clean",
            "finding_count": self.finding_count,
            "findings": {
                "sensitive_values": [f.as_dict() for f in self.sensitive_sorted()],
                "verification_failures": self.failures,
                "verification_failure_count": self.failure_count,
                "configuration": self.configuration,
                **({"table_settings": self.warnings} if self.strict else {}),
            },
            "warnings": [] if self.strict else self.warnings,
            "verified": self.verified,
            "not_migrated": self.not_migrated,
            "settings": self.settings,
            "census": self.census.as_dict() if self.census else None,
        }

    def text(self) -> str:
        lines = [f"audit of table {self.table} ({self.config}): "
                 + (f"{self.finding_count} findings" if self.finding_count else "clean")]
        if self.census:
            lines += ["", "key census:", *("  " + line for line in
                                           self.census.text().splitlines()[1:]),
                      f"  items: {self.census.items}"]
        lines += ["", "sensitive values in the clear:"]
        for f in self.sensitive_sorted():
            note = f" ({FERNET_NOTE})" if f.kind == "fernet-token" else ""
            lines.append(f"  FINDING {f.attribute}: {f.count} {f.kind}{note}")
            for ex in f.examples:
                lines.append(f"    key {ex['key']}: {ex['masked']}")
        if not self.sensitive:
            lines.append("  none")
        lines += ["", "verification:"]
        if not self.verified:
            lines.append("  not verified: the keyring could not be loaded")
        for fail in self.failures:
            lines.append(f"  FINDING key {fail['key']}: {fail['reason']}")
        if self.failure_count > len(self.failures):
            lines.append(f"  ... and {self.failure_count - len(self.failures)} more")
        if self.verified and not self.failure_count:
            lines.append("  every sealed item verified")
        if self.not_migrated:
            lines.append(f"  {self.not_migrated} items not migrated yet (migrating_from)")
        lines += ["", "table settings:"]
        for name, value in self.settings.items():
            lines.append(f"  {name}: {value}")
        for w in self.warnings:
            lines.append(f"  {'FINDING' if self.strict else 'WARNING'} {w}")
        lines += ["", "configuration:"]
        for problem in self.configuration:
            lines.append(f"  FINDING {problem}")
        if not self.configuration:
            lines.append("  no problems")
        return "\n".join(lines)


class _NoKeys(Keyring):
    """Stands in when the keyring cannot be loaded: the audit still reports the rest."""

    def new_data_key(self, context: Mapping[str, str]) -> DataKey:
        raise DynasealError("audit: no keyring")

    def decrypt_data_key(self, wrapped: Sequence[WrappedKey], context: Mapping[str, str]
                         ) -> bytes | None:
        return None

    def index_key(self, table: str, attribute: str) -> bytes:
        raise DynasealError("audit: no keyring")


class AuditJob:
    """Examines items for :func:`~dynaseal.ops.engine.run_job`; writes nothing."""

    name = "audit"

    def __init__(self, sealed: SealedTable, report: AuditReport, verify: bool) -> None:
        self.sealed = sealed
        self.report = report
        self.verify = verify
        self.migrating = sealed.migrating_from is not None
        report.census = Census(sealed.name)
        self._lock = threading.Lock()

    def examine(self, stored: dict[str, Any]) -> Decision:
        hits: list[tuple[str, str, str]] = []
        for name, value in stored.items():
            if name == HEADER_ATTRIBUTE:
                continue
            top = name
            named = detect(name)
            if named:  # an attribute named by a sensitive value: a finding, never printed
                top = "<attribute name>"
                hits += [(top, kind, name) for kind in named]
            for path, text in walk_strings(value, top):
                for kind in detect(text):
                    hits.append((path, kind, text))
        try:
            refs: frozenset[tuple[int, str]] | None = header_references(stored)[1]
        except (ValueError, UnicodeDecodeError, IndexError):
            refs = None
        failure: str | None = None
        if self.verify:
            try:
                if refs is None and HEADER_ATTRIBUTE not in stored and self.migrating:
                    assert self.sealed.migrating_from is not None
                    self.sealed.migrating_from.read(stored).clear()
                else:
                    self.sealed.sealer.open(stored).clear()
            except IntegrityError as e:
                failure = e.reason
        key = self._shown_key(stored, hits)
        with self._lock:
            self._count(stored, refs, key, hits, failure)
        return SKIP

    def _shown_key(self, stored: Mapping[str, Any], hits: list[tuple[str, str, str]]) -> str:
        """The item's key as the report shows it: a key attribute whose value is itself a
        finding (a table keyed by e-mail address) is masked there too, or the report would
        print beside each example the very value it masks."""
        schema = self.sealed.schema
        flagged = {path: text for path, _, text in hits if path in schema.key_names}
        if not flagged:
            return describe_key(schema, stored)
        return describe_key(schema, {name: mask(flagged[name]) if name in flagged
                                     else stored.get(name) for name in schema.key_names})

    def _count(self, stored: Mapping[str, Any], refs: frozenset[tuple[int, str]] | None,
               key: str, hits: list[tuple[str, str, str]], failure: str | None) -> None:
        report = self.report
        census = report.census
        assert census is not None
        census.items += 1
        if refs is not None:
            for provider, key_id in refs:
                census.keys[key_label(provider, key_id)] += 1
        elif HEADER_ATTRIBUTE in stored:
            census.malformed += 1
        else:
            census.unsealed += 1
            if self.migrating and failure is None:
                report.not_migrated += 1
        for path, kind, text in hits:
            f = report.sensitive.get((path, kind))
            if f is None:
                f = report.sensitive[(path, kind)] = SensitiveFinding(path, kind)
            f.count += 1
            if len(f.examples) < MAX_EXAMPLES:
                f.examples.append({"key": key, "masked": mask(text)})
        if failure is not None:
            report.failure_count += 1
            if len(report.failures) < MAX_FAILURES:
                report.failures.append({"key": key, "reason": failure})


def table_settings(client: Any, table_name: str) -> tuple[dict[str, str], list[str]]:
    """Server-side encryption, point-in-time recovery and deletion protection as the endpoint
    reports them ("unknown" where it does not), and a warning for each weak one."""
    settings = {"server_side_encryption": "unknown", "point_in_time_recovery": "unknown",
                "deletion_protection": "unknown"}
    warnings: list[str] = []
    desc = client.describe_table(TableName=table_name)["Table"]
    sse = desc.get("SSEDescription")
    if sse:
        kind = sse.get("SSEType", "AES256")
        settings["server_side_encryption"] = f"{kind} ({sse.get('Status', 'unknown')})"
        if kind != "KMS":
            warnings.append("server_side_encryption: an AWS owned key; a KMS key lets you "
                            "audit and revoke access to the table's storage")
    protection = desc.get("DeletionProtectionEnabled")
    if isinstance(protection, bool):
        settings["deletion_protection"] = "enabled" if protection else "disabled"
        if not protection:
            warnings.append("deletion_protection: disabled (one DeleteTable call loses the "
                            "table)")
    try:
        backups = client.describe_continuous_backups(TableName=table_name)
        pitr = (backups.get("ContinuousBackupsDescription", {})
                .get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus"))
    except (ClientError, BotoCoreError):
        pitr = None  # an endpoint without the API (dynalite): unknown, not a finding
    if isinstance(pitr, str):
        settings["point_in_time_recovery"] = pitr.lower()
        if pitr != "ENABLED":
            warnings.append("point_in_time_recovery: disabled (no restore to a point "
                            "before a bad write)")
    return settings, warnings


def configuration_problems(config: Any) -> tuple[list[str], list[str]]:
    """(findings, warnings) about the configuration itself."""
    findings: list[str] = []
    warnings: list[str] = []
    endpoint = config.dynamodb.endpoint_url
    if endpoint and urlsplit(endpoint).scheme == "http":
        host = urlsplit(endpoint).hostname or ""
        if is_loopback(host):
            warnings.append(f"endpoint: plaintext HTTP to {host} (local development only)")
        else:
            findings.append(f"endpoint: plaintext HTTP to {host}")
    try:
        path: Path | None = config.keyring_path
    except DynasealError:
        path = None  # not a local keyring: no key file
    if path is not None:
        try:
            st = os.stat(path)
        except OSError as e:
            findings.append(f"key file {path}: cannot be read ({e.strerror})")
        else:
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                findings.append(f"key file {path}: readable or writable by group or others "
                                f"(mode {stat.S_IMODE(st.st_mode):04o}; run 'chmod 600')")
            if st.st_uid not in (os.geteuid(), 0):
                findings.append(f"key file {path}: owned by another user (uid {st.st_uid})")
    return findings, warnings


def audit_table(config: Any, name: str, options: RunOptions | None = None,
                strict: bool = False) -> AuditReport:
    """Audit the table configured as ``[tables.<name>]``."""
    report = AuditReport(table=config.settings(name).table_name, config=str(config.path),
                         strict=strict)
    report.configuration, config_warnings = configuration_problems(config)
    try:
        sealed = config.sealed_table(name)
    except DynasealError as e:
        if not report.configuration:
            report.configuration.append(f"keyring: {e}")
        t = config.settings(name)
        sealed = SealedTable(config.resource().Table(t.table_name), schema=t.schema,
                             keyring=_NoKeys())
        report.verified = False
    report.settings, report.warnings = table_settings(sealed.table.meta.client, sealed.name)
    report.warnings += config_warnings
    opts = options or RunOptions()
    opts.checkpoints = False
    summary = run_job(sealed, AuditJob(sealed, report, verify=report.verified), opts)
    if summary.error:
        raise DynasealError(summary.error)
    return report
