ALTER TABLE nodes DROP COLUMN cache_mode;
