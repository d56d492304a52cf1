//! `vmc image …`

use vmc_cache::CacheError;
use vmc_cache::fetch::redact_url;
use vmc_cache::store::ImageFilter;
use vmc_model::Identifier;

use super::Ctx;
use crate::args::ImageCmd;
use crate::output::{self, Format};
use crate::{Outcome, UsageError, report};

/// The images named, each in a current list (or, with `pending_too`, a pending selection).
fn identifiers(ctx: &Ctx, keys: &[String], pending_too: bool) -> anyhow::Result<Vec<Identifier>> {
    let pending = if pending_too {
        ctx.vmc.store().pending_selections(None)?
    } else {
        Vec::new()
    };
    let mut ids = Vec::new();
    for key in keys {
        let id = Identifier::new(key.clone()).map_err(|e| UsageError(format!("{e}")))?;
        let found = ctx.vmc.store().images(&ImageFilter {
            identifier: Some(key.clone()),
            ..ImageFilter::default()
        })?;
        if found.is_empty() && !pending.iter().any(|p| p.identifier == id) {
            return Err(CacheError::NoSuchImage { key: key.clone() }.into());
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Runs an image command.
pub fn run(ctx: &Ctx, cmd: ImageCmd) -> anyhow::Result<Outcome> {
    let store = ctx.vmc.store();
    let now = ctx.vmc.config().clock.now();
    match cmd {
        ImageCmd::List {
            subscription,
            selected,
        } => {
            let subscription_id = match subscription {
                Some(s) => Some(ctx.subscription(&s)?.id),
                None => None,
            };
            let records = store.images(&ImageFilter {
                subscription_id,
                selected_only: selected,
                ..ImageFilter::default()
            })?;
            let images: Vec<_> = records.iter().map(|r| report::image(r, now)).collect();
            // Selected ids no current list names (yet): after the images, flagged pending.
            let pending = store.pending_selections(subscription_id)?;
            match ctx.format {
                Format::Json => {
                    let rows: Vec<report::ImageRowJson> = images
                        .into_iter()
                        .map(report::ImageRowJson::Listed)
                        .chain(
                            pending
                                .iter()
                                .map(|p| report::ImageRowJson::Pending(report::pending_image(p))),
                        )
                        .collect();
                    output::json(&rows);
                }
                Format::Text => {
                    for i in &images {
                        let flags = format!(
                            "{}{}{}",
                            if i.selected { "S" } else { "-" },
                            if i.available { "A" } else { "-" },
                            if i.cached { "C" } else { "-" }
                        );
                        output::line(format!(
                            "{flags}\t{}\t{}\t{}\t{}",
                            i.identifier,
                            i.version,
                            output::bytes(i.size),
                            i.title
                        ));
                    }
                    for p in &pending {
                        output::line(format!(
                            "S--\t{}\t-\t-\t(pending: selected, no current list of {} names it)",
                            p.identifier,
                            p.list_identifier
                                .clone()
                                .unwrap_or_else(|| redact_url(&p.subscription_url))
                        ));
                    }
                }
            }
        }
        ImageCmd::Show { image, sha512 } => {
            let records = store.images(&ImageFilter {
                identifier: image.clone(),
                sha512: sha512.as_ref().map(|s| s.to_ascii_lowercase()),
                ..ImageFilter::default()
            })?;
            let key = image.or(sha512).unwrap_or_default();
            let Some(r) = records.first() else {
                return Err(CacheError::NoSuchImage { key }.into());
            };
            let mut json = serde_json::to_value(report::image(r, now))?;
            if let Some(obj) = json.as_object_mut() {
                obj.insert("image".into(), serde_json::Value::Object(r.image.to_json()));
                obj.insert("list_expires".into(), report::time(r.list_expires).into());
                obj.insert("endorsed".into(), r.endorsed.into());
            }
            match ctx.format {
                Format::Json => output::json(&json),
                Format::Text => {
                    for (k, v) in r.image.to_json() {
                        let text = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        output::line(format!("{k:<20} {text}"));
                    }
                    let i = report::image(r, now);
                    output::line(format!("{:<20} {}", "list", i.subscription));
                    output::line(format!("{:<20} {}", "selected", i.selected));
                    output::line(format!("{:<20} {}", "available", i.available));
                    output::line(format!("{:<20} {}", "cached", i.cached));
                }
            }
        }
        ImageCmd::Subscribe { images } | ImageCmd::Unsubscribe { images } if images.is_empty() => {
            return Err(UsageError("name at least one image".into()).into());
        }
        ImageCmd::Subscribe { images } => {
            let ids = identifiers(ctx, &images, false)?;
            store.set_selected(&ids, true)?;
            report_selection(ctx, &ids, true);
        }
        ImageCmd::Unsubscribe { images } => {
            // A pending selection can be withdrawn before a list names the image.
            let ids = identifiers(ctx, &images, true)?;
            store.set_selected(&ids, false)?;
            report_selection(ctx, &ids, false);
        }
    }
    Ok(Outcome::Success)
}

fn report_selection(ctx: &Ctx, ids: &[Identifier], selected: bool) {
    match ctx.format {
        Format::Json => output::json(&serde_json::json!({
            "selected": selected,
            "images": ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })),
        Format::Text => {
            for id in ids {
                output::line(format!(
                    "{}\t{id}",
                    if selected { "selected" } else { "unselected" }
                ));
            }
        }
    }
}
