"""Near-valid bodies for each endpoint that reads one: a valid body for the served models (so the
fuzz reaches admission, the worker and the answer, not only the first 400) with, most of the time,
one field replaced by a hostile value or removed."""

from __future__ import annotations

from hypothesis import strategies as st

from infra.models.catalog import MediaCatalog
from tests.fuzz.strategies import hostile_json, hostile_scalars, requests

_text = st.text(min_size=1, max_size=80).filter(str.strip)
_side = st.sampled_from(["8x8", "16x16", "auto", "64x32", None])
_maybe = st.none()


def _drop_none(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None}


def valid_bodies(media: MediaCatalog, text_model: str, tenant: str, webhook_url: str) -> dict[str, st.SearchStrategy]:
    """The valid bodies of each endpoint, by path."""

    def job(request) -> dict:
        body = request.model_dump(mode="json", exclude={"tenant", "submitted_at"})
        if body.get("webhook"):
            body["webhook"]["url"] = webhook_url
        return body

    return {
        "/v1/jobs": requests.map(job),
        "/v1/chat/completions": st.builds(
            lambda **kw: _drop_none(kw), model=st.just(text_model),
            messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant",
                                                                              "developer"]),
                                                     "content": st.one_of(_text, st.just([{"type": "text",
                                                                                           "text": "hi"}]))}),
                              min_size=1, max_size=3).map(lambda m: [*m, {"role": "user", "content": "hi"}]),
            stream=st.none() | st.booleans(), max_tokens=_maybe | st.integers(1, 64),
            temperature=_maybe | st.floats(0, 2), stop=_maybe | _text, seed=_maybe | st.integers(0, 2**32),
            stream_options=_maybe | st.just({"include_usage": True}), user=_maybe | st.text(max_size=20),
        ),
        "/v1/images/generations": st.builds(
            lambda **kw: _drop_none(kw), prompt=_text, model=_maybe | st.just(media.image.name), size=_side,
            n=_maybe | st.integers(1, media.image.max_n), response_format=_maybe | st.sampled_from(["url", "b64_json"]),
            steps=_maybe | st.integers(1, 4), guidance=_maybe | st.floats(0, 10), seed=_maybe | st.integers(0, 99),
            scheduler=_maybe | st.sampled_from(["ddim", "dpm-solver"]), negative_prompt=_maybe | _text,
        ),
        "/v1/audio/speech": st.builds(
            lambda **kw: _drop_none(kw), model=st.just(media.speech.name), input=_text,
            voice=st.sampled_from(sorted(media.speech.voices) or ["joe"]),
            response_format=_maybe | st.sampled_from(["wav", "pcm"]),
            stream_format=_maybe | st.sampled_from(["audio", "sse"]), speed=_maybe | st.floats(0.25, 4),
        ),
        "/v1/videos": st.builds(
            lambda **kw: _drop_none(kw), prompt=_text, model=_maybe | st.just(media.video.name), size=_side,
            seconds=_maybe | st.sampled_from([0.5, 1, 2]), fps=_maybe | st.integers(1, 8),
            steps=_maybe | st.integers(1, 4), seed=_maybe | st.integers(0, 99),
        ),
    }


def _mutate(body: dict, key: str, value, drop: bool) -> dict:
    body = dict(body)
    if drop:
        body.pop(key, None)
    else:
        body[key] = value
    return body


def near_valid(valid: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """A valid body as it is (a third of the time) or with one field replaced or removed."""

    @st.composite
    def mutated(draw) -> dict:
        body = draw(valid)
        keys = sorted(body) + ["params"] if "modality" in body else sorted(body)
        key = draw(st.sampled_from(keys + ["unknown_field"]))
        if key == "params" and isinstance(body.get("params"), dict) and draw(st.booleans()):
            params = _mutate(body["params"], draw(st.sampled_from(sorted(body["params"]))),
                             draw(st.one_of(hostile_scalars, hostile_json)), draw(st.booleans()))
            return {**body, "params": params}
        return _mutate(body, key, draw(st.one_of(hostile_scalars, hostile_json)), draw(st.integers(0, 4)) == 0)

    return st.one_of(valid, mutated(), mutated())
