#!/usr/bin/env python3
"""scripts/bench sync's driver, against a `scripts/run` instance whose demo.env is in the
environment: connects the demo firm through the sandbox's sign-in form (as a browser would),
bulk-syncs the seeded bench matters through the sync route, clicks one interactive sync while the
bulk job runs, and prints the figures with PASS/FAIL against the targets. Secrets come from the
environment only; nothing is printed but ids and figures.

usage: bench-sync.py MATTER_IDS_FILE CLICK_MATTER_ID FLOOR_PER_MATTER FLOOR_PER_FIRM RATE
"""
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import os

SYNC = "/api/v1/integrations/smokeball/sync"
CONNECT = "/api/v1/integrations/smokeball/connect"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(method, url, token=None, body=None, form=None, timeout=30):
    headers = {"Accept": "application/json"}
    data = None
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with OPENER.open(request, timeout=timeout) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def connect(env):
    status, _, body = call("GET", env["BASE_URL"] + CONNECT, token=env["DEMO_ADMIN_TOKEN"])
    if status != 200:
        sys.exit(f"the connect route answered {status}")
    authorize = json.loads(body)["authorize_url"]
    query = urllib.parse.urlsplit(authorize).query
    form = urllib.parse.parse_qsl(query) + [
        ("username", env["SANDBOX_USER_EMAIL"]), ("password", env["SANDBOX_USER_PASSWORD"]), ("decision", "allow")]
    status, headers, _ = call("POST", env["SMOKEBALL_AUTH_BASE_URL"] + "/oauth2/authorize", form=form)
    location = headers.get("Location") or headers.get("location")
    if status != 302 or not location:
        sys.exit(f"the sandbox did not sign the user in (HTTP {status})")
    status, headers, _ = call("GET", location)
    landed = headers.get("Location") or headers.get("location") or ""
    if "smokeball=connected" not in landed:
        sys.exit(f"the callback did not connect the firm (HTTP {status}, landed on {landed.split('?')[-1]})")


def counters(env):
    status, _, body = call("GET", env["SANDBOX_ADMIN_URL"] + "/counters?client_id=" + env["SMOKEBALL_CLIENT_ID"])
    if status != 200:
        sys.exit(f"the sandbox counters answered {status}")
    return json.loads(body)


def api_requests(snapshot):
    """Requests to the API (not the auth server), and how many of them were answered 429."""
    total = sum(n for path, n in snapshot["by_path"].items() if " /oauth2/" not in path)
    return total, snapshot["by_status"].get("429", 0)


def main():
    env = os.environ
    ids = [line.strip() for line in open(sys.argv[1]) if line.strip()]
    click_matter, per_matter_floor, per_firm_floor = sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    rate = float(sys.argv[5])
    connect(env)
    # The connection's own calls (firm, staff, webhooks) are done before the snapshot.
    time.sleep(1)
    before = counters(env)
    start = time.monotonic()
    status, _, body = call("POST", env["BASE_URL"] + SYNC, token=env["DEMO_ADMIN_TOKEN"],
                           body={"action": "sync_matters", "matter_ids": ids})
    if status != 202:
        sys.exit(f"the sync route answered {status}: {body[:200]!r}")
    bulk = json.loads(body)["job_id"]
    click_latency = None
    click_job = None
    last_print = 0.0
    while True:
        status, _, body = call("GET", env["BASE_URL"] + SYNC + "?job_id=" + bulk, token=env["DEMO_ADMIN_TOKEN"])
        job = json.loads(body)
        progress = job.get("progress") or {}
        done = progress.get("done", 0)
        if click_job is None and done >= max(1, len(ids) // 3):
            clicked = time.monotonic()
            status, _, body = call("POST", env["BASE_URL"] + SYNC, token=env["DEMO_USER_TOKEN"],
                                   body={"action": "sync_matter", "matter_id": click_matter})
            click_job = json.loads(body)["job_id"]
            while time.monotonic() - clicked < 30:
                _, _, answer = call("GET", env["BASE_URL"] + SYNC + "?job_id=" + click_job,
                                    token=env["DEMO_USER_TOKEN"])
                if json.loads(answer)["status"] != "pending":
                    click_latency = time.monotonic() - clicked
                    break
                time.sleep(0.02)
        if job["status"] in ("succeeded", "dead"):
            break
        if time.monotonic() - last_print > 15:
            last_print = time.monotonic()
            print(f"  ... {done}/{progress.get('total')} matters, eta {job.get('eta_seconds')} s", file=sys.stderr)
        time.sleep(0.5)
    wall = time.monotonic() - start
    after = counters(env)
    requests_before, limited_before = api_requests(before)
    requests_after, limited_after = api_requests(after)
    requests = requests_after - requests_before
    limited = limited_after - limited_before
    failed = progress.get("failed", 0)
    # The click's matter is synced inside the same window: count it as one more matter.
    matters = len(ids) + (1 if click_job else 0)
    per_matter = requests / matters
    # The floor: what each matter needs, plus the firm's matter types (and its state), read once a day.
    floor = per_matter_floor + per_firm_floor / matters
    share = requests / (wall * rate)
    verdicts = {
        "requests": per_matter <= floor + 1e-9,
        "budget": share >= 0.90,
        "429": limited == 0,
        "click": click_latency is not None and click_latency <= 1.0,
        "job": job["status"] == "succeeded" and failed == 0,
    }
    print()
    print(f"Bulk sync of {len(ids)} matters (each: a new client, two approved documents) against the sandbox at "
          f"{rate:g} requests/s")
    print(f"  {'job':<44} {job['status']:>10}   (done {progress.get('done')}, failed {failed})   "
          f"{'PASS' if verdicts['job'] else 'FAIL'}")
    print(f"  {'wall time':<44} {wall:>10.1f} s")
    print(f"  {'API requests (uploads to S3 URLs excluded)':<44} {requests:>10}")
    print(f"  {'requests per matter':<44} {per_matter:>10.2f}     (floor {floor:.2f})   "
          f"{'PASS' if verdicts['requests'] else 'FAIL'}")
    print(f"  {'share of the rate budget used':<44} {share * 100:>9.1f}%     (target >= 90%)   "
          f"{'PASS' if verdicts['budget'] else 'FAIL'}")
    print(f"  {'429 answers':<44} {limited:>10}     (target 0)   {'PASS' if verdicts['429'] else 'FAIL'}")
    latency = f"{click_latency * 1000:.0f} ms" if click_latency is not None else "never"
    print(f"  {'a click meanwhile: pending -> running':<44} {latency:>10}     (target <= 1 s)   "
          f"{'PASS' if verdicts['click'] else 'FAIL'}")
    print()
    sys.exit(0 if all(verdicts.values()) else 1)


if __name__ == "__main__":
    main()
