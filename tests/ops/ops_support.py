"""Support for the operations tests: a request-buffering relay, configs, seeding, job runs.

``import ops_support`` works from tests/ops/ (pytest's prepend import mode puts this
directory on ``sys.path``).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from support import to_toml

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length",
               "proxy-connection", "upgrade", "te", "trailer"}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        upstream: http.client.HTTPConnection | None = None
        try:
            while True:
                request = self._read_request()
                if request is None:
                    return  # the client went away: nothing half-sent reaches dynalite
                method, path, headers, body = request
                if upstream is None:
                    upstream = http.client.HTTPConnection(*self.server.upstream, timeout=60)
                upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        upstream.putheader(name, value)
                upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body)
                response = upstream.getresponse()
                data = response.read()
                out = [f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")]
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        out.append(f"{name}: {value}\r\n".encode("latin-1"))
                out.append(f"Content-Length: {len(data)}\r\n\r\n".encode("latin-1"))
                self.wfile.write(b"".join(out) + data)
                self.wfile.flush()
        except (OSError, http.client.HTTPException):
            return
        finally:
            if upstream is not None:
                upstream.close()

    def _read_request(self) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
        line = self.rfile.readline(65536)
        if not line or not line.endswith(b"\r\n"):
            return None
        method, path, _version = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        length = 0
        while True:
            raw = self.rfile.readline(65536)
            if not raw.endswith(b"\r\n"):
                return None
            if raw == b"\r\n":
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
            if name.strip().lower() == "content-length":
                length = int(value)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            return None
        return method, path, headers, body


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    upstream: tuple[str, int]


class Relay:
    """A loopback HTTP relay that forwards only whole requests to dynalite.

    dynalite crashes when a client dies between a request's headers and its body
    (dynalite#183); a job killed with SIGKILL does exactly that, so the killed job talks to
    dynalite through this relay, which buffers each request completely before forwarding it.
    """

    def __init__(self, upstream_url: str) -> None:
        host, port = upstream_url.removeprefix("http://").rsplit(":", 1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = (host, int(port))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def write_config(path: Path, endpoint: str, tables: dict[str, dict[str, Any]],
                 keyring_path: str = "keys.json") -> Path:
    """A dynaseal.toml with a local keyring beside it."""
    doc = {"keyring": {"type": "local", "path": keyring_path},
           "dynamodb": {"region": "us-east-1", "endpoint_url": endpoint},
           "tables": tables}
    path.write_text(to_toml(doc), encoding="utf-8")
    return path


def job_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dynaseal.cli", *args]


def kill_repeatedly(args: tuple[str, ...], times: int, low: float, high: float) -> int:
    """Start the job, SIGKILL it after a random ``low``..``high`` seconds, again and again,
    ``times`` times; returns how many kills landed (fewer if a run finished first)."""
    rng = random.Random()
    kills = 0
    while kills < times:
        proc = subprocess.Popen(job_command(*args), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(low, high))
        if proc.poll() is not None:
            return kills  # finished before it could be killed
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    return kills


def run_job(*args: str, timeout: float = 300) -> tuple[int, dict[str, Any] | None, str]:
    """Run a dynaseal command to completion; (exit status, --json summary or None, stderr)."""
    proc = subprocess.run(job_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ), check=False)
    try:
        summary = json.loads(proc.stdout) if "--json" in args else None
    except ValueError:
        summary = None
    return proc.returncode, summary, proc.stderr

