"""The CPU threads `genloom up` gives each of its processes when the user set none."""

from infra.stack import thread_plan


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
