"""The web review UI end to end in real headless Chromium (Debian chromium + chromium-driver)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .test_api import api  # noqa: F401  (the served API, a real `moderate serve` process)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"  # screenshots; ignored by git

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
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_moderator_signs_in_reveals_confirms_and_the_queue_shrinks(api, banked, photos, browser):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    client, auth = api
    banked.banks.create("SPAM", action="review")
    banked.banks.add("SPAM", [photos["chelsea"], photos["coins"]])
    for name in ("chelsea", "coins"):
        checked = client.post("/v1/check?enqueue=true", content=photos[name].read_bytes(),
                              headers={**auth["checker"], "X-Filename": f"{name}.png"})
        assert checked.json()["verdict"] == "review"
    base = str(client.base_url).rstrip("/")
    moderator_token = auth["moderator"]["Authorization"].split()[1]

    browser.get(f"{base}/ui")
    assert "/ui/login" in browser.current_url  # not signed in: sent to sign in
    browser.find_element(By.ID, "token").send_keys(moderator_token)
    browser.find_element(By.ID, "signin").click()
    assert browser.find_element(By.ID, "open-count").text == "2 open, 0 claimed"
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.item")) == 2

    browser.find_element(By.CSS_SELECTOR, "tr.item a").click()
    image = browser.find_element(By.ID, "image")
    assert "shield" in image.get_attribute("class")
    assert "blur" in browser.execute_script("return getComputedStyle(arguments[0]).filter", image)
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0  # the upload loaded
    assert "SPAM" in browser.find_element(By.ID, "evidence").text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "review-item-blurred.png"))
    browser.find_element(By.ID, "reveal").click()
    assert "shield" not in image.get_attribute("class")
    browser.save_screenshot(str(ARTIFACTS / "review-item-revealed.png"))

    item_url = browser.current_url
    browser.find_element(By.TAG_NAME, "body").send_keys("c")  # keyboard shortcut: confirm
    WebDriverWait(browser, 15).until(lambda b: b.current_url != item_url)  # decided: on to the next item
    assert "/ui/items/" in browser.current_url
    browser.get(f"{base}/ui")
    assert browser.find_element(By.ID, "open-count").text == "0 open, 1 claimed"  # the next one is ours now
    stats = client.get("/v1/queue/stats", headers=auth["moderator"]).json()
    assert (stats["confirmed"], stats["open"] + stats["claimed"]) == (1, 1)
