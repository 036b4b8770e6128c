#!/usr/bin/env python3
"""scripts/bench import's driver, against a `scripts/run` instance whose demo.env is in the
environment: seeds the sandbox's demo account with contacts and matters (each matter with a client),
connects the demo firm through the sandbox's sign-in form, asks the sync route for one
import_matters job, waits for it, and prints the wall time and the API requests against the paging
floor, with PASS/FAIL against the targets. Reuses bench-sync.py's calls (one home).

usage: bench-import.py ACCOUNT_ID MATTERS CONTACTS
"""
import importlib.util
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_sync", os.path.join(HERE, "bench-sync.py"))
bench_sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_sync)
call, connect, counters, api_requests, SYNC = (
    bench_sync.call, bench_sync.connect, bench_sync.counters, bench_sync.api_requests, bench_sync.SYNC)

PAGE = 500


def seed(env, account, what, count):
    status, _, body = call("POST", f"{env['SANDBOX_ADMIN_URL']}/accounts/{account}/{what}/seed",
                           body={"count": count}, timeout=300)
    if status != 201:
        sys.exit(f"seeding {what} answered {status}: {body[:200]!r}")


def main():
    env = os.environ
    account, matters, contacts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Contacts first: each seeded matter takes its client among them.
    seed(env, account, "contacts", contacts)
    seed(env, account, "matters", matters)
    connect(env)
    # The connection's own calls (firm, staff, webhooks) are done before the snapshot.
    time.sleep(1)
    before = counters(env)
    start = time.monotonic()
    status, _, body = call("POST", env["BASE_URL"] + SYNC, token=env["DEMO_ADMIN_TOKEN"],
                           body={"action": "import_matters"})
    if status != 202:
        sys.exit(f"the sync route answered {status}: {body[:200]!r}")
    job_id = json.loads(body)["job_id"]
    last_print = 0.0
    while True:
        _, _, answer = call("GET", env["BASE_URL"] + SYNC + "?job_id=" + job_id, token=env["DEMO_ADMIN_TOKEN"])
        job = json.loads(answer)
        if job["status"] in ("succeeded", "dead"):
            break
        if time.monotonic() - last_print > 3:
            last_print = time.monotonic()
            progress = job.get("progress") or {}
            print(f"  ... {progress.get('done')}/{progress.get('total')} matters, eta {job.get('eta_seconds')} s",
                  file=sys.stderr)
        time.sleep(0.2)
    wall = time.monotonic() - start
    after = counters(env)
    requests = api_requests(after)[0] - api_requests(before)[0]
    # The paging floor: every page of matters and of contacts, plus the firm's state and its
    # location's matter types (the cache is cold at a first import).
    floor = math.ceil(matters / PAGE) + math.ceil(contacts / PAGE) + 2
    result = job.get("result") or {}
    verdicts = {
        "job": job["status"] == "succeeded" and result.get("imported", 0) > 0,
        "wall": wall <= 30,
        "requests": requests <= 1.1 * floor,
    }
    print()
    print(f"Import of {matters} Smokeball matters and {contacts} contacts from the sandbox")
    print(f"  {'job':<44} {job['status']:>10}   {'PASS' if verdicts['job'] else 'FAIL'}")
    print(f"  {'wall time':<44} {wall:>10.1f} s   (target <= 30 s)   {'PASS' if verdicts['wall'] else 'FAIL'}")
    print(f"  {'API requests (oauth2 excluded)':<44} {requests:>10}     (paging floor {floor}, target <= "
          f"{1.1 * floor:.1f})   {'PASS' if verdicts['requests'] else 'FAIL'}")
    for key in ("total", "imported", "skipped_linked", "skipped_ours", "skipped_other_area", "skipped_deleted",
                "skipped_leads", "clients_created", "clients_linked"):
        print(f"  {key:<44} {result.get(key)!s:>10}")
    print()
    sys.exit(0 if all(verdicts.values()) else 1)


if __name__ == "__main__":
    main()
