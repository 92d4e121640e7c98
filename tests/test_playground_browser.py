"""The playground (GET /) and the API docs (GET /docs) in a real headless Chromium
(Debian's `chromium` + `chromium-driver`, driven by selenium), against the demo stack
as `make demo` runs it (stack.py: supervisor + model process on the demo model + one
gunicorn worker), with the answer cache on, API_KEYS set, one model call at a time
and no admission line (so a second call is refused with 429 at once), and model
faults armable (LLAVA_FAULTS=1, to hold that one call).

A person's path, in order: the strip shows the model loading then ready; asking
without the key says a key is needed; with it, a free question's answer appears in
`answer` piece by piece while the request is still open, then SUCCESS, and the
same again CACHED; a preset answers JSON; a text file is refused with the gateway's
reason; an overloaded service says when to retry; a killed model process shows as
restarting, then ready; the key stays in this tab only; /docs lists the analyze
endpoint. Throughout, the browser reports no Content-Security-Policy violation or
script error and asks no other host for anything.

Screenshots of each step go to the test's tmp folder (printed at the end; `pytest
-rA` shows it) and, when TEST_ARTIFACTS_DIR is set, to $TEST_ARTIFACTS_DIR/playground.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from harness.stack import demo_env
from tests.images import jpeg
from tests.procs import Proc, python

KEY = "playground-test-key"
FINAL = ("SUCCESS", "CACHED", "FALLBACK", "VALIDATION_ERROR", "UNAUTHORIZED", "OVERLOADED", "SERVICE_UNAVAILABLE",
         "INTERNAL_ERROR", "UNREACHABLE")
ANSWER_S = 120   # a 512-token answer on the demo model takes a second or two; CI's 2 cores are shared
READY_S = 180


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-dev.txt)"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"`{program}` is not on PATH: apt-get install chromium chromium-driver (.ci/run does)"
    return None


MISSING = _browser_missing()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MISSING is not None, reason=f"no headless Chromium to drive: {MISSING}")]


class Stack:
    def __init__(self, proc: Proc, ports: dict, home: Path):
        self.proc, self.home = proc, home
        self.url = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"
        self.model_url = f"http://127.0.0.1:{ports['MODEL_PORT']}"
        self.supervisor_url = f"http://127.0.0.1:{ports['SUPERVISOR_PORT']}"
        self.gateway_port = ports["GATEWAY_PORT"]

    @property
    def photo(self) -> Path:
        """The banner's example photo (a sunset), made by stack.py once it is ready."""
        return self.home / "llava-service" / "photo.jpg"


@pytest.fixture(scope="module")
def stack(demo_model_dir, tmp_path_factory):
    """Yielded as soon as the gateway answers: the page sees the model start."""
    home = tmp_path_factory.mktemp("playground-stack")
    # Twelve warmup requests keep the demo model in its `warming up` phase for seconds (about 4 s
    # on 2 cores; it loads in a fraction of one), long enough for the strip to show. One gateway
    # worker with one model call slot and no line: the second request is refused at once.
    env = demo_env(demo_model_dir, WARMUP_REQUESTS=12, API_KEYS=KEY, PAGES_ENABLED="true", GATEWAY_WORKERS=1,
                   MAX_UPSTREAM_IN_FLIGHT=1, ADMISSION_QUEUE=0, LLAVA_FAULTS=1, XDG_CACHE_HOME=home)
    ports = {name: env[name] for name in ("GATEWAY_PORT", "MODEL_PORT", "SUPERVISOR_PORT")}
    with Proc(python("stack.py"), env=env) as proc:
        stack = Stack(proc, ports, home)
        proc.wait_for(stack.url + "/health/live", timeout=60)
        yield stack


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,900",
                     "--disable-gpu", "--no-first-run", "--disable-extensions", "--disable-sync",
                     # Chromium's own traffic (updates, safe browsing): this machine talks to loopback only.
                     "--disable-background-networking", "--disable-component-update", "--disable-default-apps"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shoot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("playground-screenshots")
    extra = Path(os.environ["TEST_ARTIFACTS_DIR"]) / "playground" if os.environ.get("TEST_ARTIFACTS_DIR") else None

    def save(driver, name: str) -> Path:
        """The whole page, not only the window (Chromium's DevTools protocol)."""
        path = folder / f"{name}.png"
        driver.execute_script("window.scrollTo(0, 0)")  # the sticky top bar at the top of the picture
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))
        if extra is not None:
            extra.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, extra / path.name)
        return path

    yield save
    print(f"\nplayground screenshots: {folder}" + (f" and {extra}" if extra else ""))


@pytest.fixture(autouse=True)
def browser_stays_clean(request, stack, browser):
    """After every step: no CSP violation or script error in the console, and no
    request to any other host (Chromium's own network log)."""
    yield
    problems = [entry["message"] for entry in browser.get_log("browser")
                if "Content Security Policy" in entry["message"] or entry.get("source") == "javascript"]
    assert not problems, problems
    elsewhere = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith((stack.url + "/", "data:", "blob:")):
                elsewhere.add(url)
    assert not elsewhere, f"the page asked other hosts: {elsewhere}"


# --------------------------------------------------------------------- helpers

def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def until(driver, condition, timeout: float, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"waited {timeout} s for {what}; status {by_id(driver, 'status').text!r}, "
                             f"model {by_id(driver, 'model-state').text!r}") from None


def record_model_states(driver) -> None:
    driver.execute_script("""
        const strip = document.getElementById("model-state");
        window.modelStates = [];
        const note = () => window.modelStates.push([strip.dataset.state, strip.textContent.trim()]);
        note();
        new MutationObserver(note).observe(strip, {attributes: true, childList: true, subtree: true,
                                                   characterData: true});""")


def model_states(driver) -> list[list[str]]:
    return driver.execute_script("return window.modelStates")


def record_answer(driver) -> None:
    """Every change of `answer`, with the status shown at that moment."""
    driver.execute_script("""
        const answer = document.getElementById("answer"), status = document.getElementById("status");
        window.answerPaints = [];
        new MutationObserver(() => window.answerPaints.push([answer.textContent.length, status.dataset.status]))
            .observe(answer, {childList: true, characterData: true, subtree: true});""")


def choose(driver, path: Path, prompt: str | None) -> None:
    by_id(driver, "image").send_keys(str(path))
    if prompt is not None:
        by_id(driver, "prompt").clear()
        by_id(driver, "prompt").send_keys(prompt)


def ask(driver) -> str:
    by_id(driver, "ask").click()
    until(driver, lambda d: by_id(d, "status").text in FINAL and by_id(d, "ask").is_enabled(), ANSWER_S,
          "an answer")
    return by_id(driver, "status").text


# --------------------------------------------------------------------- the path

def test_the_strip_shows_the_model_loading_then_ready(stack, browser, shoot):
    browser.get(stack.url + "/")
    record_model_states(browser)
    until(browser, lambda d: by_id(d, "model-state").get_attribute("data-state") in ("loading", "ready"), READY_S,
          "the model to load")
    if by_id(browser, "model-state").get_attribute("data-state") == "loading":
        shoot(browser, "01-model-loading")
    until(browser, lambda d: by_id(d, "model-state").get_attribute("data-state") == "ready", READY_S,
          "the model to be ready")
    shoot(browser, "02-model-ready")
    loading = [text for state, text in model_states(browser) if state == "loading"]
    assert loading, f"the strip never showed the model loading: {model_states(browser)}"
    assert any(re.search(r"Model loading · warming up \(\d+/12 requests done\)", text) for text in loading), loading
    assert re.search(r"Model ready · llava-demo", by_id(browser, "model-state").text)
    deadline = time.monotonic() + 30
    while "stack: ready" not in stack.proc.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert f"playground, in a browser: http://localhost:{stack.gateway_port}/ " in stack.proc.output(), \
        "make demo's banner names the playground"


def test_without_the_key_the_page_asks_for_it(stack, browser, shoot):
    choose(browser, stack.photo, "What's in this picture?")
    assert ask(browser) == "UNAUTHORIZED"
    assert by_id(browser, "error-title").text == "An API key is needed"
    assert by_id(browser, "api-key").is_displayed(), "the options open on the key field"
    assert browser.switch_to.active_element.get_attribute("id") == "api-key"
    assert by_id(browser, "ask-note").text == "Enter the API key above, then ask again."
    shoot(browser, "03-key-needed")


def test_a_free_question_streams_in_then_the_same_again_is_cached(stack, browser, shoot):
    from selenium.webdriver.common.keys import Keys

    by_id(browser, "api-key").send_keys(KEY, Keys.TAB)  # change: the presets load with the key
    record_answer(browser)
    by_id(browser, "ask").click()
    until(browser, lambda d: by_id(d, "status").text in FINAL or (
        by_id(d, "status").get_attribute("data-status") == "STREAMING" and by_id(d, "answer").text), ANSWER_S,
        "the first words")
    shoot(browser, "04-streaming")
    until(browser, lambda d: by_id(d, "status").text in FINAL, ANSWER_S, "the answer")
    assert by_id(browser, "status").text == "SUCCESS", by_id(browser, "error").text
    paints = browser.execute_script("return window.answerPaints")
    while_open = sorted({length for length, status in paints if status == "STREAMING" and length})
    assert len(while_open) >= 2, f"the answer must grow while the request is open, not arrive in one paint: {paints}"
    first = by_id(browser, "answer").text
    assert len(first) >= while_open[-1] > 0
    assert re.fullmatch(r"\d{3,} / \d+", by_id(browser, "tokens").text), "prompt / completion tokens"
    assert re.fullmatch(r"\d+ ms|\d+\.\d\d s", by_id(browser, "latency").text)
    assert by_id(browser, "status-note").text == "Answered by the model."
    shoot(browser, "05-success")

    assert ask(browser) == "CACHED"
    assert by_id(browser, "answer").text == first
    assert by_id(browser, "status-note").text.startswith("From the cache")
    shoot(browser, "06-cached")


def test_a_preset_answers_json(stack, browser, shoot):
    from selenium.webdriver.support.ui import Select

    until(browser, lambda d: len(Select(by_id(d, "preset")).options) > 1, 10, "the presets")
    Select(by_id(browser, "preset")).select_by_value("describe")
    assert by_id(browser, "prompt-label").text == "Extra context (optional)"
    by_id(browser, "prompt").clear()
    assert ask(browser) == "SUCCESS", by_id(browser, "error").text
    data = json.loads(by_id(browser, "answer").text)
    assert set(data) == {"caption", "objects", "text_seen"}
    shoot(browser, "07-preset")
    Select(by_id(browser, "preset")).select_by_value("")


def test_a_text_file_is_refused_with_the_gateway_reason(stack, browser, shoot, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Not a picture at all.\n")
    choose(browser, notes, "What's in this picture?")
    assert ask(browser) == "VALIDATION_ERROR"
    assert by_id(browser, "error-title").text == "This file cannot be used"
    reason = by_id(browser, "error-text").text
    assert reason.startswith("The image is not a recognised image; accepted formats are") and "JPEG" in reason
    assert "`" not in reason, "the part's name is left out for a person"
    shoot(browser, "08-not-an-image")


def test_an_overloaded_service_says_when_to_retry(stack, browser, shoot):
    # The model's one call slot is held by another client's request, slowed in the model.
    armed = requests.post(stack.model_url + "/_faults", json={"mode": "slow", "count": 1, "seconds": 8,
                                                             "stage": "prefill"}, timeout=5)
    assert armed.status_code == 200, armed.text
    held = {}
    holder = threading.Thread(target=lambda: held.update(answer=requests.post(
        stack.url + "/api/v1/multimodal/analyze", headers={"Authorization": f"Bearer {KEY}"},
        files={"image": ("other.jpg", jpeg(320, 240, seed=5), "image/jpeg")}, data={"prompt": "Hold on."},
        timeout=60)))
    holder.start()
    deadline = time.monotonic() + 20
    while not re.search(r"^llava_upstream_in_flight_requests\{[^}]*\} 1\.0$",
                        requests.get(stack.url + "/metrics", timeout=5).text, re.M):
        assert time.monotonic() < deadline, "the holding request never reached the model"
        time.sleep(0.05)

    choose(browser, stack.photo, "Is the sun rising or setting?")
    assert ask(browser) == "OVERLOADED"
    assert by_id(browser, "error-title").text == "The service is at capacity"
    assert "model calls are running" in by_id(browser, "error-text").text, "the gateway's reason"
    assert "retry in" not in by_id(browser, "error-text").text, "said once, by the countdown"
    assert re.match(r"Try again in \d+ s \(at .+\)\.", by_id(browser, "error-retry").text)
    shoot(browser, "09-overloaded")
    holder.join(60)
    assert held["answer"].json()["status"] == "SUCCESS"
    until(browser, lambda d: by_id(d, "error-retry").text == "You can try again now.", 30, "the countdown")


def test_a_killed_model_shows_as_restarting_then_ready(stack, browser, shoot):
    pid = requests.get(stack.supervisor_url + "/status", timeout=5).json()["pid"]
    record_model_states(browser)
    os.kill(int(pid), signal.SIGKILL)
    until(browser, lambda d: by_id(d, "model-state").get_attribute("data-state") == "restarting", 30,
          "the strip to show the restart")
    assert "Model restarting · it is not answering" in by_id(browser, "model-state").text
    shoot(browser, "10-restarting")
    until(browser, lambda d: by_id(d, "model-state").get_attribute("data-state") == "ready", READY_S,
          "the model to be back")
    states = [state for state, _ in model_states(browser)]
    assert states.index("restarting") < len(states) - 1 - states[::-1].index("ready")


def test_the_key_stays_in_this_tab_only(stack, browser):
    browser.refresh()
    assert by_id(browser, "api-key").get_attribute("value") == KEY, "kept for the tab (sessionStorage)"
    assert browser.execute_script("return localStorage.length") == 0 and not browser.get_cookies()
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(stack.url + "/")
        assert by_id(browser, "api-key").get_attribute("value") == "", "a new tab starts without the key"
    finally:
        browser.close()
        browser.switch_to.window(first)


def test_the_docs_list_the_analyze_endpoint(stack, browser, shoot):
    from selenium.webdriver.common.by import By

    browser.get(stack.url + "/docs")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-path="/api/v1/multimodal/analyze"]'), 30,
          "Swagger UI to list the analyze endpoint")
    assert browser.find_element(By.CSS_SELECTOR, '[data-path="/api/v1/multimodal/analyze"]').is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "button.authorize.locked"), "the tab's key is filled in"
    shoot(browser, "11-docs")
