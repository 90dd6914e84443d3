"""Pure embedding decisions: which text of a job is embedded, and the compact form its vector travels in.

What is embedded, per modality:

- chat: the last user turn. When that turn is short (a follow-up such as "and in Paris?" means
  nothing alone) the user turn before it follows it as context, so the vector says what is asked.
  The system prompt and the assistant turns are left out: a system prompt is shared by many
  conversations and would pull every vector towards it, and the semantic cache matches the rest of
  the conversation exactly anyway (its scope, streams/cache/logic.py), so only the question itself
  needs to be compared by meaning. The question comes first: the model reads 256 word pieces, so
  what is cut off is context, never the question.
- image and video: the prompt, then the negative prompt after a marker (they change the picture).
- speech: the input text.
"""

from __future__ import annotations

import base64

import numpy as np

from schemas import AnyRequest, ImageRequest, SpeechRequest, TextRequest, VideoRequest
from schemas.enums import Role
from schemas.requests import PromptEmbedding

#: a last user turn shorter than this (in characters) gets the user turn before it as context
SHORT_TURN_CHARS = 64


def last_user_index(request: TextRequest) -> int | None:
    """Index of the last user message with text, or None when no user turn has any."""
    messages = request.params.messages
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role is Role.USER and messages[i].content.strip():
            return i
    return None


def chat_text(request: TextRequest) -> str:
    """The text embedded for a chat (see the module docstring)."""
    messages = request.params.messages
    last = last_user_index(request)
    if last is None:  # no user text (a system-only prompt): the last message with text stands in
        return next(m.content for m in reversed(messages) if m.content.strip()).strip()
    text = messages[last].content.strip()
    if len(text) < SHORT_TURN_CHARS:
        earlier = next((m.content.strip() for m in reversed(messages[:last])
                        if m.role is Role.USER and m.content.strip()), None)
        if earlier:
            text = f"{text}\n{earlier}"
    return text


def prompt_text(request: AnyRequest) -> str:
    """The text embedded for any job."""
    match request:
        case TextRequest():
            return chat_text(request)
        case ImageRequest() | VideoRequest():
            negative = request.params.negative_prompt
            return request.params.prompt + (f"\nwithout: {negative}" if negative and negative.strip() else "")
        case SpeechRequest():
            return request.params.input
    raise TypeError(f"no prompt text for {type(request).__name__}")


def pack(vector: np.ndarray, model: str) -> PromptEmbedding:
    """The vector's compact wire form (float16, base64)."""
    half = np.asarray(vector, dtype="<f2")
    return PromptEmbedding(model=model, dims=int(half.shape[0]), f16=base64.b64encode(half.tobytes()).decode())


def unpack(embedding: PromptEmbedding) -> np.ndarray:
    """The float32 vector, normalised again (half precision moves its length by up to 1e-3)."""
    vector = np.frombuffer(base64.b64decode(embedding.f16), dtype="<f2").astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
