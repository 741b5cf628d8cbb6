"""The dashboard in a real browser: Debian's headless Chromium driven by Selenium
through chromium-driver, against `odiseo run` (API and worker in one process)
delivering to the recording SMTP server.

The tests sign in, send mail through the API and watch the list change, open a
message, cancel, retry, suppress and unsuppress, replay a webhook delivery, and
load a hostile HTML part in the preview. Each page is photographed at a laptop and
a phone width into tests/ui/screenshots/ (git-ignored); a few are in docs/.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.app import ALL_KEY, READ_KEY, auth
from tests.support.processes import Launcher, Process, base_env, poll, smtp_env
from tests.support.receiver import Receiver
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.e2e

SHOTS = Path(__file__).parent / "screenshots"
LAPTOP, PHONE = (1366, 900), (390, 844)
WAIT = 60.0  # seconds a page may take to show what it should (the machine is shared)
REFUSED = "refused@example.com"
THROTTLED = "slow@throttled.example"


@dataclass
class Dashboard:
    process: Process
    browser: WebDriver
    receiver: Receiver
    smtp: SmtpServer

    @property
    def url(self) -> str:
        return self.process.base_url

    def api(self) -> httpx.Client:
        return self.process.client(headers=auth(ALL_KEY))

    def send(self, **fields: Any) -> str:
        body = {"to": ["someone@example.com"], "subject": "Hello", "body": "<p>Hi</p>", **fields}
        with self.api() as http:
            answer = http.post("/emails", json=body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["message_id"])

    def status(self, message_id: str) -> str:
        with self.api() as http:
            return str(http.get(f"/emails/{message_id}").json()["status"])

    def open(self, path: str) -> None:
        self.browser.get(self.url + path)

    def text(self) -> str:
        return str(self.browser.find_element(By.TAG_NAME, "body").text)

    def wait_text(self, text: str) -> None:
        def shown(_: Any) -> bool:
            try:
                return text in self.text()
            except StaleElementReferenceException:  # htmx swapped the part being read
                return False

        WebDriverWait(self.browser, WAIT).until(shown, f"{text!r} on the page")

    def click(self, label: str) -> None:
        """Press the button or link whose visible text (or aria-label) is `label`."""
        found = self.browser.find_elements(
            By.XPATH, f"//button[normalize-space()='{label}' or @aria-label='{label}']"
        ) or self.browser.find_elements(By.LINK_TEXT, label)
        assert found, f"no {label!r} on {self.browser.current_url}"
        found[0].click()

    def shoot(self, name: str) -> None:
        """Screenshots of the current page at both widths; the layout holds at each."""
        SHOTS.mkdir(exist_ok=True)
        for width, height in (LAPTOP, PHONE):
            self.browser.set_window_size(width, height)
            overflow = self.browser.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            wide = self.browser.execute_script(WIDE) if overflow > 1 else []
            assert overflow <= 1, f"{name} scrolls sideways by {overflow} px at {width} px: {wide}"
            self.browser.save_screenshot(str(SHOTS / f"{name}-{width}.png"))
        self.browser.set_window_size(*LAPTOP)


def chromium() -> WebDriver:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail("chromium and chromium-driver are needed: `make system-deps` installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={LAPTOP[0]},{LAPTOP[1]}")
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture
def dashboard(
    launcher: Launcher, sqlite_database: dict[str, str], smtp_server: SmtpServer
) -> Iterator[Dashboard]:
    """`odiseo run` on SQLite (the pages on both stores: test_pages.py), a webhook
    receiver, and a signed-out browser."""
    smtp_server.handler.rcpt_replies[REFUSED] = "550 5.1.1 no such user"
    smtp_server.handler.rcpt_replies[THROTTLED] = "451 4.7.0 Try again later"
    receiver = Receiver().start()
    env = base_env(
        **sqlite_database,
        **smtp_env(smtp_server),
        API_KEYS=f"{ALL_KEY},{READ_KEY}:read",
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_POLL_INTERVAL="0.2",
        EMAIL_WORKER_LEASE_SECONDS="6",
        SMTP_MAX_PER_DAY="100000",  # shown on the overview, never reached here
        DOMAIN_LIMITS="example.com=10000/h",
    )
    process = launcher.start(["run"], env)
    process.wait_ready()
    browser = chromium()
    try:
        yield Dashboard(process=process, browser=browser, receiver=receiver, smtp=smtp_server)
    finally:
        browser.quit()
        receiver.stop()


def sign_in(ui: Dashboard, key: str = ALL_KEY) -> None:
    ui.open("/ui/")
    assert "/ui/sign-in" in ui.browser.current_url
    ui.shoot("sign-in")
    field = ui.browser.switch_to.active_element  # the key field has the focus
    assert field.get_attribute("id") == "key"
    field.send_keys(key, Keys.ENTER)  # the keyboard alone
    ui.wait_text("Overview")
    assert key not in ui.browser.page_source and key not in ui.browser.current_url
    cookie = ui.browser.get_cookie("odiseo_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_sign_in_send_and_watch_the_message_go_out(dashboard: Dashboard) -> None:
    ui = dashboard
    sign_in(ui)
    ui.open("/ui/messages")
    message_id = ui.send(subject="Watch me go", tags=["browser"])
    row = f"//a[@href='/ui/messages/{message_id}']/ancestor::tr"

    def sent(_: Any) -> bool:  # htmx refreshes the rows: no reload here
        try:
            return "sent" in ui.browser.find_element(By.XPATH, row).text
        except Exception:
            return False

    WebDriverWait(ui.browser, WAIT).until(sent, "the message shown as sent in the list")
    ui.shoot("messages")
    ui.browser.find_element(By.XPATH, f"{row}//a").click()
    ui.wait_text("Timeline")
    assert "email.sent" in ui.text() and "250" in ui.text()
    ui.shoot("message")
    ui.open("/ui/")
    ui.wait_text("alive")  # the worker inside `odiseo run` reported itself
    assert "relay per day" in ui.text() and "example.com per hour" in ui.text()
    ui.send(to=[THROTTLED], subject="Slow down")  # the domain is paused, then recovers
    ui.wait_text("throttled.example")
    ui.shoot("overview")


def test_cancel_a_scheduled_message_and_retry_a_failed_one(dashboard: Dashboard) -> None:
    ui = dashboard
    sign_in(ui)
    later = ui.send(send_at="2031-01-01T00:00:00Z", subject="Not yet")
    ui.open(f"/ui/messages/{later}")
    ui.click("Cancel")
    ui.wait_text("The message is cancelled.")
    assert ui.status(later) == "cancelled"
    doomed = ui.send(to=[REFUSED], subject="Nobody home")
    poll(lambda: ui.status(doomed) == "failed", timeout=WAIT, what="the refused message failed")
    ui.open(f"/ui/messages/{doomed}")
    assert "550 5.1.1 no such user" in ui.text()
    ui.click("Retry")
    ui.wait_text("The message is queued again.")
    with ui.api() as http:
        events = http.get(f"/emails/{doomed}").json()["events"]
    assert "requeued" in [e["kind"] for e in events]


def test_add_and_remove_a_suppression(dashboard: Dashboard) -> None:
    ui = dashboard
    sign_in(ui)
    ui.open("/ui/suppressions")
    ui.browser.find_element(By.ID, "s-address").send_keys("gone@example.com")
    ui.browser.find_element(By.ID, "s-detail").send_keys("asked by phone", Keys.ENTER)
    ui.wait_text("The address is suppressed.")
    assert "gone@example.com" in ui.text()
    ui.shoot("suppressions")
    with ui.api() as http:
        assert http.get("/suppressions/gone@example.com").status_code == 200
    ui.click("Remove gone@example.com")
    ui.wait_text("The address may be mailed again.")
    with ui.api() as http:
        assert http.get("/suppressions/gone@example.com").status_code == 404


def test_replay_a_webhook_delivery(dashboard: Dashboard) -> None:
    ui = dashboard
    with ui.api() as http:
        created = http.post("/webhooks", json={"url": ui.receiver.url, "events": ["email.sent"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()["id"]
    ui.send(subject="Hook me")
    poll(lambda: len(ui.receiver.hits) == 1, timeout=WAIT, what="the first delivery")
    sign_in(ui)
    ui.open("/ui/webhooks")
    ui.shoot("webhooks")
    ui.open(f"/ui/webhooks/{endpoint}")
    ui.wait_text("succeeded")
    ui.shoot("webhook")
    (button,) = ui.browser.find_elements(By.XPATH, "//button[starts-with(@aria-label, 'Replay')]")
    button.click()
    ui.wait_text("The delivery is queued again.")
    poll(lambda: len(ui.receiver.hits) == 2, timeout=WAIT, what="the replayed delivery")
    assert ui.receiver.hits[0].webhook_id == ui.receiver.hits[1].webhook_id


def test_hostile_mail_html_runs_nothing_in_the_preview(dashboard: Dashboard) -> None:
    ui = dashboard
    trap = f"http://127.0.0.1:{ui.receiver.port}"
    hostile = (
        "<p>Hostile</p>"
        f"<script>location.href = '{trap}/script'</script>"
        f"<img src=x onerror=\"location.href = '{trap}/onerror'\">"
        f'<meta http-equiv="refresh" content="0;url={trap}/refresh">'
    )
    message_id = ui.send(body=hostile, subject="Hostile HTML")
    sign_in(ui)
    ui.open(f"/ui/messages/{message_id}")
    frame = ui.browser.find_element(By.CSS_SELECTOR, "iframe.preview")
    assert frame.get_attribute("sandbox") == ""
    ui.browser.switch_to.frame(frame)
    WebDriverWait(ui.browser, WAIT).until(
        lambda b: "Hostile" in b.find_element(By.TAG_NAME, "body").text
    )
    ui.browser.switch_to.default_content()
    time.sleep(3)  # give a refresh, a script or an onerror time to go somewhere
    assert [hit.path for hit in ui.receiver.hits] == []
    ui.browser.switch_to.frame(frame)
    assert "Hostile" in ui.browser.find_element(By.TAG_NAME, "body").text  # still our page
    ui.browser.switch_to.default_content()
    assert ui.browser.current_url.endswith(f"/ui/messages/{message_id}")


def test_templates_preview_live_and_a_read_key_sees_no_actions(dashboard: Dashboard) -> None:
    ui = dashboard
    with ui.api() as http:
        for html in ["<h1>Hi {{ name }}</h1>", "<h1>Hello {{ name }}</h1><p>Welcome.</p>"]:
            saved = http.put(
                "/templates/welcome",
                json={"subject": "Hi", "html": html, "sample_variables": {"name": "Ana"}},
            )
            assert saved.status_code in (200, 201), saved.text
    sign_in(ui, READ_KEY)
    ui.open("/ui/templates")
    ui.shoot("templates")
    ui.open("/ui/templates/welcome")
    html = ui.browser.find_element(By.ID, "t-html")
    html.send_keys(Keys.END, "<p>Typed {{ name }}</p>")
    frame = ui.browser.find_element(By.CSS_SELECTOR, "iframe.preview")

    def previewed(browser: Any) -> bool:
        browser.switch_to.frame(frame)
        try:
            return "Typed Ana" in browser.find_element(By.TAG_NAME, "body").text
        finally:
            browser.switch_to.default_content()

    WebDriverWait(ui.browser, WAIT).until(previewed, "the live preview")
    assert "Save as a new version" not in ui.text()  # read only
    assert "+<h1>Hello {{ name }}</h1><p>Welcome.</p>" in ui.text()  # the diff
    ui.shoot("template")


def test_every_control_has_a_label_and_text_is_readable(dashboard: Dashboard) -> None:
    """Keyboard: the first Tab reaches the skip link; every control is labelled; body
    text, muted text, links, buttons and status badges reach 4.5:1 against their
    background (WCAG AA), computed by the browser."""
    ui = dashboard
    message_id = ui.send(subject="Labels")
    sign_in(ui)
    for path in ["/ui/", "/ui/messages", f"/ui/messages/{message_id}", "/ui/suppressions",
                 "/ui/templates", "/ui/templates/new-one", "/ui/webhooks"]:  # fmt: skip
        ui.open(path)
        ui.browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = ui.browser.switch_to.active_element
        assert focused.get_attribute("class") == "skip", (path, focused.get_attribute("outerHTML"))
        unlabelled = ui.browser.execute_script(UNLABELLED)
        assert unlabelled == [], (path, unlabelled)
        low = ui.browser.execute_script(CONTRAST)
        assert low == [], (path, low)


def test_a_refresh_never_takes_the_keyboard_focus_away(dashboard: Dashboard) -> None:
    """The overview and the first page of messages refresh themselves; while the focus
    is inside one, it waits (replacing it would throw the focus back to the top), and
    it refreshes again once the focus has left."""
    ui = dashboard
    ui.send(subject="Focus")
    sign_in(ui)
    for path, shown, region in [
        ("/ui/", "alive", "overview"),
        ("/ui/messages", "Focus", "message-rows"),
    ]:
        ui.open(path)
        ui.wait_text(shown)
        href = tab_into(ui, region)
        ui.browser.execute_script(MARK, region)
        time.sleep(8)  # more than one refresh period (5 s, 3 s)
        still = ui.browser.switch_to.active_element
        assert still.get_attribute("href") == href, (path, still.get_attribute("outerHTML"))
        assert ui.browser.execute_script(MARKED, region), f"#{region} replaced while focused"
        ui.browser.execute_script("document.activeElement.blur()")
        WebDriverWait(ui.browser, WAIT).until(
            lambda browser, region=region: not browser.execute_script(MARKED, region),
            f"#{region} refreshed once the focus left",
        )


def tab_into(ui: Dashboard, region: str) -> str:
    """Press Tab until the focus is on a link inside #region; that link's href."""
    ui.browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    for _ in range(80):
        focused = ui.browser.switch_to.active_element
        if focused.get_attribute("href") and ui.browser.execute_script(INSIDE, region):
            return str(focused.get_attribute("href"))
        focused.send_keys(Keys.TAB)
    pytest.fail(f"Tab never reached a link in #{region}")


INSIDE = "return document.getElementById(arguments[0]).contains(document.activeElement);"
MARK = "document.getElementById(arguments[0]).dataset.seen = '1';"
MARKED = "const r = document.getElementById(arguments[0]); return !!(r && r.dataset.seen);"


WIDE = """
const d = document.documentElement;
const wide = [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(e => !e.parentElement.closest('.scroll'))
  .map(e => e.tagName + '.' + e.className).slice(0, 8);
return [d.scrollWidth, d.clientWidth, document.body.scrollWidth].concat(wide);
"""
UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button, iframe')]
  .filter(e => e.type !== 'hidden')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('title') && !(e.tagName === 'BUTTON' && e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 120));
"""
CONTRAST = """
const rgb = s => s.match(/[0-9.]+/g).slice(0, 3).map(Number);
const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
  return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const background = e => {
  for (; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (!c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return rgb(c);
  }
  return [255, 255, 255];
};
const low = [];
for (const e of document.querySelectorAll('body, p, td, th, a, button, label, .muted, .status')) {
  if (!e.textContent.trim() || e.disabled) continue;
  const f = lum(rgb(getComputedStyle(e).color)), b = lum(background(e));
  const ratio = (Math.max(f, b) + 0.05) / (Math.min(f, b) + 0.05);
  if (ratio < 4.5) low.push(e.tagName + '.' + e.className + ': ' + ratio.toFixed(2));
}
return low;
"""
