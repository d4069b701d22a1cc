"""Operations on live tables: re-encryption, migration, key census and retirement, audit.

Every job runs on one engine (:mod:`dynaseal.ops.engine`): a parallel, checkpointed,
rate-limited scan with conditional writes. See docs/OPERATIONS.md.
"""

from ..readers import DdbecReader, FernetReader, MigrationReader, PlaintextReader
from .audit import AuditReport, audit_table
from .census import Census, CensusJob, take_census
from .checkpoints import DEFAULT_TABLE as CHECKPOINT_TABLE
from .checkpoints import Checkpoint, CheckpointStore
from .engine import Decision, Job, RunOptions, Summary, parse_segments, run_job
from .migrate import MigrateJob
from .reencrypt import ReencryptJob
from .retire import Retirement, retire_key

__all__ = [
    "CHECKPOINT_TABLE",
    "AuditReport",
    "Census",
    "CensusJob",
    "Checkpoint",
    "CheckpointStore",
    "DdbecReader",
    "Decision",
    "FernetReader",
    "Job",
    "MigrateJob",
    "MigrationReader",
    "PlaintextReader",
    "ReencryptJob",
    "Retirement",
    "RunOptions",
    "Summary",
    "audit_table",
    "parse_segments",
    "retire_key",
    "run_job",
    "take_census",
]
