-- Smokeball lets folders of the same name coexist in one parent (FACTS.md: creating "CaseHug"
-- twice makes two folders), so the sandbox must too: an integration that relied on a refusal
-- would make duplicates against the real thing.
DROP INDEX sb_folders_name_idx;
CREATE INDEX sb_folders_parent_idx
    ON sb_folders (matter_id, coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
