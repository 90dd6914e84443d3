"""The base every wire contract derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A message that crosses a process boundary: immutable, strict about unknown fields, and free of
    NaN and infinities (JSON has no such numbers: they would be written as null and refused on the
    other side, so a job accepted with one would be lost)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, allow_inf_nan=False)
