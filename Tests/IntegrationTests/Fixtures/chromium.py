"""What the browser tests' scripts share: a headless Chromium driven by Selenium, and what is kept
when a step fails. Debian's python3 (/usr/bin/python3) has python3-selenium; chromium and
chromium-driver come from scripts/lib/common.sh's REQUIRED_PACKAGES.
"""

import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def start(work_dir):
    """A headless Chromium with its profile in WORK_DIR."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in [
        "--headless=new",
        "--no-sandbox",  # as root
        "--disable-dev-shm-usage",
        "--user-data-dir=" + os.path.join(work_dir, "profile"),
    ]:
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def keep_failure(driver, work_dir, error):
    """Saves a screenshot and the page source in WORK_DIR and prints where, for the test's message."""
    screenshot = os.path.join(work_dir, "failure.png")
    driver.save_screenshot(screenshot)
    with open(os.path.join(work_dir, "failure.html"), "w") as page:
        page.write(driver.page_source)
    print("browser stopped at " + driver.current_url + ": " + type(error).__name__)
    print("screenshot: " + screenshot)
    print("page source: " + os.path.join(work_dir, "failure.html"))
