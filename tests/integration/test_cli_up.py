"""`genloom up` as a user runs it: everything starts, SIGTERM stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from infra.procs import free_port

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (every child of this `up` inherits it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read().split(b"\0") and _alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _env_value(pid: int, name: str) -> str | None:
    with open(f"/proc/{pid}/environ", "rb") as f:
        for entry in f.read().split(b"\0"):
            if entry.startswith(name.encode() + b"="):
                return entry.split(b"=", 1)[1].decode()
    return None


def test_up_starts_the_stack_and_sigterm_leaves_nothing_running(tmp_path):
    port = free_port()
    env = dict(os.environ, COLUMNS="250", GENLOOM_HOME=str(tmp_path), GENLOOM_BLOB_DIR=str(tmp_path / "blobs"),
               GENLOOM_KAFKA_SESSION_TIMEOUT_MS="2000", GENLOOM_KAFKA_HEARTBEAT_INTERVAL_MS="500",
               GENLOOM_STREAMS_SESSION_TIMEOUT_S="2", GENLOOM_STREAMS_HEARTBEAT_S="0.5")
    env.pop("GENLOOM_KAFKA_BOOTSTRAP", None)
    env.pop("GENLOOM_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "infra.cli.main", "up", "--port", str(port), "--only", "speech",
                             "--only", "text"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output = ""
    try:
        deadline = time.monotonic() + 120
        while "stop with Ctrl-C" not in output and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            output += line
        assert "stop with Ctrl-C" in output, output
        assert re.search(r"kafka\s.*up.*bundled broker", output)
        assert re.search(r"worker-speech\s.*started", output)
        assert re.search(r"worker-text\s.*started", output)
        assert re.search(r"worker-image\s.*missing|worker-image", output) is None  # --only speech, text
        pids = [int(p) for p in re.findall(r"pid (\d+)", output)]
        assert len(pids) >= 3 and all(_alive(p) for p in pids)
        # every worker joins its consumer group (its log says which partitions it was assigned), none dies meanwhile
        logs = [tmp_path / "logs" / f"worker-{m}.log" for m in ("speech", "text")]
        deadline = time.monotonic() + 120
        while not all(log.exists() and "assigned" in log.read_text() for log in logs):
            assert all(_alive(p) for p in pids), "a component died right after start"
            assert time.monotonic() < deadline, "a worker never joined its consumer group"
            time.sleep(0.1)  # poll interval
        assert all(_alive(p) for p in pids), "a component died right after start"
        # `up` generated one request signing key for all its processes: the jobs below run signed
        roles = re.findall(r"(?:gateway|streams|worker-speech|worker-text)\s.*?pid (\d+)", output)
        keys = {_env_value(int(p), "GENLOOM_REQUEST_SIGNING_KEY") for p in roles}
        assert len(roles) == 4, output
        assert len(keys) == 1 and None not in keys and len(keys.pop()) >= 32
        # the main job, as a user runs it: submit through the gateway `up` started, with the key it saved
        submitted = subprocess.run([sys.executable, "-m", "infra.cli.main", "submit", "Hello there. Goodbye.",
                                    "-m", "speech"], env=env, capture_output=True, text=True, timeout=120)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert "audio chunk 1" in submitted.stdout and "completed" in submitted.stdout
        # text runs its engine in a child process of the worker; the /proc scan below covers it too
        submitted = subprocess.run([sys.executable, "-m", "infra.cli.main", "submit", "Say hi.", "--max-tokens", "4"],
                                   env=env, capture_output=True, text=True, timeout=120)
        assert submitted.returncode == 0 and "completed" in submitted.stdout, submitted.stdout + submitted.stderr
        worker_pid = int(re.search(r"worker-speech\s.*?pid (\d+)", output).group(1))
        os.kill(worker_pid, signal.SIGKILL)  # a crashed worker is restarted
        deadline = time.monotonic() + 30
        while "restarting" not in output and time.monotonic() < deadline:
            output += proc.stdout.readline()
        assert "worker-speech exited with -9; restarting" in output
        # so are the bundled broker (on its port, with its topics) and redis-server, and the stack serves again
        kafka_port = re.search(r"kafka\s.*?127\.0\.0\.1:(\d+)", output).group(1)
        redis_port = re.search(r"redis\s.*?redis://127\.0\.0\.1:(\d+)", output).group(1)
        for backend, port, said in (("tansu", kafka_port, "the bundled broker exited; restarted"),
                                    ("redis-server", redis_port, "redis-server exited")):
            # redis-server rewrites its title (and with it its environment): found by name and port
            (pid,) = [int(p) for p in os.listdir("/proc") if p.isdigit() and backend in _cmdline(int(p))
                      and f"127.0.0.1:{port}" in _cmdline(int(p)) and _alive(int(p))]
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while said not in output and time.monotonic() < deadline:
                output += proc.stdout.readline()
            assert said in output, output
        submitted = subprocess.run([sys.executable, "-m", "infra.cli.main", "submit", "Back again.", "-m", "speech"],
                                   env=env, capture_output=True, text=True, timeout=180)
        assert submitted.returncode == 0 and "completed" in submitted.stdout, submitted.stdout + submitted.stderr
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
        output += rest
        assert proc.returncode == 0, output
        assert "nothing left running" in output
        assert not [p for p in pids if _alive(p)]
        assert _processes_with_env(f"GENLOOM_HOME={tmp_path}") == [], "a process of the stack outlived `up`"
    finally:
        _stop_whatever_is_left(proc, f"GENLOOM_HOME={tmp_path}")


def _stop_whatever_is_left(proc: subprocess.Popen, marker: str) -> None:
    """After a failure mid-test: `up` stops its stack on SIGTERM (each component leads a process group of
    its own, so killing `up`'s group alone would leave them running); whatever still runs then is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in _processes_with_env(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_up_with_an_unreachable_broker_is_one_clear_error(tmp_path):
    bootstrap = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, COLUMNS="250", GENLOOM_HOME=str(tmp_path), GENLOOM_KAFKA_BOOTSTRAP=bootstrap)
    result = subprocess.run([sys.executable, "-m", "infra.cli.main", "up", "--port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert f"cannot reach Kafka at {bootstrap}" in result.stderr
    assert "GENLOOM_KAFKA_BOOTSTRAP" in result.stderr and "Traceback" not in result.stderr
