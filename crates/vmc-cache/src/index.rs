//! `<cache>/cache.index`: a JSON object keyed by image id, for people and old tools (the
//! database is the source of truth). Rewritten atomically from the database after every change.
//!
//! The format is the one the old vmcatcher's `vmcatcher_cache` reads and writes
//! (`manged_directory.py`, `controler.py`), so that a site can go back to vmcatcher with the
//! cache vmc kept: every entry carries vmcatcher's own keys (`filename`, `uuid`, `sha512`,
//! `size`, `uri`, `msgHash`, `DownLoadTrys`), the image's `dc:*`, `hv:*` and `sl:*` keys
//! under vmcatcher's names, `hv:imagelist.dc:identifier` and `hv:imagelist.ad:vo`, and every
//! raw image key again as `hv:image.<key>`; vmc adds `cached_at`. The only key of vmcatcher's
//! left out is `message`, the whole signed list copied into every entry, which vmcatcher
//! writes but never reads (it compares `msgHash`).
//!
//! vmcatcher deletes every file of its cache directory that its index does not name. So an
//! entry of an index vmc did not write (vmcatcher's own, for a file vmc did not adopt) is kept
//! as it was while its file is still in the directory: rolling back loses no file.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};
use vmc_store::{CacheEntry, ImageRecord};

use crate::error::{CacheError, io};

/// The file name of the index inside the cache directory.
pub const INDEX_FILE: &str = "cache.index";

/// The image keys vmcatcher copies into an entry under their own names (beside `hv:image.*`).
const IMAGE_KEYS: [&str; 9] = [
    "dc:title",
    "dc:description",
    "hv:uri",
    "hv:version",
    "hv:hypervisor",
    "sl:arch",
    "sl:comments",
    "sl:os",
    "sl:osversion",
];

/// The index entry of one cached file, in vmcatcher's format (see the module doc).
pub fn entry(cached: &CacheEntry, record: Option<&ImageRecord>) -> Value {
    let mut map = Map::new();
    let id = cached.identifier.as_str();
    map.insert("filename".into(), cached.filename.clone().into());
    map.insert("dc:identifier".into(), id.into());
    map.insert("uuid".into(), id.into());
    map.insert("sl:checksum:sha512".into(), cached.sha512.clone().into());
    map.insert("sha512".into(), cached.sha512.clone().into());
    map.insert("hv:size".into(), cached.size.into());
    map.insert("size".into(), cached.size.into());
    map.insert(
        "cached_at".into(),
        cached
            .cached_at
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
            .into(),
    );
    // vmcatcher's expiry reads msgHash: present even when no current list names the image.
    let msg_hash = record.map(|r| r.list_sha512.clone()).unwrap_or_default();
    map.insert("msgHash".into(), msg_hash.clone().into());
    map.insert(
        "DownLoadTrys".into(),
        serde_json::json!({"count": 1, "msgHash": msg_hash}),
    );
    if let Some(rec) = record {
        let raw = rec.image.to_json();
        for key in IMAGE_KEYS {
            if let Some(v) = raw.get(key) {
                map.insert(key.into(), v.clone());
            }
        }
        if let Some(uri) = raw.get("hv:uri") {
            map.insert("uri".into(), uri.clone());
        }
        map.insert(
            "hv:imagelist.dc:identifier".into(),
            rec.list_identifier.clone().into(),
        );
        if let Some(vo) = rec.list_vo.as_ref().filter(|vo| !vo.is_empty()) {
            map.insert("hv:imagelist.ad:vo".into(), vo.clone().into());
        }
        for (k, v) in raw {
            map.insert(format!("hv:image.{k}"), v);
        }
    }
    Value::Object(map)
}

/// Whether `name` is one plain file name (no directory part, not `.`/`..`).
pub(crate) fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".." && !name.contains('\0')
}

/// The entries of the index now in `cache_dir` that vmc keeps as they are: those of image ids
/// vmc has not cached whose file (`filename`, else the key) is still in the directory and is
/// not one of vmc's files.
fn foreign_entries(cache_dir: &Path, cached: &[CacheEntry]) -> Vec<(String, Value)> {
    let path = cache_dir.join(INDEX_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Vec::new();
    };
    let Ok(Value::Object(old)) = serde_json::from_slice::<Value>(&bytes) else {
        tracing::warn!("{} is not a JSON object: rewritten", path.display());
        return Vec::new();
    };
    let ours: HashSet<&str> = cached
        .iter()
        .flat_map(|c| [c.identifier.as_str(), c.filename.as_str()])
        .collect();
    old.into_iter()
        .filter(|(key, value)| {
            let file = value.get("filename").and_then(Value::as_str).unwrap_or(key);
            !ours.contains(key.as_str())
                && !ours.contains(file)
                && plain_file_name(file)
                && file != INDEX_FILE
                && cache_dir.join(file).is_file()
        })
        .collect()
}

/// Writes the index for `cached` entries atomically (a temporary file named for this writer
/// alone, fsync, rename), keeping the entries of files vmc did not write (see the module doc);
/// an index that already says exactly this is left as it is.
pub fn write(
    cache_dir: &Path,
    cached: &[CacheEntry],
    records: &[ImageRecord],
) -> Result<(), CacheError> {
    let mut doc = Map::new();
    for (key, value) in foreign_entries(cache_dir, cached) {
        doc.insert(key, value);
    }
    for c in cached {
        let rec = records.iter().find(|r| r.image.identifier == c.identifier);
        doc.insert(c.identifier.to_string(), entry(c, rec));
    }
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default();
    bytes.push(b'\n');
    let target = cache_dir.join(INDEX_FILE);
    if std::fs::read(&target).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = vmc_fetch::unique_tmp_path(&target);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .map_err(io("write", &tmp))
        .and_then(|()| std::fs::rename(&tmp, &target).map_err(io("rename into place", &target)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
