"""Render deploy/helm/genloom with the subset of Helm's template language its templates use.

No Helm binary can be installed on the project machines, so the chart keeps to actions that render
the same here as in Helm: `{{ .Values.a.b }}`, `{{ .Values.a.b | toJson }}`, `{{ .Values.a.b | quote }}`,
`{{ .Release.Name }}` and `{{ .Release.Namespace }}`. Anything else (if, range, include, other
functions) is refused, so a template cannot drift into Helm this renderer would get wrong, and a
value the templates name but values.yaml lacks is an error (Helm would print `<no value>`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "genloom"

_ACTION = re.compile(r"{{(.*?)}}", re.S)
_SUPPORTED = re.compile(r"^\s*(\.Values(?:\.[A-Za-z_]\w*)+|\.Release\.Name|\.Release\.Namespace)\s*"
                        r"(?:\|\s*(toJson|quote)\s*)?$")


class TemplateError(ValueError):
    """A template uses Helm beyond the subset, or names a value that does not exist."""


def _lookup(path: str, context: dict[str, Any]) -> Any:
    node: Any = context
    for part in path.lstrip(".").split("."):
        if not isinstance(node, dict) or part not in node:
            raise TemplateError(f"{path}: no such value")
        node = node[part]
    return node


def _scalar(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise TemplateError(f"{path} is a {type(value).__name__}: print it with `| toJson`")


def render_text(text: str, values: dict[str, Any], release: str = "genloom", namespace: str = "genloom") -> str:
    context = {"Values": values, "Release": {"Name": release, "Namespace": namespace}}

    def action(match: re.Match[str]) -> str:
        parsed = _SUPPORTED.match(match.group(1))
        if parsed is None:
            raise TemplateError(f"outside the supported subset: {match.group(0)!r}")
        path, func = parsed.groups()
        value = _lookup(path, context)
        if func == "toJson":  # Go's encoding/json: compact, map keys sorted
            return json.dumps(value, separators=(",", ":"), sort_keys=True)
        if func == "quote":
            return json.dumps(_scalar(value, path))
        return _scalar(value, path)

    return _ACTION.sub(action, text)


def render_chart(values: dict[str, Any] | None = None, chart: Path = CHART) -> dict[str, list[dict[str, Any]]]:
    """Each template's file name and the manifests it renders to (empty documents dropped)."""
    values = values if values is not None else yaml.safe_load((chart / "values.yaml").read_text())
    out = {}
    for template in sorted((chart / "templates").glob("*.yaml")):
        text = render_text(template.read_text(), values)
        out[template.name] = [doc for doc in yaml.safe_load_all(text) if doc]
    return out
