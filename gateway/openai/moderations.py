"""`POST /v1/moderations`, as OpenAI serves it: text and image inputs scored in the OpenAI taxonomy
by genloom's classifiers, under the caller's tenant policy (its thresholds, block and allow lists)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets

from fastapi import APIRouter, Depends, Request

from infra.moderation.image import BadImage
from infra.moderation.moderator import Moderator, build_moderator
from infra.moderation.policy import Decision
from infra.settings.moderation import ModerationSettings
from schemas.enums import ErrorCode
from schemas.enums import ModerationCategory as C
from schemas.openai import ModerationImagePart, ModerationRequest, ModerationResponse, ModerationResult, TextPart

from ..auth import tenant_of
from ..body import parse_body, read_json
from ..errors import ApiError

router = APIRouter(prefix="/v1", tags=["openai"])

#: the model name answered when the caller named none
DEFAULT_MODEL = "genloom-moderation"
#: the most inputs (texts or parts) one call may score
MAX_INPUTS = 64
_DATA_URL = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


class Moderators:
    """The gateway's moderator, built on first use (it loads models) and shared after that."""

    def __init__(self, settings: ModerationSettings) -> None:
        self._settings = settings
        self._moderator: Moderator | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Moderator:
        if self._moderator is None:
            async with self._lock:
                if self._moderator is None:
                    built = await asyncio.to_thread(build_moderator, self._settings, images=True)
                    if built is None:
                        raise ApiError(ErrorCode.MODALITY_UNAVAILABLE,
                                       "moderation is off on this deployment (GENLOOM_MODERATION_CLASSIFIER=none)")
                    self._moderator = built
        return self._moderator


@router.post("/moderations", summary="Moderation (OpenAI-compatible)", response_model=ModerationResponse,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": ModerationRequest.model_json_schema()}}}})
async def moderations(request: Request, tenant: str = Depends(tenant_of)) -> ModerationResponse:
    state = request.app.state
    body = parse_body(ModerationRequest, await read_json(request, state.settings.max_body_bytes),
                      "a moderation request")
    groups = _groups(body)
    moderator = await state.moderators.get()
    texts = [(tenant, text) for texts, _ in groups for text in texts]
    images = [(tenant, data) for _, datas in groups for data in datas]
    text_decisions = await moderator.check_async(texts)
    if images and moderator.images is None:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "this deployment scores no images"
                       " (GENLOOM_MODERATION_CLASSIFIER is not `categories`)", param="input")
    try:
        image_decisions = await moderator.check_images_async(images)
    except BadImage as exc:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"an image input could not be read: {exc}", param="input") from None
    results, t, i = [], iter(text_decisions), iter(image_decisions)
    for texts, datas in groups:
        results.append(_result([next(t) for _ in texts], [next(i) for _ in datas]))
    return ModerationResponse(id=f"modr-{secrets.token_hex(12)}", model=body.model or DEFAULT_MODEL, results=results)


def _groups(body: ModerationRequest) -> list[tuple[list[str], list[bytes]]]:
    """(texts, images) per result: one per string of a list, one for all parts of a multimodal input."""
    value = body.input
    if isinstance(value, str):
        return [([value], [])]
    if not value:
        raise ApiError(ErrorCode.EMPTY_INPUT, "input is empty: send a string, strings or parts", param="input")
    if len(value) > MAX_INPUTS:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"{len(value)} inputs: send at most {MAX_INPUTS} per call",
                       param="input")
    if all(isinstance(v, str) for v in value):
        return [([v], []) for v in value]
    texts = [p.text for p in value if isinstance(p, TextPart)]
    images = [_image(p, n) for n, p in enumerate(value) if isinstance(p, ModerationImagePart)]
    return [(texts, images)]


def _image(part: ModerationImagePart, n: int) -> bytes:
    url = part.image_url.url
    if not _DATA_URL.match(url):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "image_url must be a data:image/...;base64, URL: genloom"
                       " fetches no remote images", param=f"input[{n}].image_url.url")
    try:
        return base64.b64decode(url.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(ErrorCode.INVALID_PARAMETER, "image_url is not valid base64",
                       param=f"input[{n}].image_url.url") from None


def _result(texts: list[Decision], images: list[Decision]) -> ModerationResult:
    scores: dict[str, float] = {c.value: 0.0 for c in C}
    applied: dict[str, list[str]] = {c.value: [] for c in C}
    fired: set[str] = set()
    for kind, decisions in (("text", texts), ("image", images)):
        for d in decisions:
            for category, score in d.scores.items():
                if category in scores:
                    scores[category] = max(scores[category], score)
                    if kind not in applied[category]:
                        applied[category].append(kind)
            fired.update(d.categories)
    flagged = any(not d.allowed for d in (*texts, *images))
    return ModerationResult(
        flagged=flagged, categories={c: c in fired for c in scores}, category_scores=scores,
        category_applied_input_types=applied,
    )
