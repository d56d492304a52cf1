//! `<cache>/cache.index`: a JSON object keyed by image id, for people and old tools (the
//! database is the source of truth). Rewritten atomically from the database after every change.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};
use vmc_store::{CacheEntry, ImageRecord};

use crate::error::{CacheError, io};

/// The file name of the index inside the cache directory.
pub const INDEX_FILE: &str = "cache.index";

/// The index entry of one cached file: `filename`, the image's keys, its list's identifier,
/// and every raw image key again as `hv:image.<key>`.
pub fn entry(cached: &CacheEntry, record: Option<&ImageRecord>) -> Value {
    let mut map = Map::new();
    map.insert("filename".into(), cached.filename.clone().into());
    map.insert("dc:identifier".into(), cached.identifier.as_str().into());
    map.insert("sl:checksum:sha512".into(), cached.sha512.clone().into());
    map.insert("hv:size".into(), cached.size.into());
    map.insert(
        "cached_at".into(),
        cached
            .cached_at
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
            .into(),
    );
    if let Some(rec) = record {
        let raw = rec.image.to_json();
        for key in ["dc:title", "hv:uri", "hv:version"] {
            if let Some(v) = raw.get(key) {
                map.insert(key.into(), v.clone());
            }
        }
        map.insert(
            "hv:imagelist.dc:identifier".into(),
            rec.list_identifier.clone().into(),
        );
        for (k, v) in raw {
            map.insert(format!("hv:image.{k}"), v);
        }
    }
    Value::Object(map)
}

/// Writes the index for `cached` entries atomically (a temporary file named for this writer
/// alone, fsync, rename); an index that already says exactly this is left as it is.
pub fn write(
    cache_dir: &Path,
    cached: &[CacheEntry],
    records: &[ImageRecord],
) -> Result<(), CacheError> {
    let mut doc = Map::new();
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
