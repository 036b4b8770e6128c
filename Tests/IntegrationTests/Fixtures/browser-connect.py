#!/usr/bin/python3
"""Connects a firm to Smokeball in headless Chromium, as a firm admin would from the settings page.

    browser-connect.py BASE_URL CONNECT_URL RETURN_URL WORK_DIR
    (SESSION_TOKEN, SIGNIN_EMAIL and SIGNIN_PASSWORD in the environment, not on the command line)

Sets the `casehug_session` cookie for BASE_URL (what the host app's sign-in leaves), opens
CONNECT_URL (302 to Smokeball's sign-in page), fills the form, submits, and waits until the
browser lands on RETURN_URL (through the callback). Prints `LANDED <url>`. On failure saves
WORK_DIR/failure.png and WORK_DIR/failure.html, prints their paths, exits 1.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402  (beside this script)

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base_url, connect_url, return_url, work_dir = sys.argv[1:5]

driver = chromium.start(work_dir)
try:
    # A cookie can only be set for the page's own site: open it first.
    driver.get(base_url + "/healthz")
    driver.add_cookie({"name": "casehug_session", "value": os.environ["SESSION_TOKEN"], "path": "/"})
    driver.get(connect_url)
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.NAME, "username"))
    driver.find_element(By.NAME, "username").send_keys(os.environ["SIGNIN_EMAIL"])
    driver.find_element(By.NAME, "password").send_keys(os.environ["SIGNIN_PASSWORD"])
    driver.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()
    WebDriverWait(driver, 30).until(lambda d: d.current_url.startswith(return_url))
    print("LANDED " + driver.current_url)
except Exception as error:  # any failure: keep what the browser shows
    chromium.keep_failure(driver, work_dir, error)
    sys.exit(1)
finally:
    driver.quit()
