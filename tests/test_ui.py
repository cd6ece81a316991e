"""The web review UI end to end in real headless Chromium (Debian chromium + chromium-driver),
against a real `moderate serve` process; screenshots go to test-artifacts/ (ignored by git)."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from .test_api import api  # noqa: F401  (the served API, a real `moderate serve` process)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots; ignored by git
UNDO_SECONDS = 5  # moderate.service.ui.UNDO_SECONDS

pytestmark = pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                reason="needs Debian's chromium and chromium-driver (make test installs them as root)")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def shot(browser, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def encoded(path: Path, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.open(path).convert("RGB").save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture
def items(api, banked, photos):  # noqa: F811
    """A review bank, and queued uploads: a two-page PDF (the flagged photo on page 2), a TIFF,
    and one PNG uploaded twice."""
    client, auth = api
    banked.banks.create("SPAM", action="review")
    banked.banks.add("SPAM", [photos["chelsea"]], metadata={"note": "case 42 cat meme", "source_url":
                                                            "https://reports.example/42"})
    pages = [Image.open(photos["coins"]).convert("RGB").resize((600, 450)), Image.open(photos["chelsea"]).convert("RGB")]
    pdf = io.BytesIO()
    pages[0].save(pdf, "PDF", save_all=True, append_images=pages[1:], resolution=72)
    uploads = {"post.pdf": pdf.getvalue(), "scan.tiff": encoded(photos["chelsea"], "TIFF", compression="tiff_lzw"),
               "cat.png": photos["chelsea"].read_bytes()}
    ids = {}
    for name, data in [*uploads.items(), ("cat.png", uploads["cat.png"])]:
        checked = client.post("/v1/check?enqueue=true", content=data, headers={**auth["checker"], "X-Filename": name})
        assert checked.json()["verdict"] == "review", checked.text
        ids[name] = max(i["id"] for i in client.get("/v1/queue?status=all", headers=auth["moderator"]).json())
    return ids


def sign_in(browser, base: str, secret: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/ui")
    assert "/ui/login" in browser.current_url  # not signed in: sent to sign in
    browser.find_element(By.ID, "token").send_keys(secret)
    browser.find_element(By.ID, "signin").click()
    browser.find_element(By.ID, "open-count")


def press(browser, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).send_keys(key).perform()


def test_a_moderator_works_a_pdf_and_a_tiff_item(api, items, browser):  # noqa: F811
    from functools import partial

    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait as Wait

    class Reloading(Wait):
        """A page that reloads (after a claim or a decision) replaces the element between finding
        and reading it: Chromium says so as a stale element, or as a node that "does not belong to
        the document"; both mean look again."""

        def until(self, method, message=""):
            def settled(driver):
                try:
                    return method(driver)
                except WebDriverException as exc:
                    if "does not belong to the document" in str(exc):
                        return False
                    raise

            return super().until(settled, message)

    WebDriverWait = partial(Reloading, ignored_exceptions=(StaleElementReferenceException,))  # noqa: N806

    client, auth = api
    base = str(client.base_url).rstrip("/")
    sign_in(browser, base, auth["moderator"]["Authorization"].split()[1])
    session_cookie = browser.get_cookie("moderate_session")
    assert session_cookie["httpOnly"] and session_cookie["sameSite"] == "Strict"
    assert "moderate_session" not in browser.execute_script("return document.cookie")
    assert auth["moderator"]["Authorization"].split()[1] not in session_cookie["value"]  # never the token itself
    assert browser.find_element(By.ID, "open-count").text == "4 open, 0 claimed"
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.item")
    assert len(rows) == 3  # the PNG uploaded twice is one row ...
    assert any(r.find_element(By.CSS_SELECTOR, ".copies").text == "×2" for r in rows)  # ... with its count
    assert "PDQ distance" in rows[0].find_element(By.CSS_SELECTOR, ".why").text  # why it is first
    shot(browser, "queue")

    def item_state(name):
        return client.get(f"/v1/queue/{items[name]}", headers=auth["moderator"]).json()

    # The PDF: viewing does not claim; the evidence is on page 2, with the bank's action and metadata.
    browser.get(f"{base}/ui/items/{items['post.pdf']}")
    image = browser.find_element(By.ID, "image")
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return arguments[0].complete", image))
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    assert item_state("post.pdf")["status"] == "open"
    pages = browser.find_elements(By.CSS_SELECTOR, "#frames a")
    assert {p.text.split(",")[0] for p in pages} == {"page 1", "page 2"}  # rendered pages and their pictures
    (shown,) = [p for p in pages if "current" in p.get_attribute("class")]
    assert shown.text.startswith("page 2") and "evidence" in shown.get_attribute("class")
    evidence = browser.find_element(By.ID, "evidence").text
    assert "flagged image chelsea" in evidence and "SPAM" in evidence and "action review" in evidence
    assert "case 42 cat meme" in evidence and "https://reports.example/42" in evidence and "page 2" in evidence
    assert browser.find_elements(By.CSS_SELECTOR, ".frame svg polygon, .frame svg rect")  # the match, drawn
    assert "shield" in image.get_attribute("class")
    assert "blur" in browser.execute_script("return getComputedStyle(arguments[0]).filter", image)
    confirm = browser.find_element(By.ID, "confirm")
    assert browser.execute_script("return arguments[0].getBoundingClientRect().bottom", confirm) <= 1000
    shot(browser, "item-pdf-blurred")

    press(browser, "v")
    assert "shield" not in image.get_attribute("class")
    shot(browser, "item-pdf-revealed")
    press(browser, "v")  # blurs again
    assert "shield" in image.get_attribute("class")

    press(browser, "k")  # claim explicitly
    WebDriverWait(browser, 15).until(lambda b: "Claimed by you" in b.find_element(By.ID, "claim-state").text)
    assert (item_state("post.pdf")["status"], item_state("post.pdf")["claimed_by"]) == ("claimed", "moderator-1")
    held = client.post(f"/v1/queue/{items['post.pdf']}/claim", headers=auth["admin"])
    assert held.status_code == 409 and "moderator-1 until" in held.json()["error"]
    browser.find_element(By.ID, "release").click()
    WebDriverWait(browser, 15).until(lambda b: b.find_elements(By.ID, "claim"))
    assert item_state("post.pdf")["status"] == "open"

    press(browser, "c")  # a decision waits out the undo window ...
    assert browser.find_element(By.ID, "pending").is_displayed()
    shot(browser, "item-pdf-undo-window")
    press(browser, "u")  # ... and undo cancels it
    assert not browser.find_element(By.ID, "pending").is_displayed()
    time.sleep(UNDO_SECONDS + 1.5)
    assert item_state("post.pdf")["status"] == "open" and item_state("post.pdf")["decision"] is None

    item_url = browser.current_url
    press(browser, "r")
    WebDriverWait(browser, UNDO_SECONDS + 20).until(lambda b: b.current_url != item_url)  # sent: on to the next
    decided = item_state("post.pdf")
    assert (decided["status"], decided["decision"], decided["decided_by"]) == ("decided", "reject", "moderator-1")

    # The TIFF renders too; `n` skips it (and `next` then moves past it).
    browser.get(f"{base}/ui/items/{items['scan.tiff']}")
    image = browser.find_element(By.ID, "image")
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return arguments[0].complete", image))
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
    press(browser, "n")
    WebDriverWait(browser, 15).until(lambda b: f"/ui/items/{items['scan.tiff']}" not in b.current_url)
    assert "/ui/items/" in browser.current_url and item_state("scan.tiff")["status"] == "open"

    # A phone: the item page fits 400 px without horizontal scrolling, decisions first.
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 400, "height": 800, "deviceScaleFactor": 1,
                                                                   "mobile": True})
    browser.get(f"{base}/ui/items/{items['cat.png']}")
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.getElementById('image').complete"))
    assert browser.execute_script("return window.innerWidth") == 400
    assert browser.find_element(By.ID, "copies").text.startswith("×2")  # uploaded twice
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 400
    assert browser.execute_script("return document.getElementById('confirm').getBoundingClientRect().bottom") <= 800
    shot(browser, "item-phone-400px")
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Forms carry the session's CSRF token: the session cookie alone does nothing.
    forged = httpx.post(f"{base}/ui/items/{items['cat.png']}/claim", data={"csrf": "guess"},
                        cookies={"moderate_session": session_cookie["value"]}, follow_redirects=False)
    assert forged.status_code == 403 and item_state("cat.png")["status"] == "open"

    browser.find_element(By.ID, "signout").click()  # the session ends: its cookie no longer works
    WebDriverWait(browser, 15).until(lambda b: "/ui/login" in b.current_url)
    after = httpx.get(f"{base}/ui", cookies={"moderate_session": session_cookie["value"]}, follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"] == "/ui/login"
