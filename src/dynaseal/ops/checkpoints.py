"""Per-segment checkpoints of an operations job, kept in a small DynamoDB table.

One item per (job, segment): the scan position to start from (the ``LastEvaluatedKey`` of the
last page whose every item was finished), whether the segment is done, the total number of
segments the job was split into, and which host wrote it last. The engine saves a position
only after every item of the page before it is finished, so a job killed at any instant
resumes at a page boundary and at worst re-examines one page per segment, which is harmless
because every job skips an item that is already in its target form.

The table lives beside the data (same endpoint and credentials), so any host that can run the
job can resume any segment of it: that is what spreads one job over several hosts.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..errors import DynasealError
from ..tables import _wait_active

__all__ = ["DEFAULT_TABLE", "Checkpoint", "CheckpointStore"]

DEFAULT_TABLE = "dynaseal-ops-checkpoints"

@dataclass(frozen=True)
class Checkpoint:
    """Where one segment of a job stands."""

    segment: int
    total: int
    start_key: dict[str, Any] | None
    """The ``ExclusiveStartKey`` to scan from; None: the start."""
    done: bool


class CheckpointStore:
    """Reads and writes the checkpoints of one job through a boto3 DynamoDB resource's client
    (thread-safe; it takes and returns resource-layer values)."""

    def __init__(self, client: Any, job: str, table_name: str = DEFAULT_TABLE) -> None:
        if not job:
            raise DynasealError("a job id must not be empty")
        self.client = client
        self.job = job
        self.table_name = table_name
        self.host = socket.gethostname()

    def ensure_table(self, timeout: float = 600.0) -> None:
        """Create the checkpoint table (on-demand capacity) unless it exists, then wait."""
        try:
            self.client.create_table(
                TableName=self.table_name,
                KeySchema=[{"AttributeName": "job", "KeyType": "HASH"},
                           {"AttributeName": "segment", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "job", "AttributeType": "S"},
                                      {"AttributeName": "segment", "AttributeType": "N"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
        _wait_active(self.client, self.table_name, timeout)

    def load(self, segment: int) -> Checkpoint | None:
        item = self.client.get_item(
            TableName=self.table_name, ConsistentRead=True,
            Key={"job": self.job, "segment": segment},
        ).get("Item")
        if item is None:
            return None
        start = item.get("start_key")
        return Checkpoint(
            segment=segment,
            total=int(item["total"]),
            start_key=dict(start) if start is not None else None,
            done=bool(item.get("done", False)),
        )

    def save(self, segment: int, total: int, start_key: Mapping[str, Any] | None,
             done: bool) -> None:
        item: dict[str, Any] = {
            "job": self.job,
            "segment": segment,
            "total": total,
            "done": done,
            "host": self.host,
            "updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if start_key is not None:
            item["start_key"] = dict(start_key)
        self.client.put_item(TableName=self.table_name, Item=item)

    def clear(self, segment: int) -> None:
        self.client.delete_item(TableName=self.table_name,
                                Key={"job": self.job, "segment": segment})
