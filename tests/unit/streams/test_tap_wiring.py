"""streams.tap.register: the taps run as one task of the app, grouped under the app id, and a tap that
fails stops the process (app.crash) instead of leaving it up without that consumer."""

from __future__ import annotations

import pytest

from infra.settings.streams import StreamsSettings
from streams import tap


class App:
    """What register uses of a faust app: `task` and `crash`."""

    def __init__(self) -> None:
        self.tasks = []
        self.crashed: BaseException | None = None

    def task(self, fn):
        self.tasks.append(fn)
        return fn

    async def crash(self, reason: BaseException) -> None:
        self.crashed = reason


class Broken:
    dead_letters = None

    def __init__(self, group: str, seen: list[str]) -> None:
        seen.append(group)

    async def open(self) -> None:
        raise RuntimeError("store unreachable")

    async def handle(self, records) -> None:
        raise AssertionError("never reached")

    async def close(self) -> None:
        pass


async def test_a_failing_tap_crashes_the_app_and_groups_are_named_by_the_app_id():
    app, seen = App(), []
    specs = [tap.TapSpec("fanout", ["genloom.events"], lambda group: Broken(group, seen))]
    tap.register(app, specs, bootstrap="127.0.0.1:1", settings=StreamsSettings(app_id="genloom-x"))
    assert len(app.tasks) == 1
    with pytest.raises(RuntimeError, match="store unreachable"):
        await app.tasks[0]()
    assert seen == ["genloom-x-fanout"]
    assert isinstance(app.crashed, RuntimeError)


def test_no_specs_no_task():
    app = App()
    tap.register(app, [], bootstrap="127.0.0.1:1", settings=StreamsSettings())
    assert app.tasks == []
