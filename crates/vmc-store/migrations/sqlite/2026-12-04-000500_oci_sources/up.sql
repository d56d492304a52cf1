-- A subscription follows a signed image list (kind 'list') or the images a VO publishes in an
-- OCI registry (kind 'oci', url 'oci://REGISTRY/PROJECT[/REPOSITORY][:TAG]'). oci_allow is the
-- site's trust for an OCI source: the registry host and the repository patterns it accepts
-- (`registry.egi.eu/vo.access.egi.eu/**`); an OCI image is endorsed while the rule allows it.
-- An OCI image is stored in the existing image columns: version = manifest digest, sha512 =
-- the layer's digest in its `algorithm:hex` form (a list image's is bare sha512 hex), size =
-- the layer's size, extra = hv:format, the mapped keys and every annotation verbatim.
ALTER TABLE subscriptions ADD COLUMN kind TEXT NOT NULL DEFAULT 'list' CHECK (kind IN ('list', 'oci'));
ALTER TABLE subscriptions ADD COLUMN oci_allow TEXT;
