"""Operations on live tables: re-encryption, migration, key census and retirement, audit.

Every job runs on one engine (:mod:`dynaseal.ops.engine`): a parallel, checkpointed,
rate-limited scan with conditional writes. See docs/OPERATIONS.md.
"""

from .checkpoints import DEFAULT_TABLE as CHECKPOINT_TABLE
from .checkpoints import Checkpoint, CheckpointStore
from .engine import Decision, Job, RunOptions, Summary, parse_segments, run_job
from .reencrypt import ReencryptJob

__all__ = [
    "CHECKPOINT_TABLE",
    "Checkpoint",
    "CheckpointStore",
    "Decision",
    "Job",
    "ReencryptJob",
    "RunOptions",
    "Summary",
    "parse_segments",
    "run_job",
]
