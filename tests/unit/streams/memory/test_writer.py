"""The memory writer's decisions: which jobs are remembered, what of them, and the note it keeps."""

from __future__ import annotations

from infra.settings.memory import MemorySettings
from schemas import parse_request
from streams.memory.writer import MAX_KEPT_CHARS, PendingJob, is_completed, pending_job, prompt_of

U = "u:" + "a" * 32


def _chat(*turns: tuple[str, str], **extra):
    return parse_request({"modality": "text", "tenant": "t", "user": U, "session": "s1", **extra,
                          "params": {"messages": [{"role": r, "content": c} for r, c in turns]}})


def test_a_chat_is_remembered_by_its_last_user_turn_only():
    request = _chat(("system", "Be brief."), ("user", "my favourite colour is teal"), ("assistant", "ok"),
                    ("user", "  and I am vegetarian  "))
    note = pending_job(request, MemorySettings(), now=100.0)
    assert note == PendingJob(tenant="t", user=U, session="s1", modality="text", prompt="and I am vegetarian",
                              created_at=100.0)
    assert PendingJob.loads(note.dumps()) == note
    kept = note.interaction("job-1", "Noted.", retention_s=10.0)
    assert (kept.id, kept.prompt, kept.answer, kept.expires_at) == ("job-1", "and I am vegetarian", "Noted.", 110.0)


def test_media_prompts_are_remembered_too():
    image = parse_request({"modality": "image", "tenant": "t", "user": U, "params": {"prompt": "a teal fox"}})
    speech = parse_request({"modality": "speech", "tenant": "t", "user": U, "params": {"input": "Hello there"}})
    assert prompt_of(image) == "a teal fox" and prompt_of(speech) == "Hello there"


def test_jobs_without_a_user_or_of_a_tenant_with_memory_off_are_not():
    anonymous = parse_request({"modality": "text", "tenant": "t",
                               "params": {"messages": [{"role": "user", "content": "hi"}]}})
    assert pending_job(anonymous, MemorySettings(), 1.0) is None
    assert pending_job(_chat(("user", "hi")), MemorySettings(off_tenants="x, t"), 1.0) is None
    assert pending_job(_chat(("user", "hi")), MemorySettings(enabled=False), 1.0) is None
    assert pending_job(_chat(("system", "only a system prompt")), MemorySettings(), 1.0) is None


def test_long_text_is_kept_as_a_bounded_gist():
    note = pending_job(_chat(("user", "é" * (MAX_KEPT_CHARS * 2))), MemorySettings(), 1.0)
    assert len(note.prompt) == MAX_KEPT_CHARS + 1 and note.prompt.endswith("…")


def test_only_possible_completed_events_are_parsed_and_a_bad_note_is_none():
    assert is_completed(b'{"type":"completed","job_id":"j"}')
    assert not is_completed(b'{"type":"token","text":"x"}') and not is_completed(None) and not is_completed(b"")
    assert PendingJob.loads(b"not json") is None and PendingJob.loads(b'{"tenant": "t"}') is None


def test_retention_is_per_tenant_where_set_and_a_bad_list_fails_at_start():
    import pytest
    from pydantic import ValidationError

    settings = MemorySettings(retention_days=365, tenant_retention_days="acme=30, beta=0.5")
    assert settings.retention_days_for("acme") == 30 and settings.retention_days_for("other") == 365
    assert settings.retention_s_for("beta") == 43200
    note = pending_job(_chat(("user", "hi")), settings, now=0.0)
    assert note.interaction("j", None, retention_s=settings.retention_s_for("t")).expires_at == 365 * 86400
    for bad in ("acme", "acme=0", "=3", "acme=soon"):
        with pytest.raises(ValidationError):
            MemorySettings(tenant_retention_days=bad)
