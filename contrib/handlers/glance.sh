#!/bin/sh
# vmc event handler: keep OpenStack Glance in step with the vmc cache.
#
#   AvailablePostfix  the image is verified and in the cache: upload it to Glance (once per
#                     sha512; an image already there with the same checksum is reactivated)
#   ExpirePostfix     the image left the cache: deactivate it in Glance (kept for running VMs;
#                     delete it by hand, or set VMC_GLANCE_DELETE=1 to delete it here)
#   anything else     ignored
#
# Use:  vmc --event-handler /usr/local/libexec/vmc/glance.sh cache sync
# Needs the `openstack` CLI (python3-openstackclient) and credentials in the environment
# (OS_CLOUD, or the OS_AUTH_URL/OS_USERNAME/... variables, e.g. from /etc/default/vmc).
# Optional: VMC_GLANCE_VISIBILITY (default private), VMC_GLANCE_PREFIX (name prefix, default "vmc-").
#
# Values come only from the VMCATCHER_* environment variables that vmc sets; they are always
# quoted and never evaluated, so hostile titles cannot run code.
set -eu

type=${VMCATCHER_EVENT_TYPE:-}
id=${VMCATCHER_EVENT_DC_IDENTIFIER:-}
[ -n "$id" ] || exit 0
name="${VMC_GLANCE_PREFIX:-vmc-}${id}"

# Find the Glance image that vmc made for this identifier (by its vmc_identifier property).
glance_id() {
    openstack image list --property "vmc_identifier=$id" -f value -c ID | head -n 1
}

case "$type" in
AvailablePostfix)
    file="${VMCATCHER_CACHE_DIR_CACHE}${id}"
    sha=${VMCATCHER_EVENT_SL_CHECKSUM_SHA512:-}
    same=$(openstack image list --property "vmc_identifier=$id" --property "vmc_sha512=$sha" \
        -f value -c ID | head -n 1)
    if [ -n "$same" ]; then
        openstack image set --activate "$same" 2>/dev/null || true
        echo "glance: $id already present as $same" >&2
        exit 0
    fi
    # An older version of the image (another sha512): retire it first.
    old=$(glance_id)
    [ -z "$old" ] || openstack image set --deactivate "$old" || true
    openstack image create "$name" \
        --file "$file" \
        --disk-format "$(echo "${VMCATCHER_EVENT_HV_FORMAT:-raw}" | tr 'A-Z' 'a-z')" \
        --container-format bare \
        --"${VMC_GLANCE_VISIBILITY:-private}" \
        --property "vmc_identifier=$id" \
        --property "vmc_sha512=$sha" \
        --property "vmc_list=${VMCATCHER_EVENT_IL_DC_IDENTIFIER:-}" \
        --property "vmc_version=${VMCATCHER_EVENT_HV_VERSION:-}" \
        --property "os_distro=${VMCATCHER_EVENT_SL_OS:-}" \
        --property "os_version=${VMCATCHER_EVENT_SL_OSVERSION:-}" \
        --property "architecture=${VMCATCHER_EVENT_SL_ARCH:-}" \
        --property "description=${VMCATCHER_EVENT_DC_TITLE:-}" >&2
    echo "glance: uploaded $id" >&2
    ;;
ExpirePostfix)
    existing=$(glance_id)
    [ -n "$existing" ] || exit 0
    if [ "${VMC_GLANCE_DELETE:-0}" = 1 ]; then
        openstack image delete "$existing"
        echo "glance: deleted $id ($existing)" >&2
    else
        openstack image set --deactivate "$existing"
        echo "glance: deactivated $id ($existing)" >&2
    fi
    ;;
*) ;;
esac
