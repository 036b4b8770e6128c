#!/usr/bin/python3
"""Drives the Smokeball settings page (/integrations/smokeball/) in headless Chromium.

    settings-page.py SCENARIO PAGE_URL WORK_DIR
    (secrets in the environment, never on the command line: SIGNIN_EMAIL and SIGNIN_PASSWORD
    for the sandbox's sign-in page, HANDED_TOKEN for the fragment hand-over; MATTER_ID for a
    sync; SCREENSHOT, optional: where to save a screenshot of the connected page)

Scenarios: connect, fragment, callback-error, warning, toggle, mappings, sync, sync-fails, retry,
webhooks, read-only. Each signs in on a fresh
profile (the demo sign-in of DEMO_MODE, or the fragment), does what a person would (clicks,
keys), and prints what it saw as `KEY value` lines for the Swift test to check. On failure saves
WORK_DIR/failure.png and WORK_DIR/failure.html, prints their paths and the failed step, exits 1.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402  (beside this script)

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

scenario, page_url, work_dir = sys.argv[1:4]
driver = chromium.start(work_dir)
driver.set_window_size(1280, 1000)


def wait(condition, what, seconds=20):
    """Waits until condition(driver) is truthy; the error names what was awaited."""
    try:
        return WebDriverWait(driver, seconds).until(condition)
    except Exception:
        raise AssertionError("waited in vain for " + what) from None


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def by_id(name):
    return driver.find_element(By.ID, name)


def text(name):
    return by_id(name).text.strip()


def sign_in_as(name):
    driver.get(page_url)
    button = wait(
        lambda d: [b for b in d.find_elements(By.CSS_SELECTOR, "#demo-users button") if name in b.text],
        "the demo sign-in button for " + name)[0]
    button.click()
    wait_until_loaded()


def wait_until_loaded():
    wait(lambda d: by_id("app").is_displayed() and by_id("who").is_displayed(), "the page to load the status")


def mapping_inputs():
    return driver.find_elements(By.CSS_SELECTOR, "#mappings-rows input")


def sync_matter(matter_id, submit_with_enter=False):
    field = by_id("matter-id")
    field.clear()
    field.send_keys(matter_id)
    if submit_with_enter:
        field.send_keys(Keys.ENTER)
    else:
        by_id("sync-matter").click()
    wait(lambda d: text("sync-job-text").startswith(("Finished", "Failed")), "the sync job to finish", 90)
    return text("sync-job-text")


def connect():
    sign_in_as("Dana Admin")
    wait(lambda d: text("connection-state") == "Not connected to Smokeball.", "the page to say not connected")
    by_id("connect").click()
    wait(lambda d: d.find_elements(By.NAME, "username"), "the sandbox's sign-in page")
    print("SIGN_IN_PAGE " + driver.current_url.split("?")[0])
    driver.find_element(By.NAME, "username").send_keys(os.environ["SIGNIN_EMAIL"])
    driver.find_element(By.NAME, "password").send_keys(os.environ["SIGNIN_PASSWORD"])
    driver.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()
    wait(lambda d: d.current_url.startswith(page_url) and text("connection-state").startswith("Connected"),
         "the page to show the connection", 30)
    print("NOTICE " + text("notice"))
    print("STATE " + text("connection-state"))
    print("URL " + driver.current_url)


def fragment():
    driver.get(page_url + "#token=" + os.environ["HANDED_TOKEN"])
    wait_until_loaded()
    print("URL " + driver.current_url)
    print("WHO " + text("who-name"))
    print("STORED " + str(driver.execute_script("return sessionStorage.getItem('casehug.token') !== null")))


def callback_error():
    # Where the callback sends the browser when the person chose "Deny" on Smokeball's page.
    driver.get(page_url + "?smokeball=error&reason=access_denied#token=" + os.environ["HANDED_TOKEN"])
    wait_until_loaded()
    print("NOTICE " + text("notice"))
    print("URL " + driver.current_url)


def warning():
    sign_in_as("Dana Admin")
    wait(lambda d: by_id("connection-warning").is_displayed(), "the connection's warning")
    print("WARNING " + text("connection-warning"))
    print("CONNECT_BUTTON " + (text("connect") if by_id("connect").is_displayed() else "hidden"))


def toggle():
    sign_in_as("Dana Admin")
    box = wait(lambda d: by_id("auto_sync_on_matter_created").is_enabled() and by_id("auto_sync_on_matter_created"),
               "the toggle to be enabled")
    before = box.is_selected()
    # By keyboard: focus moves to the checkbox and space flips it.
    box.send_keys(Keys.SPACE)
    wait(lambda d: text("settings-message") == "Saved.", "the page to say Saved.")
    driver.refresh()
    wait_until_loaded()
    after = by_id("auto_sync_on_matter_created").is_selected()
    print("BEFORE " + str(before))
    print("AFTER_RELOAD " + str(after))


def mappings():
    sign_in_as("Dana Admin")
    # The 30 case types, and the practice areas' catch-alls (migration 037) if listed.
    wait(lambda d: len(mapping_inputs()) >= 30, "the 30 case types in the mapping editor")
    print("CASE_TYPES %d" % len(mapping_inputs()))
    field = driver.find_element(By.CSS_SELECTOR, '#mappings-rows input[data-key="divorce_standard"]')
    field.clear()
    field.send_keys("No Such Matter Type")
    by_id("save-mappings").click()
    wait(lambda d: by_id("mappings-error").is_displayed(), "the refusal")
    print("REFUSED " + text("mappings-error"))
    print("INVALID " + str(field.get_attribute("aria-invalid")))
    print("FOCUSED " + str(driver.switch_to.active_element == field))
    names = [option.get_attribute("value") for option in driver.find_elements(By.CSS_SELECTOR, "#matter-types option")]
    check(names, "no Smokeball matter types in the list")
    choice = next((name for name in names if name.lower() == "separation"), names[-1])
    field.clear()
    field.send_keys(choice)
    by_id("save-mappings").click()
    wait(lambda d: text("mappings-message") == "Mappings saved.", "the page to say Mappings saved.")
    row = driver.find_element(By.CSS_SELECTOR, '#mappings-rows tr[data-key="divorce_standard"]')
    print("SAVED " + choice)
    print("ROW " + row.find_element(By.CSS_SELECTOR, ".effective").text)
    print("ERROR_SHOWN " + str(by_id("mappings-error").is_displayed()))


def sync():
    sign_in_as("Dana Admin")
    wait(lambda d: text("connection-state").startswith("Connected"), "a connected firm")
    print("JOB " + sync_matter(os.environ["MATTER_ID"]))
    matter_rows = lambda d: [  # noqa: E731
        row for row in d.find_elements(By.CSS_SELECTOR, "#history-rows tr") if os.environ["MATTER_ID"] in row.text
    ]
    wait(matter_rows, "the matter in the sync history")
    for row in matter_rows(driver):
        cells = row.find_elements(By.TAG_NAME, "td")
        print("HISTORY " + " | ".join(cell.text.replace("\n", " ") for cell in cells[1:4]))
    if os.environ.get("SCREENSHOT"):
        by_id("advanced").find_element(By.TAG_NAME, "summary").click()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1100, height + 40)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(os.environ["SCREENSHOT"])
        print("SCREENSHOT " + os.environ["SCREENSHOT"])


def history_rows(matter_id, status=None):
    return [row for row in driver.find_elements(By.CSS_SELECTOR, "#history-rows tr")
            if matter_id in row.text and (status is None or row.get_attribute("data-status") == status)]


def sync_fails():
    sign_in_as("Dana Admin")
    print("JOB " + sync_matter(os.environ["MATTER_ID"]))
    wait(lambda d: history_rows(os.environ["MATTER_ID"], "failed"), "the failure in the sync history")
    row = history_rows(os.environ["MATTER_ID"], "failed")[0]
    print("FAILURE " + row.find_elements(By.TAG_NAME, "td")[2].text.replace("\n", " "))
    print("RETRY_BUTTONS " + str(len(row.find_elements(By.TAG_NAME, "button"))))


def failures_only(on):
    if by_id("failures-only").is_selected() != on:
        by_id("failures-only").click()
    wait(lambda d: by_id("failures-only").is_selected() == on, "the Failures only box to be %s" % on)


def retry():
    sign_in_as("Dana Admin")
    failures_only(True)
    wait(lambda d: history_rows(os.environ["MATTER_ID"], "failed"), "the failure in the sync history")
    shown = [row for row in driver.find_elements(By.CSS_SELECTOR, "#history-rows tr") if row.is_displayed()]
    print("SHOWN_STATUSES " + ",".join(sorted({row.get_attribute("data-status") for row in shown})))
    history_rows(os.environ["MATTER_ID"], "failed")[0].find_element(By.TAG_NAME, "button").click()
    wait(lambda d: text("sync-job-text").startswith(("Finished", "Failed")), "the retried job to finish", 90)
    print("JOB " + text("sync-job-text"))
    failures_only(False)
    wait(lambda d: history_rows(os.environ["MATTER_ID"], "success"), "a success in the sync history")
    for row in history_rows(os.environ["MATTER_ID"], "success"):
        cells = row.find_elements(By.TAG_NAME, "td")
        print("HISTORY " + " | ".join(cell.text.replace("\n", " ") for cell in cells[1:4]))


def webhooks():
    sign_in_as("Dana Admin")
    by_id("advanced").find_element(By.TAG_NAME, "summary").click()
    by_id("ensure-webhooks").click()
    wait(lambda d: text("webhooks-job-text").startswith(("Finished", "Failed")), "the re-registration to finish", 60)
    print("JOB " + text("webhooks-job-text"))
    print("DELIVERY " + driver.find_element(By.XPATH, "//dt[.='Delivery']/following-sibling::dd[1]").text)


def read_only():
    sign_in_as("Sam Paralegal")
    # The 30 case types, and the practice areas' catch-alls (migration 037) if listed.
    wait(lambda d: len(mapping_inputs()) >= 30, "the 30 case types in the mapping editor")
    print("CASE_TYPES %d" % len(mapping_inputs()))
    shown = lambda name: by_id(name).is_displayed()  # noqa: E731
    print("NOTE " + str(shown("read-only")))
    print("TOGGLES_ENABLED " + str(any(e.is_enabled() for e in driver.find_elements(By.CSS_SELECTOR, "input[data-setting]"))))
    print("MAPPINGS_EDITABLE " + str(any(e.get_attribute("readonly") is None for e in mapping_inputs())))
    by_id("advanced").find_element(By.TAG_NAME, "summary").click()
    admin_buttons = ["connect", "disconnect", "save-mappings", "sync-all", "import-matters", "ensure-webhooks"]
    print("ADMIN_BUTTONS_SHOWN " + ",".join(name for name in admin_buttons if shown(name)))
    # 375 px wide, as a phone: nothing wider than the screen.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 375, "height": 800, "deviceScaleFactor": 1, "mobile": True})
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    print("WIDTH %d %d" % tuple(widths))
    # A standard user may still sync, by keyboard (Enter in the field submits).
    print("JOB " + sync_matter(os.environ["MATTER_ID"], submit_with_enter=True))


scenarios = {"connect": connect, "fragment": fragment, "callback-error": callback_error, "warning": warning, "toggle": toggle, "mappings": mappings, "sync": sync,
             "sync-fails": sync_fails, "retry": retry, "webhooks": webhooks,
             "read-only": read_only}
try:
    scenarios[scenario]()
except Exception as error:  # any failure: keep what the browser shows
    print("step failed: %s" % error)
    chromium.keep_failure(driver, work_dir, error)
    sys.exit(1)
finally:
    driver.quit()
