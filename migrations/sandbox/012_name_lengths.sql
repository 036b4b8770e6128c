-- The spec caps AddFileDto.fileName and FolderDto.name at 256 characters; 009 allowed 255.
ALTER TABLE sb_folders DROP CONSTRAINT sb_folders_name_check;
ALTER TABLE sb_folders ADD CONSTRAINT sb_folders_name_check
    CHECK (length(name) BETWEEN 1 AND 256 AND name !~ '[/\\]');
ALTER TABLE sb_files DROP CONSTRAINT sb_files_name_check;
ALTER TABLE sb_files ADD CONSTRAINT sb_files_name_check CHECK (length(name) BETWEEN 1 AND 256);
