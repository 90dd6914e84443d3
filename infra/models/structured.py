"""Checks of the JSON Schemas a chat request constrains its output with (response_format, tools),
made before a job is queued so that a schema no worker could follow is a 400 naming the parameter.

Two checks: the schema is valid JSON Schema (`jsonschema`'s meta-schema for its draft), and it can be
turned into a grammar (xgrammar, the decoding backend of workers/text/grammar.py, without a tokenizer).
"""

from __future__ import annotations

import json
from typing import Any


class SchemaError(ValueError):
    """A schema that is not valid JSON Schema or cannot become a grammar (says why)."""


def check_schema(schema: Any) -> None:
    """Raise SchemaError when `schema` is not a JSON Schema object a grammar can be built from."""
    if not isinstance(schema, dict):
        raise SchemaError(f"a JSON Schema is an object, got {type(schema).__name__}")
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise SchemaError(f"not a valid JSON Schema{f' at {where}' if where else ''}: {exc.message}") from None
    import xgrammar as xgr

    try:
        xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=True)
    except Exception as exc:  # xgrammar raises RuntimeError/ValueError with its parser's message
        lines = str(exc).strip().splitlines()
        raise SchemaError(f"genloom cannot build a grammar from it: {(lines[-1] if lines else type(exc).__name__)[:300]}") \
            from None
