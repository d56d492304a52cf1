DROP INDEX publications_target_state;
DROP INDEX publications_one_live;
DROP TABLE publications;
