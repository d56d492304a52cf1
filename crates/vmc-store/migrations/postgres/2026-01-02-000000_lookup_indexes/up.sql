-- Lookups that grew hot: `vmc cache events --failed` and `vmc image show --sha512`.
CREATE INDEX events_failed ON events (id) WHERE outcome = 'failed';
CREATE INDEX images_sha512 ON images (sha512);
