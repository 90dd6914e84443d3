"""`POST /v1/moderations` with the official OpenAI SDK: text and image inputs, the caller's tenant
policy, and clear errors for inputs it cannot score. Real classifiers (alt-profanity-check, the
lexicons, open_nsfw ONNX), a real HTTP server; no broker or Redis is involved."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest
from PIL import Image

from gateway.app import create_app
from gateway.auth import ApiKeys
from gateway.inprocess import InProcessServer
from infra.settings.gateway import GatewaySettings
from infra.settings.moderation import ModerationSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEYS = {"t-a": "gl-mod-key-a", "t-horror": "gl-mod-key-horror"}
GRAPHIC = "his guts spilled out and blood sprayed everywhere"


@pytest.fixture(scope="module")
async def url():
    settings = ModerationSettings(
        tenant_policies='{"t-horror": {"thresholds": {"violence": "off", "violence/graphic": "off"}}}')
    app = create_app(GatewaySettings(), redis=None, producer=None,
                     api_keys=ApiKeys((k, t) for t, k in KEYS.items()), moderation=settings)
    server = await InProcessServer(app).start()
    yield server.url
    await server.stop()


def sdk(url: str, tenant: str = "t-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS[tenant], max_retries=0, timeout=60)


def data_url(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype("uint8")).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def test_texts_get_one_result_each_in_the_openai_taxonomy(url):
    answer = await sdk(url).moderations.create(input=["I will k1ll you tomorrow", "What a lovely walk by the sea."],
                                               model="omni-moderation-latest")
    threat, clean = answer.results
    assert answer.model == "omni-moderation-latest" and answer.id.startswith("modr-")
    assert threat.flagged and threat.categories.harassment_threatening and threat.category_scores.harassment >= 0.5
    assert not clean.flagged and not any(clean.categories.model_dump().values())
    assert threat.category_applied_input_types.harassment == ["text"]


async def test_the_callers_tenant_policy_decides(url):
    strict = (await sdk(url, "t-a").moderations.create(input=GRAPHIC)).results[0]
    relaxed = (await sdk(url, "t-horror").moderations.create(input=GRAPHIC)).results[0]
    assert strict.flagged and strict.categories.violence_graphic
    assert not relaxed.flagged and relaxed.category_scores.violence_graphic == strict.category_scores.violence_graphic


async def test_text_and_image_parts_get_one_result_with_the_image_scored_for_sexual(url):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3))
    answer = await sdk(url).moderations.create(input=[
        {"type": "text", "text": "a picture of a meadow"},
        {"type": "image_url", "image_url": {"url": data_url(noise)}},
    ])
    (result,) = answer.results
    assert not result.flagged
    assert result.category_applied_input_types.sexual == ["text", "image"]
    assert result.category_applied_input_types.violence == ["text"]


@pytest.mark.parametrize("part, fragment", [
    ({"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}, "fetches no remote images"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"nope").decode()}},
     "could not be read"),
])
async def test_images_it_cannot_score_are_a_400_that_says_why(url, part, fragment):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk(url).moderations.create(input=[part])
    assert fragment in info.value.message
