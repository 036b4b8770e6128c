-- 029: keeping one webhook subscription per firm (issue #11, item 6).
--
-- Ensuring the subscription is list-then-PUT-or-POST at Smokeball: two ensures that overlap
-- (a reconnect while an earlier callback is still finishing, several hosts) would both find none
-- and both POST. A short lease on the firm's row serialises them without holding a lock or a
-- transaction open across the HTTP calls: the holder's id and an expiry, so a holder that dies
-- frees the row when the lease runs out.
ALTER TABLE firm_integrations ADD COLUMN webhook_ensure_lease_id uuid;
ALTER TABLE firm_integrations ADD COLUMN webhook_ensure_lease_until timestamptz;
ALTER TABLE firm_integrations ADD CONSTRAINT firm_integrations_webhook_ensure_lease_pair
    CHECK ((webhook_ensure_lease_id IS NULL) = (webhook_ensure_lease_until IS NULL));
