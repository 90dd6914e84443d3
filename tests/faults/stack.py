"""The live stack the fault suite runs: `infra.stack.Stack` (what `genloom up` runs) with the bundled
broker, a redis-server, the streams process, a text worker (SmolLM2), image, speech and video
workers (their tiny models) and the gateway, plus the faults each scenario injects."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from rich.console import Console

from gateway.auth import generate_key
from infra.cli.prepare import prepare
from infra.procs import free_port, wait_for_port
from infra.settings import StorageSettings
from infra.stack import Component, Stack
from schemas.enums import Modality
from tests.conftest import FAST_STREAMS_ENV

#: the one tenant of the suite
TENANT = "t-faults"
WORKERS = (Modality.TEXT, Modality.IMAGE, Modality.SPEECH, Modality.VIDEO)


class FaultStack:
    """Start with `start()`, stop with `stop()`; each fault method blocks until the fault is in place."""

    def __init__(self, folder: Path) -> None:
        self.api_key = generate_key()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            "GENLOOM_API_KEYS": f"{self.api_key}:{TENANT}",
            "GENLOOM_REQUEST_SIGNING_KEY": generate_key(),
            "GENLOOM_HOME": str(folder / "home"),
            "GENLOOM_BLOB_DIR": str(folder / "blobs"),
            "GENLOOM_GATEWAY_SSE_KEEPALIVE_S": "1",
            "GENLOOM_GATEWAY_PUBLISH_TIMEOUT_S": "5",
            "GENLOOM_GATEWAY_REDIS_SOCKET_TIMEOUT_S": "2",
            "GENLOOM_TEXT_MAX_BATCH_SIZE": "8",
            "GENLOOM_WORKER_TORCH_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **FAST_STREAMS_ENV,
        }
        self.stack = Stack(log_dir=folder / "logs", env=env)

    def start(self, timeout: float = 300.0) -> FaultStack:
        prepare([Modality.TEXT, Modality.IMAGE, Modality.VIDEO], StorageSettings().cache_dir, Console(quiet=True))
        self.stack.start_backends()
        self.stack.add_core()  # the stream processors and, moderation being on, the gate
        for modality in WORKERS:
            self.stack.add(f"worker-{modality.value}", ["workers", modality.value])
        self.stack.add("gateway", ["gateway", "--host", "127.0.0.1", "--port", str(self.port)], port=self.port)
        self.stack.start(timeout)
        for component in self.stack.components:
            self.wait_joined(component, 0, timeout)
        return self

    def stop(self) -> None:
        self.stack.stop()

    # -- the components -----------------------------------------------------------------------------

    def component(self, name: str) -> Component:
        return next(c for c in self.stack.components if c.name == name)

    def log(self, name: str) -> Path:
        return self.stack.log_dir / f"{name}.log"

    def wait_joined(self, component: Component, offset: int, timeout: float) -> None:
        """A worker or the streams process has joined its consumer group (its log says it was assigned
        partitions after `offset`); the gateway answers on its port."""
        if component.port is not None:
            wait_for_port(component.port, timeout, component.proc)
            return
        deadline = time.monotonic() + timeout
        log = self.log(component.name)
        while b"assigned" not in log.read_bytes()[offset:].lower():
            if not component.running:
                raise RuntimeError(f"{component.name} exited with {component.proc.returncode}: see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{component.name} did not join its group within {timeout:.0f}s: see {log}")
            time.sleep(0.1)  # poll interval

    def kill(self, name: str) -> None:
        """SIGKILL the component's process, then what is left of its process group (an engine child)."""
        component = self.component(name)
        proc = component.proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send `sig` to the component's process (SIGSTOP freezes it, SIGCONT thaws it)."""
        self.component(name).proc.send_signal(sig)

    def relaunch(self, name: str, wait: bool = False, timeout: float = 300.0) -> None:
        """Start the component again, as `genloom up` does with one that exited."""
        component = self.component(name)
        offset = self.log(name).stat().st_size if self.log(name).exists() else 0
        self.stack.relaunch(component)
        if wait:
            self.wait_joined(component, offset, timeout)

    # -- the backends -------------------------------------------------------------------------------

    def signal_broker(self, sig: signal.Signals) -> None:
        os.kill(self.stack.broker.pid, sig)

    def kill_broker(self) -> None:
        """SIGKILL the bundled broker: everything it held (memory only) is gone."""
        self._crash(self.stack.broker)

    def start_broker(self) -> None:
        """What `genloom up` does when its broker exited: a new one on the same port, every catalogue topic
        created again, and the jobs the dead one held ended (`Stack.revive_backends`)."""
        for line in self.stack.revive_backends():
            print(line)

    def kill_redis(self) -> None:
        self._crash(self.stack.redis)

    @staticmethod
    def _crash(server) -> None:
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not server.crashed and time.monotonic() < deadline:
            time.sleep(0.02)

    def start_redis(self) -> None:
        """What `genloom up` does when its redis-server exited: a new, empty one on the same port."""
        self.stack.revive_backends()

