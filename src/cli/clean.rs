//! `labpipe clean`: remove cache entries that no current run refers to, and unfinished builds nobody will
//! resume; never anything a running `labpipe` holds the lock of.

use super::{Exit, records_for};
use labpipe::cache::{CacheEntry, Store};
use labpipe::spec::Pipeline;
use std::collections::HashSet;
use std::path::Path;

fn dir_size(p: &Path) -> u64 {
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// `1.2 MB`, `35.0 KB`, `512 B` (powers of 1000, like the rest of labpipe's sizes).
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} KB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// Why `entry` is removable, or None to keep it.
fn removable(
    entry: &CacheEntry,
    keep: &HashSet<(String, String)>,
    complete: &HashSet<(String, String)>,
) -> Option<&'static str> {
    let id = (entry.stage.clone(), entry.key.clone());
    match (entry.partial, keep.contains(&id)) {
        (false, false) => Some("not used by any current run"),
        (true, false) => Some("unfinished build of a key no run refers to"),
        // A run still refers to it, but the entry is complete: nothing will resume this build.
        (true, true) if complete.contains(&id) => Some("unfinished build of a completed key"),
        _ => None,
    }
}

pub fn clean(pipelines: &[Pipeline], out: &Path, dry_run: bool, all: bool) -> Result<i32, Exit> {
    let store = Store::new(out);
    if all {
        let size = dir_size(store.root());
        if dry_run {
            println!(
                "would remove the whole cache {} ({}) and the run records",
                store.root().display(),
                human(size)
            );
        } else if store.root().exists() {
            std::fs::remove_dir_all(store.root()).map_err(|e| Exit::Failed(e.into()))?;
            let _ = std::fs::remove_dir_all(out.join("runs"));
            println!("removed the cache ({})", human(size));
        } else {
            println!("the cache {} is already empty", store.root().display());
        }
        return Ok(0);
    }
    let keep: HashSet<(String, String)> = records_for(pipelines, out)
        .iter()
        .flat_map(|r| {
            r.keys
                .iter()
                .map(|(_, k)| (k.stage.clone(), k.key.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let entries = store.list();
    let complete: HashSet<(String, String)> = entries
        .iter()
        .filter(|e| !e.partial)
        .map(|e| (e.stage.clone(), e.key.clone()))
        .collect();
    let (mut total, mut count, mut busy) = (0u64, 0usize, 0usize);
    for entry in &entries {
        let Some(why) = removable(entry, &keep, &complete) else {
            continue;
        };
        let name = format!(
            "{}/{}{}",
            entry.stage,
            if entry.partial { ".partial-" } else { "" },
            entry.key
        );
        // The lock keeps clean from pulling a directory from under a run that is building or resuming it.
        let key = Store::key_of(&entry.stage, &entry.key);
        let lock = if dry_run {
            None
        } else {
            match store.try_lock(&key).map_err(|e| Exit::Failed(e.into()))? {
                Some(lock) => Some(lock),
                None => {
                    println!("kept {name}: a running labpipe is using it");
                    busy += 1;
                    continue;
                }
            }
        };
        let size = dir_size(&entry.path);
        total += size;
        count += 1;
        if dry_run {
            println!("would remove {name} ({}): {why}", human(size));
            continue;
        }
        std::fs::remove_dir_all(&entry.path).map_err(|e| Exit::Failed(e.into()))?;
        println!("removed {name} ({}): {why}", human(size));
        let other_dir_left = entries
            .iter()
            .any(|e| e.stage == entry.stage && e.key == entry.key && e.path != entry.path && e.path.exists());
        if let Some(lock) = lock
            && !other_dir_left
            && !keep.contains(&(entry.stage.clone(), entry.key.clone()))
        {
            let _ = lock.remove();
        }
    }
    // Lock files of keys with no directory left and no run referring to them.
    if !dry_run {
        for (stage, key, _) in store.lock_files() {
            let id = (stage.clone(), key.clone());
            if keep.contains(&id)
                || entries
                    .iter()
                    .any(|e| (e.stage.clone(), e.key.clone()) == id && e.path.exists())
            {
                continue;
            }
            if let Ok(Some(lock)) = store.try_lock(&Store::key_of(&stage, &key)) {
                let _ = lock.remove();
            }
        }
    }
    let entries_word = if count == 1 { "entry" } else { "entries" };
    let busy_note = if busy > 0 {
        format!("; {busy} in use by a running labpipe left alone")
    } else {
        String::new()
    };
    if count == 0 && busy == 0 {
        println!("nothing to remove: every cache entry is used by a current run");
    } else if dry_run {
        println!("{count} {entries_word} to remove; would free {}", human(total));
    } else {
        println!(
            "removed {count} {entries_word}; freed {}{busy_note}",
            human(total)
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(35_000), "35.0 KB");
        assert_eq!(human(1_234_567), "1.2 MB");
        assert_eq!(human(45_000_000_000), "45.0 GB");
    }
}
