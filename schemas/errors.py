"""Turn a contract violation into a stable error code and a message a person can act on."""

from __future__ import annotations

from pydantic import ValidationError

from .enums import ErrorCode, Modality

_RANGE_TYPES = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "value_error",
        "literal_error",
        "enum",
        "string_pattern_mismatch",
        "too_short",
        "string_too_short",
        "finite_number",
    }
)
_MODALITY_TAGS = frozenset(m.value for m in Modality)
_SIZE_TYPES = frozenset({"string_too_long", "too_long"})


def _location(loc: tuple) -> str:
    # drop the union tag pydantic inserts ("text", "image", ...) before the field ("params.top_p", "webhook.url")
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in _MODALITY_TAGS:
        parts = parts[1:]
    return ".".join(parts) or "body"


def describe_validation_error(exc: ValidationError) -> tuple[ErrorCode, str]:
    """The most specific code for the first problem, and a message listing every problem."""
    errors = exc.errors(include_url=False)
    first = errors[0]["type"] if errors else ""
    if first == "json_invalid":
        code = ErrorCode.INVALID_JSON
    elif first in ("union_tag_invalid", "union_tag_not_found"):
        code = ErrorCode.UNKNOWN_MODALITY
    elif first in _SIZE_TYPES:
        code = ErrorCode.PAYLOAD_TOO_LARGE
    elif first in _RANGE_TYPES:
        code = ErrorCode.INVALID_PARAMETER
    else:
        code = ErrorCode.INVALID_REQUEST
    problems = []
    for err in errors[:8]:
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "union_tag_not_found":
            msg = "missing `modality`: say which of text, speech, image, video this job is"
        elif err["type"] == "union_tag_invalid":
            msg = (
                f"unknown modality {err['input'].get('modality')!r}: "
                "use one of text, speech, image, video"
                if isinstance(err.get("input"), dict)
                else "unknown modality: use one of text, speech, image, video"
            )
        problems.append(f"{_location(err['loc'])}: {msg}")
    if len(errors) > 8:
        problems.append(f"... and {len(errors) - 8} more")
    return code, "; ".join(problems)


def validation_error_param(exc: ValidationError) -> str | None:
    """The dotted location of the first problem (``params.max_tokens``), for an error's ``param``."""
    errors = exc.errors(include_url=False)
    if not errors or errors[0]["type"] in ("json_invalid", "union_tag_not_found", "union_tag_invalid"):
        return "modality" if errors and errors[0]["type"].startswith("union_tag") else None
    return _location(errors[0]["loc"])
