"""Helpers for the KMS / Secrets Manager keyring tests: call counting and error injection.

Calls are counted with botocore's own event hooks on a real client talking HTTP to moto's
standalone server: ``before-call`` fires once per API call, ``before-send`` once per HTTP
attempt (so retries show). Errors moto cannot produce (key states, key policies, throttling) are
injected by a ``before-send`` handler that answers with KMS's real error response (status 400,
``{"__type": code, "message": ...}``), which botocore parses, retries and raises exactly as it
would the real service's.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse


class CallCounter:
    """Counts API calls (``calls``) and HTTP attempts (``attempts``) by operation name."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-call.*.*", self._on_call)
        client.meta.events.register("before-send.*.*", self._on_send)

    def _on_call(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.calls[model.name] += 1

    def _on_send(self, request: Any, **_: Any) -> None:
        name = request.context.get("operation_name") if hasattr(request, "context") else None
        with self._lock:
            self.attempts[str(name)] += 1

    def __getitem__(self, operation: str) -> int:
        return self.calls[operation]

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_response(code: str, message: str = "injected", status: int = 400) -> AWSResponse:
    body = json.dumps({"__type": code, "message": message}).encode()
    headers = {"x-amzn-RequestId": "injected-0000", "Content-Type": "application/x-amz-json-1.1",
               "Content-Length": str(len(body))}
    return AWSResponse("https://kms.invalid/", status, headers, _Raw(body))


class Injector:
    """While ``code`` is set, every HTTP attempt of ``operations`` gets that error instead of
    reaching moto. Counts the attempts it answered."""

    def __init__(self, client: Any, operations: tuple[str, ...] = ("GenerateDataKey", "Decrypt",
                                                                    "Encrypt")) -> None:
        self.code: str | None = None
        self.answered = 0
        self.operations = operations
        client.meta.events.register("before-send.kms.*", self._on_send)

    def _on_send(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        if self.code is None or target.rsplit(".", 1)[-1] not in self.operations:
            return None
        self.answered += 1
        return error_response(self.code)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
