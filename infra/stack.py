"""The local stack: broker, Redis and genloom's processes on loopback, stopped by PID.

`genloom up` and the end-to-end tests both run it, so what the tests exercise is what users run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.kafka.broker import LocalBroker
from infra.kafka.clients import ensure_topics
from infra.kafka.topics import catalogue
from infra.procs import log_file, stop_process, wait_for_port
from infra.redis.server import LocalRedis


@dataclass
class Component:
    """One process of the stack."""

    name: str
    argv: list[str]
    port: int | None = None  # a port it listens on, for readiness
    proc: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Stack:
    bootstrap: str | None = None
    redis_url: str | None = None
    log_dir: Path = field(default_factory=lambda: Path.home() / ".genloom" / "logs")
    env: dict[str, str] = field(default_factory=dict)
    partitions: int = 8
    job_partitions: int = 4
    broker: LocalBroker | None = None
    redis: LocalRedis | None = None
    components: list[Component] = field(default_factory=list)

    def start_backends(self) -> None:
        """Start the bundled broker and a redis-server unless external ones are configured."""
        if not self.bootstrap:
            self.broker = LocalBroker(log=log_file(self.log_dir, "broker")).start()
            self.bootstrap = self.broker.bootstrap
        if not self.redis_url:
            self.redis = LocalRedis(log=log_file(self.log_dir, "redis")).start()
            self.redis_url = self.redis.url
        asyncio.run(ensure_topics(self.bootstrap, catalogue(self.partitions, self.job_partitions)))

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["GENLOOM_KAFKA_BOOTSTRAP"] = self.bootstrap or ""
        env["GENLOOM_REDIS_URL"] = self.redis_url or ""
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def add(self, name: str, module_argv: list[str], port: int | None = None) -> Component:
        component = Component(name, [sys.executable, "-m", *module_argv], port)
        self.components.append(component)
        return component

    def launch(self, component: Component) -> None:
        component.proc = subprocess.Popen(
            component.argv,
            env=self.child_env(),
            stdout=log_file(self.log_dir, component.name),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self, ready_timeout: float = 120.0) -> None:
        for component in self.components:
            self.launch(component)
        deadline = time.monotonic() + ready_timeout
        for component in self.components:
            if component.port is not None:
                wait_for_port(component.port, max(1.0, deadline - time.monotonic()), component.proc)

    def stop(self) -> None:
        for component in reversed(self.components):
            if component.proc is not None:
                stop_process(component.proc, timeout=10)
        if self.redis is not None:
            self.redis.stop()
        if self.broker is not None:
            self.broker.stop()

    def dead(self) -> list[Component]:
        return [c for c in self.components if c.proc is not None and c.proc.poll() is not None]
