"""What the store backends share: the names of the kinds they count and export, the stored column of
each record field, and the export document. Each backend keeps only its own I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import Fact, Feedback, Interaction, Profile

#: the kinds an erase or a sweep counts and an export lists, in the order the docs name them
PROFILE, INTERACTIONS, FACTS, FEEDBACK = "profile", "interactions", "facts", "feedback"
#: kinds whose rows carry `expires_at` (profiles live until erased: they hold the consent itself)
EXPIRING = (INTERACTIONS, FACTS, FEEDBACK)

#: record fields stored under another name: `user` and `text` are keywords in some SQL and CQL dialects
_RENAMED = {"user": "user_id", "text": "fact_text"}


def columns(record: type) -> tuple[str, ...]:
    """The stored columns of a record type, in field order: `Record(*row)` rebuilds a row selected in it."""
    return tuple(_RENAMED.get(f.name, f.name) for f in dataclasses.fields(record))


PROFILE_COLUMNS = columns(Profile)
INTERACTION_COLUMNS = columns(Interaction)
FACT_COLUMNS = columns(Fact)
FEEDBACK_COLUMNS = columns(Feedback)


def values(item: Any) -> tuple:
    """The record's field values in `columns` order (shallow: dicts stay dicts)."""
    return tuple(getattr(item, f.name) for f in dataclasses.fields(item))


def ordered(found: dict[str, Any], ids: list[str]) -> list:
    """The records found, in the order their ids were asked for (each once, missing ones left out)."""
    return [found[i] for i in dict.fromkeys(ids) if i in found]


def export_document(profile: Profile | None, interactions: list[Interaction], facts: list[Fact],
                    feedback: list[Feedback]) -> dict[str, Any]:
    return {
        PROFILE: dataclasses.asdict(profile) if profile is not None else None,
        INTERACTIONS: [dataclasses.asdict(i) for i in interactions],
        FACTS: [dataclasses.asdict(f) for f in facts],
        FEEDBACK: [dataclasses.asdict(f) for f in feedback],
    }
