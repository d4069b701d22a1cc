"""Helpers of the Flask extension tests: ``from flask_support import ...``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import base_doc, to_toml


@dataclass(frozen=True)
class FlaskEnv:
    root: Path
    config_path: Path
    key_path: Path
    table_name: str


def write_config(root: Path, endpoint: str, table_name: str, **dynamodb: Any) -> Path:
    doc = base_doc(endpoint, table_name)
    doc["dynamodb"].update(dynamodb)
    path = root / "dynaseal.toml"
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


class ListHandler(logging.Handler):
    """Keeps every record it emits, and its formatted line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
