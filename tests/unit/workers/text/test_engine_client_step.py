"""A text engine step that fails as a whole: each request is told only what concerns it (pure)."""

from __future__ import annotations

from workers.text.engine_client import step


class _BrokenEngine:
    def __init__(self, message: str) -> None:
        self.message = message
        self.aborted: list[str] = []

    def step(self):
        raise RuntimeError(self.message)

    def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


def test_a_shared_batch_failure_names_no_other_request():
    engine = _BrokenEngine("shape mismatch in 'req-b: my private prompt'")
    active = {"req-a", "req-b"}
    outputs = step(engine, active)
    assert sorted(o.request_id for o in outputs) == ["req-a", "req-b"] and not active
    assert sorted(engine.aborted) == ["req-a", "req-b"]
    for out in outputs:
        assert out.finished and "RuntimeError" in out.error
        assert "req-b" not in out.error and "private prompt" not in out.error


def test_a_batch_of_one_is_told_the_whole_error():
    (out,) = step(_BrokenEngine("CUDA out of memory"), {"req-a"})
    assert out.error == "RuntimeError: CUDA out of memory"
