"""schemathesis hooks for scripts/schemathesis: webhook deliveries that get past the signature.

Without them every generated delivery would stop at the account lookup (an unknown account is
`ignored`) or the signature (401), and the store behind them would never see fuzzed bodies. Of
each three deliveries, one is left as generated, one names the connected demo account without a
signature (401), and one names it signed with its webhook key, as Smokeball signs them
(docs/inbound.md): it is stored and its processing enqueued. The key, account and client id come
from the environment (CASEHUG_FUZZ_WEBHOOK_KEY, CASEHUG_FUZZ_ACCOUNT_ID, CASEHUG_FUZZ_CLIENT_ID).
"""

import hashlib
import hmac
import itertools
import os
import time
import uuid

import schemathesis

WEBHOOKS = "/api/v1/integrations/smokeball/webhooks"
KEY = os.environ.get("CASEHUG_FUZZ_WEBHOOK_KEY", "")
ACCOUNT = os.environ.get("CASEHUG_FUZZ_ACCOUNT_ID", "")
CLIENT = os.environ.get("CASEHUG_FUZZ_CLIENT_ID", "")
# .NET ticks of the Unix epoch.
EPOCH_TICKS = 621_355_968_000_000_000
deliveries = itertools.count()


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.operation.path != WEBHOOKS or not (KEY and ACCOUNT and CLIENT):
        return
    turn = next(deliveries) % 3
    if turn == 0 or not isinstance(case.body, dict):
        return
    case.body["accountId"] = ACCOUNT
    if turn == 1:
        return
    timestamp = str(EPOCH_TICKS + time.time_ns() // 100)
    request_id = str(uuid.uuid4())
    signature = hmac.new(KEY.encode(), f"{timestamp}|{request_id}|{CLIENT}".encode(), hashlib.sha256).hexdigest()
    case.headers = dict(case.headers or {})
    case.headers.update({"Timestamp": timestamp, "RequestId": request_id, "Signature": signature})
