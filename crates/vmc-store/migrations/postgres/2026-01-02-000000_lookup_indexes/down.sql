DROP INDEX images_sha512;
DROP INDEX events_failed;
