"""The served-model catalogue and the context-length check, without loading any model."""

from __future__ import annotations

import importlib.util

import pytest

from infra.models import catalog
from infra.models.catalog import MediaCatalog, TextModelCatalog, TextModelEntry, available
from infra.models.context import ContextLengthExceeded, check_context
from infra.models.settings import ImageSettings, SpeechSettings, TextSettings, VideoSettings
from schemas.enums import Modality


def test_max_tokens_must_stay_below_the_context():
    with pytest.raises(ContextLengthExceeded) as info:
        check_context(None, 8192, 8192)
    assert info.value.param == "max_tokens"
    assert str(info.value) == "max_tokens=8192 must be below the model's context of 8192 tokens: lower max_tokens"


def test_prompt_and_max_tokens_together_must_fit():
    check_context(8000, 192, 8192)  # exactly full fits
    with pytest.raises(ContextLengthExceeded) as info:
        check_context(8000, 193, 8192)
    assert info.value.param == "messages"
    assert str(info.value).startswith("the prompt is 8000 tokens and max_tokens is 193; together they exceed")


def test_unknown_numbers_are_not_checked():
    check_context(None, 10**6, None)
    check_context(10**6, None, 8192)


def test_catalogue_is_built_from_the_served_model_settings(tmp_path):
    text = TextModelCatalog.from_settings(TextSettings(served_name="chat", cache_dir=tmp_path))
    assert text.names() == ["chat"] and text.get("chat").source == str(tmp_path / "smollm2-135m-instruct")
    media = MediaCatalog.from_settings(ImageSettings(max_n=3), VideoSettings(model="org/vid", frames=12),
                                       SpeechSettings())
    assert (media.image.name, media.image.max_n) == ("digits-image", 3)
    assert (media.video.name, media.video.frames) == ("org/vid", 12)
    assert media.speech.voices == {"joe"}


def test_a_modality_whose_packages_are_missing_says_which_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(catalog.importlib.util, "find_spec", lambda name: None if name == "diffusers" else real(name))
    status = available()
    assert status[Modality.TEXT] is None and status[Modality.SPEECH] is None
    assert status[Modality.IMAGE] == "needs diffusers: pip install 'genloom[media]'"
    assert status[Modality.VIDEO] == "needs diffusers: pip install 'genloom[media]'"


class _Entry(TextModelEntry):
    """A text entry whose files appear only when `ready` is set (as when a worker builds its cache)."""

    ready = False
    attempts = 0

    def load(self) -> None:
        self.attempts += 1
        if not self.ready:
            raise OSError("no tokenizer files yet")
        self.tokenizer, self.context_length = object(), 128


async def test_a_tokenizer_missing_at_start_is_loaded_once_its_files_exist():
    clock = [100.0]
    entry = _Entry("m", "/nowhere")
    models = TextModelCatalog([entry], clock=lambda: clock[0])
    await models.load()
    assert entry.tokenizer is None and entry.attempts == 1
    entry.ready = True
    await models.ensure_loaded()  # too soon: no request pays for a failed load each time
    assert entry.attempts == 1 and entry.context_length is None
    clock[0] += catalog.RELOAD_INTERVAL_S
    await models.ensure_loaded()
    assert entry.attempts == 2 and entry.context_length == 128
    await models.ensure_loaded()  # loaded: never again
    assert entry.attempts == 2
