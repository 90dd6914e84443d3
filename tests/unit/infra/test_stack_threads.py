"""The CPU threads and ports `genloom up` gives each of its processes."""

import socket

from infra.stack import Stack, thread_plan


def test_workers_get_all_cores_but_one_and_the_rest_one_thread() -> None:
    assert thread_plan({}, "worker-text", 2) == {"GENLOOM_WORKER_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    assert thread_plan({}, "worker-image", 16)["GENLOOM_WORKER_TORCH_THREADS"] == "15"
    assert thread_plan({}, "worker-image", 16)["OMP_NUM_THREADS"] == "15"
    assert thread_plan({}, "worker-text", 1)["GENLOOM_WORKER_TORCH_THREADS"] == "1"
    for name in ("gateway", "streams", "moderation"):
        assert thread_plan({}, name, 16) == {"OMP_NUM_THREADS": "1"}


def test_what_the_user_set_wins() -> None:
    env = {"OMP_NUM_THREADS": "4", "GENLOOM_WORKER_TORCH_THREADS": "3"}
    assert thread_plan(env, "worker-text", 16) == env
    assert thread_plan({"OMP_NUM_THREADS": "2"}, "gateway", 16) == {"OMP_NUM_THREADS": "2"}
    assert thread_plan({"OMP_NUM_THREADS": "2"}, "worker-text", 16) == {
        "OMP_NUM_THREADS": "2", "GENLOOM_WORKER_TORCH_THREADS": "15"}


def test_no_two_processes_are_given_the_same_metrics_port(monkeypatch, tmp_path) -> None:
    """Ports are picked before the processes bind them, so two picks may return the same port: the stack
    hands each out once (the gateway's own port included)."""
    from infra import stack as stack_module

    picks = iter([41001, 41001, 41002, 41000, 41002, 41003])
    monkeypatch.setattr(stack_module, "free_port", lambda: next(picks))
    stack = Stack(log_dir=tmp_path)
    stack.add("gateway", ["gateway"], port=41000)
    ports = [stack.add(name, ["workers", name]).metrics_port for name in ("moderation", "text", "image")]
    assert ports == [41001, 41002, 41003]


def test_a_restart_moves_the_metrics_off_a_port_another_process_took(tmp_path) -> None:
    """A process that exited because its /metrics port was taken would exit again at every restart on it."""
    stack = Stack(log_dir=tmp_path)
    component = stack.add("idle", ["json.tool", "--help"])
    first = component.metrics_port
    assert stack.relaunch(component) is None  # its port is free: kept
    assert component.metrics_port == first and component.restarts == 1
    component.proc.wait(30)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        line = stack.relaunch(component)
    component.proc.wait(30)
    assert component.metrics_port not in (None, first) and component.restarts == 2
    assert line is not None and str(component.metrics_port) in line and str(first) in line


def test_a_component_that_does_not_come_up_stops_what_was_started(tmp_path) -> None:
    """`Stack.start` leaves nothing running when it fails: a bench or `genloom up` that gives up owns no process."""
    import pytest

    from infra.procs import free_port

    stack = Stack(log_dir=tmp_path)
    stack.bootstrap, stack.redis_url = "127.0.0.1:9", "redis://127.0.0.1:9"  # external backends: none to start
    up, broken = free_port(), free_port()
    listening = stack.add("listening", ["http.server", "--bind", "127.0.0.1", str(up)], port=up)
    failing = stack.add("failing", ["json.tool", str(tmp_path / "missing.json")], port=broken)
    with pytest.raises(RuntimeError, match="exited with"):
        stack.start(ready_timeout=30)
    assert listening.proc.poll() is not None and failing.proc.poll() is not None
