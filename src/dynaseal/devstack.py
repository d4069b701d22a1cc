"""The embedded local stack for development, demos and tests: dynalite on 127.0.0.1.

dynalite (an npm package, LevelDB on disk) is installed by the project's ``npm ci``; this module
finds it, starts it on a loopback port with a data directory, waits until it answers DynamoDB
requests and stops it cleanly. Nothing here is used in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from .errors import DynasealError

__all__ = ["LocalDynamoDB", "LocalMoto", "find_dynalite", "free_port"]

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def find_dynalite(start: Path | None = None) -> Path:
    """``$DYNALITE_BIN``; else the dynalite that dynaseal's own checkout installed; else
    ``node_modules/.bin/dynalite`` in ``start`` (default: the working directory) or a parent.
    dynaseal's own copy comes first, so a ``node_modules`` planted above the working
    directory is not run in its place."""
    env = os.environ.get("DYNALITE_BIN")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    roots = [Path(__file__).resolve().parents[2], here, *here.parents]
    for root in roots:
        candidate = root / "node_modules" / ".bin" / "dynalite"
        if candidate.exists():
            return candidate
    raise DynasealError(
        "dynalite is not installed: run 'npm ci' in the dynaseal checkout (needs Node.js >= 20 "
        "with npm), or set DYNALITE_BIN"
    )


class _LocalServer:
    """A server process on a loopback port, started in its own process group and waited for
    until it answers; a context manager that starts and stops it. Subclasses say what to run
    and how to tell that it answers."""

    name = "server"

    def __init__(self, port: int | None, log_path: str | os.PathLike[str] | None) -> None:
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _answers(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> Self:
        args = self._command()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                          start_new_session=True, env=self._env())
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DynasealError(f"{self.name} exited at start (code "
                                    f"{self._proc.returncode}); is port {self.port} free?")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise DynasealError(f"{self.name} did not answer on {self.endpoint_url} in "
                            f"{timeout:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        _terminate(proc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class LocalDynamoDB(_LocalServer):
    """A dynalite server process; a context manager that starts and stops it."""

    name = "dynalite"

    def __init__(self, data_dir: str | os.PathLike[str] | None, port: int | None = None,
                 *, log_path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(port, log_path)
        self.data_dir = Path(data_dir) if data_dir is not None else None

    def _command(self) -> list[str]:
        if shutil.which("node") is None:
            raise DynasealError("Node.js is required for the local DynamoDB (dynalite)")
        args = [str(find_dynalite()), "--host", HOST, "--port", str(self.port),
                "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--path", str(self.data_dir)]
        return args

    def _answers(self) -> bool:
        request = urllib.request.Request(  # noqa: S310 - fixed loopback URL
            self.endpoint_url,
            data=b"{}",
            headers={"X-Amz-Target": "DynamoDB_20120810.ListTables",
                     "Content-Type": "application/x-amz-json-1.0"},
        )
        try:
            with urllib.request.urlopen(request, timeout=1):  # noqa: S310
                return True
        except urllib.error.HTTPError:
            return True  # it answered (unsigned requests are refused), so it is up
        except OSError:
            return False


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM the server's process group, SIGKILL if it is still there 10 s later."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class LocalMoto(_LocalServer):
    """moto's standalone server (``moto_server``, from the ``moto[server]`` dev extra) on a
    loopback port: the KMS and Secrets Manager of the tests and benchmarks, over real HTTP.
    A context manager that starts and stops it.

    ``account_id`` (``MOTO_ACCOUNT_ID``) replaces moto's default ``123456789012``, whose digits
    look like the test data other suites plant and then search the logs for.
    """

    name = "moto_server"

    def __init__(self, port: int | None = None, *,
                 log_path: str | os.PathLike[str] | None = None,
                 account_id: str = "731942086421") -> None:
        super().__init__(port, log_path)
        self.account_id = account_id

    def start(self, timeout: float = 30.0) -> Self:
        return super().start(timeout)

    def _command(self) -> list[str]:
        exe = Path(sys.executable).parent / "moto_server"
        if not exe.exists():
            raise DynasealError("moto_server is not installed: pip install 'moto[server]'")
        return [str(exe), "-p", str(self.port), "-H", HOST]

    def _env(self) -> dict[str, str] | None:
        return {**os.environ, "MOTO_ACCOUNT_ID": self.account_id}

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint_url + "/moto-api/",  # noqa: S310
                                        timeout=1):
                return True
        except OSError:
            return False
