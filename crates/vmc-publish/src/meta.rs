//! What a cached image becomes in the image service: its disk and container formats, name,
//! owner, visibility and properties, from the image list's entry.

use std::collections::BTreeMap;

use serde_json::Value;
use vmc_cache::store::ImageRecord;

use crate::PublishError;
use crate::config::PublishConfig;
use crate::convert::Prepared;
use crate::glance::STANDARD_FIELDS;
use crate::service::{NewRemoteImage, Visibility};

/// Property names vmc sets; annotations cannot override them.
pub const PROP_IDENTIFIER: &str = "vmc_identifier";
/// The image's sha512 as the list gives it.
pub const PROP_SHA512: &str = "vmc_sha512";
/// The image's `hv:version`.
pub const PROP_VERSION: &str = "vmc_version";
/// The URL of the list the image came from (credentials removed).
pub const PROP_LIST_URL: &str = "vmc_list_url";
/// The list's `dc:identifier`.
pub const PROP_LIST_IDENTIFIER: &str = "vmc_list_identifier";
/// The list's `ad:vo`.
pub const PROP_VO: &str = "vmc_vo";
/// The publication target (see [`PublishConfig::target`]).
pub const PROP_TARGET: &str = "vmc_target";
/// The claim token of the publication (finds an interrupted run's image).
pub const PROP_PUBLICATION: &str = "vmc_publication";
/// The tag an operator (or a hook that asks Nova) puts on an image still used by instances:
/// vmc deactivates such an image but never deletes it.
pub const IN_USE_TAG: &str = "vmc-in-use";

/// Disk formats Glance knows.
const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// The format the list declares (`hv:format`, lowercase; `img` is `raw`): a disk format
/// Glance knows, or `ova`. No `hv:format`, or an unknown one, cannot be published.
pub fn declared_format(record: &ImageRecord) -> Result<String, PublishError> {
    let identifier = record.image.identifier.as_str();
    let Some(format) = record.image.extra.get("hv:format").and_then(Value::as_str) else {
        return Err(PublishError::Unpublishable {
            identifier: identifier.to_owned(),
            reason: "the list gives no hv:format, so the disk format is unknown".to_owned(),
        });
    };
    let format = format.trim().to_ascii_lowercase();
    match format.as_str() {
        "img" => Ok("raw".into()),
        "ova" => Ok(format),
        f if DISK_FORMATS.contains(&f) => Ok(format),
        _ => Err(PublishError::Unpublishable {
            identifier: identifier.to_owned(),
            reason: format!("hv:format {format:?} is not a disk format Glance knows"),
        }),
    }
}

/// The image record to create for `record` under claim `token`.
pub fn remote_image(
    record: &ImageRecord,
    config: &PublishConfig,
    token: &str,
    file: &Prepared,
) -> NewRemoteImage {
    let image = &record.image;
    let extra = &image.extra;
    let text = |key: &str| extra.get(key).and_then(Value::as_str).map(str::trim);
    let mut properties = BTreeMap::new();
    // Annotations first, so that vmc's own properties win.
    for (key, value) in extra {
        if let Some(name) = key.strip_prefix("org.openstack.glance.")
            && !name.is_empty()
            && !STANDARD_FIELDS.contains(&name)
            && !name.starts_with("vmc_")
            && let Some(value) = value_text(value)
        {
            properties.insert(name.to_owned(), value);
        }
    }
    if let Some(os) = text("sl:osname")
        .or_else(|| text("sl:os"))
        .filter(|s| !s.is_empty())
    {
        properties.insert("os_distro".into(), os.to_ascii_lowercase());
    }
    if let Some(version) = text("sl:osversion").filter(|s| !s.is_empty()) {
        properties.insert("os_version".into(), version.to_owned());
    }
    if let Some(arch) = text("sl:arch").filter(|s| !s.is_empty()) {
        properties.insert("architecture".into(), architecture(arch));
    }
    let vmc = [
        (PROP_IDENTIFIER, image.identifier.as_str().to_owned()),
        (PROP_SHA512, image.sha512.clone()),
        (PROP_VERSION, image.version.clone()),
        (
            PROP_LIST_URL,
            vmc_cache::store::redact_url(&record.subscription_url),
        ),
        (PROP_LIST_IDENTIFIER, record.list_identifier.clone()),
        (PROP_TARGET, config.target.clone()),
        (PROP_PUBLICATION, token.to_owned()),
    ];
    for (k, v) in vmc {
        properties.insert(k.to_owned(), v);
    }
    if let Some(vo) = &record.list_vo {
        properties.insert(PROP_VO.to_owned(), vo.clone());
    }
    let route = config.route_for(record);
    NewRemoteImage {
        name: image.title.chars().take(255).collect(),
        disk_format: file.disk_format.clone(),
        container_format: file.container_format.clone(),
        visibility: route.visibility,
        owner: route.owner.clone(),
        min_ram: number(extra.get("hv:ram_minimum")).unwrap_or(0),
        // At least the disk's virtual size, in GiB rounded up.
        min_disk: number(extra.get("org.openstack.glance.min_disk"))
            .or_else(|| file.virtual_size.map(|v| v.div_ceil(1 << 30)))
            .unwrap_or(0),
        properties,
    }
}

/// The members an image is shared with (visibility `shared` only).
pub fn members<'a>(record: &ImageRecord, config: &'a PublishConfig) -> &'a [String] {
    let route = config.route_for(record);
    if route.visibility == Visibility::Shared {
        &route.members
    } else {
        &[]
    }
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A non-negative integer written as a number or a string of digits.
fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Glance's (and Nova's) architecture names.
fn architecture(arch: &str) -> String {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "amd64" | "x86-64" | "x64" => "x86_64".into(),
        "i386" | "i486" | "i586" | "i686" | "x86" => "i686".into(),
        "aarch64" | "arm64" => "aarch64".into(),
        "ppc64le" | "ppc64el" => "ppc64le".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_take_glance_names() {
        assert_eq!(architecture("amd64"), "x86_64");
        assert_eq!(architecture("X86_64"), "x86_64");
        assert_eq!(architecture("i386"), "i686");
        assert_eq!(architecture("arm64"), "aarch64");
        assert_eq!(architecture("riscv64"), "riscv64");
    }

    #[test]
    fn numbers_may_be_strings_of_digits() {
        assert_eq!(number(Some(&serde_json::json!(2048))), Some(2048));
        assert_eq!(number(Some(&serde_json::json!("512"))), Some(512));
        assert_eq!(number(Some(&serde_json::json!("lots"))), None);
        assert_eq!(number(Some(&serde_json::json!(-1))), None);
        assert_eq!(number(None), None);
    }
}
