"""The page at / in headless Chromium (Selenium), on the real stack: the key typed in, a chat whose
tokens arrive one by one, an image job followed with a job token to the image shown, its events in
the job list, speech played back, a video job to its clip. Screenshots are kept under the pytest basetemp (the path is printed).

Needs Debian's `chromium` and `chromium-driver` (infra/scripts/bootstrap.sh installs them where it
can); without them the test skips, or fails when CI=true."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.test_openai_chat import MODEL
from tests.integration.test_openai_media import media_workers  # noqa: F401 - image, video and speech workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANT = "t-ui"
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser_tools() -> tuple[str, str]:
    if CHROMEDRIVER is None or CHROMIUM is None:
        message = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM, CHROMEDRIVER


def _wait(condition, timeout: float = 180.0, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


#: records every state of the chat log's text, so the test sees tokens arrive one by one
_WATCH_CHAT = """
window.__chatStates = [];
const log = document.getElementById('chat-log');
new MutationObserver(() => {
  const reply = log.querySelector('.msg.assistant:last-child');
  if (reply) window.__chatStates.push(reply.textContent);
}).observe(log, {subtree: true, childList: true, characterData: true});
"""


def _drive(url: str, key: str, tools: tuple[str, str], shots: Path) -> dict:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = tools[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(tools[1]))
    seen: dict = {}
    try:
        driver.get(url + "/")
        find = driver.find_element
        find(By.ID, "api-key").send_keys(key)
        find(By.CSS_SELECTOR, "#key-form button").click()
        _wait(lambda: driver.execute_script("return document.body.dataset.ready === 'true'"), what="the key")
        seen["stored_key"] = driver.execute_script("return sessionStorage.getItem('genloom.apiKey')")
        seen["models"] = [o.get_attribute("value") for o in find(By.ID, "chat-model").find_elements(By.TAG_NAME, "option")]
        driver.save_screenshot(str(shots / "1-key.png"))

        driver.execute_script(_WATCH_CHAT)
        find(By.ID, "chat-input").send_keys("Tell me a long story about three colours.")  # several moderation windows
        find(By.CSS_SELECTOR, "#chat-form button").click()
        _wait(lambda: "text · completed" in find(By.ID, "job-list").text, what="the chat job in the job list")
        seen["chat_states"] = driver.execute_script("return window.__chatStates")
        # the DOM's text, as the observer records it: Selenium's .text is the rendered text, which drops
        # the trailing newlines a reply may end with
        seen["reply"] = driver.execute_script(
            "return document.querySelector('#chat-log .msg.assistant:last-child').textContent")
        driver.save_screenshot(str(shots / "2-chat.png"))

        find(By.ID, "image-prompt").send_keys("a hand-written seven")
        find(By.CSS_SELECTOR, "#image-form button").click()
        seen["image_size"] = _wait(lambda: driver.execute_script(
            "const img = document.querySelector('#image-result img');"
            " return img && img.complete && img.naturalWidth > 0 ? [img.naturalWidth, img.naturalHeight] : null"),
            what="the image")
        seen["image_src"] = find(By.CSS_SELECTOR, "#image-result img").get_attribute("src")
        seen["progress"] = driver.execute_script(
            "const bar = document.getElementById('image-progress'); return [bar.value, bar.max]")
        driver.save_screenshot(str(shots / "3-image.png"))

        _wait(lambda: "image · completed" in find(By.ID, "job-list").text, what="the image job in the job list")
        item = next(li for li in find(By.ID, "job-list").find_elements(By.TAG_NAME, "li") if "image" in li.text)
        item.click()
        _wait(lambda: " completed " in find(By.ID, "job-events").text, what="the image job's events")
        seen["events"] = find(By.ID, "job-events").text
        driver.save_screenshot(str(shots / "4-jobs.png"))

        find(By.ID, "speech-input").send_keys("Hello from the page.")
        find(By.CSS_SELECTOR, "#speech-form button").click()
        seen["audio"] = _wait(lambda: driver.execute_script(
            "const a = document.getElementById('speech-audio');"
            " return a.readyState >= 1 && a.duration > 0 ? [a.src, a.duration] : null"), what="the speech")

        find(By.ID, "video-prompt").send_keys("a seven that turns")
        find(By.CSS_SELECTOR, "#video-form button").click()
        _wait(lambda: driver.execute_script(
            "const s = document.getElementById('video-status');"
            " return s.textContent.startsWith('done') || s.classList.contains('error')"), what="the video")
        seen["video"] = driver.execute_script(
            "const v = document.getElementById('video-result'), bar = document.getElementById('video-progress');"
            " return [v.src, bar.value, bar.max, document.getElementById('video-status').textContent]")
        try:
            seen["video_frames"] = _wait(lambda: driver.execute_script(
                "const v = document.getElementById('video-result');"
                " return v.readyState >= 1 ? [v.videoWidth, v.videoHeight, v.duration] : null"), timeout=30,
                what="the clip's metadata")
        except AssertionError as exc:  # say what the element knows: a decode error, or a load that never began
            state = driver.execute_script(
                "const v = document.getElementById('video-result');"
                " return {network: v.networkState, ready: v.readyState, preload: v.preload,"
                " error: v.error && [v.error.code, v.error.message], src: v.src.slice(0, 40)}")
            raise AssertionError(f"{exc}: {state}; {seen['video']}") from None
        driver.save_screenshot(str(shots / "5-media.png"))
        seen["console"] = [f'{entry["level"]} {entry["message"]}' for entry in driver.get_log("browser")]
    finally:
        driver.quit()
    return seen


async def test_the_page_chats_and_draws_in_a_real_browser(
        browser_tools, gateway_url, edge_keys, text_pipeline, media_workers, tmp_path_factory):  # noqa: F811
    shots = tmp_path_factory.getbasetemp() / "ui-screenshots"
    shots.mkdir(exist_ok=True)
    print(f"\nscreenshots of the page: {shots}")
    seen = await asyncio.to_thread(_drive, gateway_url, edge_keys[TENANT], browser_tools, shots)

    assert seen["stored_key"] == edge_keys[TENANT] and MODEL in seen["models"]
    states = [s for s in seen["chat_states"] if s]
    assert seen["reply"] and states[-1] == seen["reply"]
    assert len(set(states)) >= 2 and all(b.startswith(a) for a, b in zip(states, states[1:]))  # grew token by token
    width, height = seen["image_size"]
    assert width > 0 and height > 0 and seen["image_src"].startswith("blob:")
    assert seen["progress"][0] == seen["progress"][1] == 2  # both denoising steps shown
    events = seen["events"].splitlines()
    assert events[0].startswith("#1 accepted") and any(" progress " in e for e in events)
    assert any(" artifact " in e for e in events) and " completed " in events[-1]
    problems = [m for m in seen["console"] if (m.startswith("SEVERE") or "Content Security Policy" in m)
                and "favicon.ico" not in m]  # no icon: the one 404 a browser asks for
    assert not problems, problems  # no CSP violation, no script or fetch error
    audio_src, seconds = seen["audio"]
    assert audio_src.startswith("blob:") and seconds > 0
    video_src, step, steps, status = seen["video"]
    assert status.startswith("done") and video_src.startswith("blob:") and step == steps == 3, seen["video"]
    width, height, seconds = seen["video_frames"]
    assert width > 0 and height > 0 and seconds > 0
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-key.png", "2-chat.png", "3-image.png", "4-jobs.png", "5-media.png"]
