#!/usr/bin/python3
"""Signs in on the sandbox's authorize page in headless Chromium, as a person would.

    browser-sign-in.py AUTHORIZE_URL REDIRECT_URI WORK_DIR
    (SIGNIN_EMAIL and SIGNIN_PASSWORD in the environment, not on the command line)

Serves REDIRECT_URI's port on 127.0.0.1 itself (the client's callback, another origin than the
sandbox), opens AUTHORIZE_URL, fills the form, submits and waits until the browser lands on
REDIRECT_URI. Prints `LANDED <url>` and `RECEIVED <path>` for each request the callback got.
On failure saves WORK_DIR/failure.png and WORK_DIR/failure.html, prints their paths, exits 1.
Debian's python3 (/usr/bin/python3) has python3-selenium; chromium and chromium-driver come
from scripts/lib/common.sh's REQUIRED_PACKAGES.
"""

import http.server
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chromium  # noqa: E402  (beside this script)
import threading
import urllib.parse

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

authorize_url, redirect_uri, work_dir = sys.argv[1:4]
received = []


class Callback(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        received.append(self.path)
        body = b"<!doctype html><title>callback</title><p>received</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


callback = urllib.parse.urlsplit(redirect_uri)
server = http.server.ThreadingHTTPServer(("127.0.0.1", callback.port), Callback)
threading.Thread(target=server.serve_forever, daemon=True).start()

driver = chromium.start(work_dir)
try:
    driver.get(authorize_url)
    driver.find_element(By.NAME, "username").send_keys(os.environ["SIGNIN_EMAIL"])
    driver.find_element(By.NAME, "password").send_keys(os.environ["SIGNIN_PASSWORD"])
    driver.find_element(By.CSS_SELECTOR, "button[name=decision][value=allow]").click()
    WebDriverWait(driver, 20).until(lambda d: d.current_url.startswith(redirect_uri) and received)
    print("LANDED " + driver.current_url)
    for path in received:
        print("RECEIVED " + path)
except Exception as error:  # any failure: keep what the browser shows
    chromium.keep_failure(driver, work_dir, error)
    sys.exit(1)
finally:
    driver.quit()
    server.shutdown()
