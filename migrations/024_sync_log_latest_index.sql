-- 024: the status route reads an integration's latest sync event on every request
-- (integration_id = $1 ORDER BY created_at DESC LIMIT 1). Without this index that is a scan
-- and a sort of the firm's whole sync history; with it, one index probe.
CREATE INDEX integration_sync_logs_integration_created_idx
    ON integration_sync_logs (integration_id, created_at DESC);
