"""What each job of a failed diffusion batch is told (pure)."""

from __future__ import annotations

from workers.diffusion.handler import batch_error


def test_a_shared_batch_is_told_only_the_error_type():
    err = batch_error(RuntimeError("job-b 'their prompt' 64x64"), jobs=2)
    assert err.code == "generation_error" and err.retryable
    assert "RuntimeError" in err.message and "job-b" not in err.message and "their prompt" not in err.message


def test_a_batch_of_one_is_told_the_whole_error():
    err = batch_error(RuntimeError("CUDA out of memory"), jobs=1)
    assert "RuntimeError: CUDA out of memory" in err.message and err.retryable
