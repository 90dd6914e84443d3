"""Which handler serves each modality. A modality whose packages are not installed is reported as
missing by `genloom up` (from `infra.models.catalog.available`) rather than faked."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from schemas.enums import Modality

from .handler import Handler

#: module path of each modality's `create_handler()` factory
HANDLERS: dict[Modality, str] = {
    Modality.TEXT: "workers.text.handler",
    Modality.SPEECH: "workers.speech.handler",
    Modality.IMAGE: "workers.image.handler",
    Modality.VIDEO: "workers.video.handler",
}


class HandlerUnavailable(RuntimeError):
    pass


def handler_factory(modality: Modality) -> Callable[[], Handler]:
    path = HANDLERS[modality]
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as exc:
        raise HandlerUnavailable(
            f"no {modality.value} worker: {exc.name} is not installed"
            + (" (install the extra: pip install 'genloom[...]')" if exc.name != path else "")
        ) from None
    factory = getattr(module, "create_handler", None)
    if factory is None:
        raise HandlerUnavailable(f"{path} has no create_handler()")
    return factory

