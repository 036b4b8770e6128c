-- 028: single-flight refresh of a firm's Smokeball access token (issue #11 item 7).
--
-- Every process on every host refreshes through one lease on the firm's row instead of a lock:
-- a short transaction takes the lease (an id and when it lapses) and commits, the holder calls
-- the token endpoint with no transaction open, and a second short transaction stores the new
-- token and clears the lease, but only while the lease is still its own. Others that find a
-- live lease use the current token while it is valid, or wait for the new one. A lapsed lease
-- (its holder crashed or hung) may be taken over.
--
-- A token endpoint that fails (5xx, time-out, dropped connection) is not asked again before
-- refresh_not_before: the delay doubles with each consecutive failure (refresh_failures), so
-- many callers cannot hammer a token endpoint that is down.
--
-- A reconnect (callback) must reset all four columns along with needs_reconnect_reason.

ALTER TABLE firm_integrations ADD COLUMN refresh_lease_id uuid;
ALTER TABLE firm_integrations ADD COLUMN refresh_lease_until timestamptz;
ALTER TABLE firm_integrations ADD COLUMN refresh_not_before timestamptz;
ALTER TABLE firm_integrations ADD COLUMN refresh_failures integer NOT NULL DEFAULT 0
    CHECK (refresh_failures >= 0);
ALTER TABLE firm_integrations ADD CONSTRAINT firm_integrations_refresh_lease_pair
    CHECK ((refresh_lease_id IS NULL) = (refresh_lease_until IS NULL));
