-- Smokeball's published samples (issue #10): a notification names the user who triggered the
-- event (`userId`, absent when there is none), so each event keeps it, and so do the deferred
-- writes that record events later (pending updates, uploads). A partner may ask for a
-- Retry-After on its 429s (Smokeball's gateway sends none) to test a client's use of it.
ALTER TABLE sb_events ADD COLUMN user_id uuid;
ALTER TABLE sb_pending_updates ADD COLUMN user_id uuid;
ALTER TABLE sb_files ADD COLUMN user_id uuid;
ALTER TABLE sb_clients ADD COLUMN retry_after_header boolean NOT NULL DEFAULT false;
ALTER TABLE sb_memos ADD COLUMN created_by uuid;
