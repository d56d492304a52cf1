-- The cache mode a node last ran with ('shared' or 'per-node'; NULL for a run before this
-- migration), so that nodes of one site running in different modes are reported.
ALTER TABLE nodes ADD COLUMN cache_mode TEXT;
