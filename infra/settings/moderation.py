"""Moderation settings: the classifier, the default and per-tenant policies, the output gate's windows."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.moderation.policy import Policy, PolicyBook

#: the keys a tenant's policy may have
_POLICY_KEYS = frozenset({"thresholds", "block", "allow", "on_error", "window_mode"})


class ModerationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_MODERATION_", extra="ignore", frozen=True)

    classifier: Literal["none", "categories", "blocklist", "profanity", "llama-guard"] = Field(
        default="categories",
        description="Text moderation: categories (the OpenAI taxonomy scored by genloom's lexicons and"
        " alt-profanity-check's model; install the `moderation` extra), llama-guard (the model llama_guard_model"
        " names, for a GPU deployment; its hazard codes map onto the same categories), profanity (that model alone),"
        " blocklist (only the block lists), none (off: prompts and output go unchecked).",
    )
    llama_guard_model: str = Field(
        default="meta-llama/Llama-Guard-3-1B",
        description="Model id or folder of the llama-guard classifier (Llama Guard 3 hazard codes).",
    )
    llama_guard_device: str = Field(default="cuda", description="Where the llama-guard classifier runs.")
    blocklist: str = Field(default="", description="Comma-separated terms that block a prompt or output, for every tenant.")
    thresholds: str = Field(
        default="",
        description="Default thresholds changed for every tenant, e.g. `violence=0.8,sexual=off` (categories of"
        " the OpenAI taxonomy; the rest keep genloom's defaults, docs/benchmarks.md).",
    )
    on_error: Literal["closed", "open"] = Field(
        default="closed",
        description="When the classifier fails or is slower than timeout_s: closed withholds the prompt or output,"
        " open releases it; events say which happened.",
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Longest a classifier may take on one batch.")
    tenant_policies: str = Field(
        default="",
        description="JSON object, tenant -> policy: {\"acme\": {\"thresholds\": {\"violence\": 0.8, \"sexual\":"
        " \"off\"}, \"block\": [\"term\"], \"allow\": [\"breast cancer\"], \"on_error\": \"open\", \"window_mode\": \"windowed\"}}. An unknown"
        " category or key is an error at start.",
    )
    threshold: float = Field(default=0.8, ge=0.0, le=1.0, description="Profanity probability that blocks (classifier=profanity).")
    window_chars: int = Field(
        default=160, ge=1,
        description="Most output text the gate holds back: a window is checked at a sentence end, after"
        " window_tokens tokens or at this many characters, whichever comes first.",
    )
    group: str = Field(
        default="genloom-moderation",
        description="Consumer group of the output gate on genloom.events.raw (gates of one deployment share it).",
    )
    window_tokens: int = Field(default=16, ge=1, description="Most tokens the gate holds back in one window.")
    replay_direct: bool = Field(
        default=True,
        description="The output gate writes what it releases into the jobs' replay logs in Redis itself, while the"
        " broker acknowledges it (its input is committed once both are done), and marks those records so the fan-out"
        " passes them by: a client has each token a Kafka hop sooner. Off: the fan-out writes them from"
        " genloom.events. Needs GENLOOM_REDIS_URL.",
    )
    commit_gap_ms: int = Field(
        default=1000, ge=0,
        description="The output gate commits what it released at most this often, off its loop's path (a gate that"
        " dies replays at most about this long's events, which the fan-out drops as duplicates); 0 commits each"
        " batch before the next poll.",
    )
    window_idle_s: float = Field(
        default=60.0, gt=0,
        description="A job that sends nothing for this long has its held text checked and released (or blocked):"
        " a worker that died without a takeover never holds it, or the gate's commits, forever.",
    )
    window_mode: Literal["checked", "windowed"] = Field(
        default="checked",
        description="How the output gate releases tokens: checked releases each token as soon as the text of its"
        " sentence so far passes, holding it only while its trailing word could still become a blocked term (at most"
        " hold_tokens), and re-checks each whole sentence: a sentence that fails ends the stream, and what was"
        " released stays released. windowed releases text only in checked windows (a sentence, window_tokens or"
        " window_chars). A tenant's policy may choose its own (`window_mode`).",
    )
    hold_tokens: int = Field(
        default=4, ge=1,
        description="window_mode=checked: most tokens held while the text could still grow into a blocked term.",
    )
    first_window_tokens: int = Field(
        default=1, ge=1,
        description="Tokens in a job's first window: it is checked and released after this many, so time to first"
        " token grows by one check rather than a window of generation (docs/benchmarks.md measures both).",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        Policy.build(thresholds=_pairs(value), where="GENLOOM_MODERATION_THRESHOLDS")
        return value

    @field_validator("tenant_policies")
    @classmethod
    def _tenant_policies(cls, value: str) -> str:
        _parse_policies(value)
        return value

    def policies(self) -> PolicyBook:
        """The default policy and the tenants' own; a tenant's thresholds start from the default ones."""
        base = _pairs(self.thresholds)
        terms = _terms(self.blocklist)
        default = Policy.build(thresholds=base, block=terms, fail_open=self.on_error == "open",
                               where="GENLOOM_MODERATION_THRESHOLDS", stream=self.window_mode)
        tenants = {}
        for tenant, spec in _parse_policies(self.tenant_policies).items():
            tenants[tenant] = Policy.build(
                thresholds={**base, **spec.get("thresholds", {})}, block=[*terms, *spec.get("block", [])],
                allow=spec.get("allow", []), fail_open=spec.get("on_error", self.on_error) == "open",
                where=f"GENLOOM_MODERATION_TENANT_POLICIES[{tenant!r}]",
                stream=spec.get("window_mode", self.window_mode))
        return PolicyBook(default, tenants)


def _terms(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _pairs(value: str) -> dict[str, str]:
    out = {}
    for part in _terms(value):
        name, sep, threshold = part.partition("=")
        if not sep:
            raise ValueError(f"GENLOOM_MODERATION_THRESHOLDS: {part!r} is not category=threshold (or category=off)")
        out[name.strip()] = threshold.strip()
    return out


def _parse_policies(value: str) -> dict[str, dict[str, Any]]:
    if not value.strip():
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise ValueError(f"GENLOOM_MODERATION_TENANT_POLICIES is not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError("GENLOOM_MODERATION_TENANT_POLICIES must be a JSON object of tenant -> policy object")
    for tenant, spec in data.items():
        where = f"GENLOOM_MODERATION_TENANT_POLICIES[{tenant!r}]"
        extra = set(spec) - _POLICY_KEYS
        if extra:
            raise ValueError(f"{where} has unknown keys {sorted(extra)}: use {sorted(_POLICY_KEYS)}")
        if spec.get("on_error", "closed") not in ("closed", "open"):
            raise ValueError(f"{where}: on_error is {spec['on_error']!r}: use \"closed\" or \"open\"")
        for key in ("block", "allow"):
            if not isinstance(spec.get(key, []), list) or not all(isinstance(t, str) for t in spec.get(key, [])):
                raise ValueError(f"{where}: {key} must be a list of strings")
        if not isinstance(spec.get("thresholds", {}), dict):
            raise ValueError(f"{where}: thresholds must be an object of category -> number or \"off\"")
        Policy.build(thresholds=spec.get("thresholds", {}), where=where, stream=spec.get("window_mode"))
    return data


def moderation_enabled(settings: ModerationSettings) -> bool:
    """Whether prompts and output are checked; with nothing to check, workers publish straight to
    `genloom.events` and save the hop."""
    return settings.classifier != "none" or bool(settings.blocklist.strip())
