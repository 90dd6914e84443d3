"""genloom's wire contracts: every message that crosses a process. No I/O lives here."""

from .control import CancelJob, ControlMessage, parse_control
from .dlq import DeadLetter
from .enums import (
    AudioFormat,
    CacheMode,
    ErrorCode,
    EventSource,
    EventType,
    FinishReason,
    ImageScheduler,
    JobStatus,
    Modality,
    ModerationCategory,
    Role,
)
from .events import (
    Accepted,
    Artifact,
    AudioChunk,
    CacheInfo,
    Cancelled,
    Completed,
    Failed,
    JobEvent,
    MemoryUse,
    ModelInfo,
    ModerationVerdict,
    Prepared,
    Progress,
    PromptMatch,
    Started,
    Timings,
    TokenDelta,
    Usage,
    is_terminal,
    parse_event,
)
from .requests import (
    ChatMessage,
    GenerationRequest,
    ImageParams,
    ImageRequest,
    PromptEmbedding,
    SpeechParams,
    SpeechRequest,
    TextParams,
    TextRequest,
    VideoParams,
    VideoRequest,
    new_job_id,
    parse_request,
)

AnyRequest = TextRequest | SpeechRequest | ImageRequest | VideoRequest

__all__ = [name for name in dir() if not name.startswith("_")]
