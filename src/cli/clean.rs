//! `labpipe clean`: remove cache entries that no current run refers to, and unfinished builds nobody will
//! resume; with `--all`, the whole cache and the run records. Never anything a running `labpipe` holds the
//! lock of, and never anything labpipe did not make: a cache or `runs/` folder holding anything else (or a
//! symbolic link) is refused whole.

use super::{Exit, records_for};
use labpipe::cache::{CacheEntry, Foreign, Store, Survey};
use labpipe::out_dir::OutDir;
use labpipe::pipeline::record::{self, RunsSurvey};
use labpipe::pipeline::stage::Stage;
use labpipe::spec::Pipeline;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// How many foreign paths a refusal lists before summarising the rest.
const MAX_LISTED: usize = 10;

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

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The cache as labpipe's stages lay it out.
fn survey_cache(store: &Store) -> Survey {
    let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
    store.survey(&stages, |stage, file, partial| {
        Stage::from_name(stage).is_some_and(|s| s.holds_file(file, partial))
    })
}

/// The refusal when `foreign` is not empty: what was found, and that nothing was removed.
fn refuse(out: &Path, foreign: &[Foreign]) -> Result<(), Exit> {
    if foreign.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "refusing to clean `{}`: it holds {} that labpipe did not make (is it labpipe's --out directory?):",
        out.display(),
        plural(foreign.len(), "thing", "things")
    );
    for f in foreign.iter().take(MAX_LISTED) {
        msg.push_str(&format!("\n  {}: {}", f.path.display(), f.why));
    }
    if foreign.len() > MAX_LISTED {
        msg.push_str(&format!("\n  and {} more", foreign.len() - MAX_LISTED));
    }
    msg.push_str(
        "\nNothing was removed. Move those away (or remove them yourself) and run `labpipe clean` again.",
    );
    Err(Exit::BadInput(msg))
}

fn entry_name(entry: &CacheEntry) -> String {
    format!(
        "{}/{}{}",
        entry.stage,
        if entry.partial { ".partial-" } else { "" },
        entry.key
    )
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
        return clean_all(&store, out, dry_run);
    }
    let survey = survey_cache(&store);
    refuse(out, &survey.foreign)?;
    let keep: HashSet<(String, String)> = records_for(pipelines, out)
        .iter()
        .flat_map(|r| {
            r.keys
                .iter()
                .map(|(_, k)| (k.stage.clone(), k.key.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let entries = survey.entries;
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
        let name = entry_name(entry);
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
        for l in &survey.locks {
            let id = (l.stage.clone(), l.key.clone());
            if keep.contains(&id)
                || entries
                    .iter()
                    .any(|e| (e.stage.clone(), e.key.clone()) == id && e.path.exists())
            {
                continue;
            }
            if let Ok(Some(lock)) = store.try_lock(&Store::key_of(&l.stage, &l.key)) {
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

/// The cache's keys, each with its directories (a complete entry, an unfinished build, both, or none when
/// only its lock file is left).
type KeyDirs = BTreeMap<(String, String), Vec<CacheEntry>>;

fn keys_of(survey: &Survey) -> KeyDirs {
    let mut keys: KeyDirs = BTreeMap::new();
    for e in &survey.entries {
        keys.entry((e.stage.clone(), e.key.clone()))
            .or_default()
            .push(e.clone());
    }
    for l in &survey.locks {
        keys.entry((l.stage.clone(), l.key.clone())).or_default();
    }
    keys
}

/// `clean --all`: every cache entry and run record, except what a running labpipe holds the lock of (and
/// the records of the runs it belongs to).
fn clean_all(store: &Store, out: &Path, dry_run: bool) -> Result<i32, Exit> {
    let cache = survey_cache(store);
    let runs = record::survey(out);
    let foreign: Vec<Foreign> = cache.foreign.iter().chain(&runs.foreign).cloned().collect();
    refuse(out, &foreign)?;
    let fail = |e: std::io::Error| Exit::Failed(e.into());

    let (mut size, mut held_entries) = (0u64, 0usize);
    let mut busy: HashSet<(String, String)> = HashSet::new();
    for ((stage, key), dirs) in keys_of(&cache) {
        let id = Store::key_of(&stage, &key);
        let lock = if dry_run {
            if store.is_locked(&id) { None } else { Some(None) }
        } else {
            store.try_lock(&id).map_err(|e| Exit::Failed(e.into()))?.map(Some)
        };
        let Some(lock) = lock else {
            // A running labpipe is building (or resuming, or committing) this key.
            if dirs.is_empty() {
                println!("kept the lock of {stage}/{key}: a running labpipe holds it");
            }
            for d in &dirs {
                println!(
                    "kept {}: a running labpipe holds its lock (it is building this stage)",
                    entry_name(d)
                );
            }
            held_entries += dirs.len();
            busy.insert((stage, key));
            continue;
        };
        for d in &dirs {
            size += dir_size(&d.path);
            if !dry_run {
                std::fs::remove_dir_all(&d.path).map_err(fail)?;
            }
        }
        if let Some(lock) = lock {
            let _ = lock.remove();
        }
    }
    if !dry_run {
        // Stage folders and the cache folder go when nothing is left in them.
        for stage in Stage::ALL {
            let _ = std::fs::remove_dir(store.root().join(stage.name()));
        }
        let _ = std::fs::remove_dir(store.root());
    }
    let (removed_records, kept_records) = clean_records(&runs, out, &busy, dry_run)?;

    let records = plural(removed_records, "run record", "run records");
    let kept = if held_entries + kept_records > 0 {
        format!(
            "; kept {} and {} of the run in progress",
            plural(
                held_entries,
                "entry a running labpipe holds",
                "entries a running labpipe holds"
            ),
            plural(kept_records, "run record", "run records")
        )
    } else {
        String::new()
    };
    if dry_run {
        println!(
            "would remove the whole cache {} ({}) and {records}{kept}",
            store.root().display(),
            human(size)
        );
    } else if cache.entries.is_empty() && cache.locks.is_empty() {
        println!(
            "the cache {} is already empty; removed {records}",
            store.root().display()
        );
    } else {
        println!("removed the cache ({}) and {records}{kept}", human(size));
    }
    Ok(0)
}

/// Remove the run records (and their published files) of runs none of whose keys is `busy`; returns how many
/// records were removed and kept.
fn clean_records(
    runs: &RunsSurvey,
    out: &Path,
    busy: &HashSet<(String, String)>,
    dry_run: bool,
) -> Result<(usize, usize), Exit> {
    let layout = OutDir::new(out);
    let mut kept_folders: Vec<PathBuf> = Vec::new();
    let (mut removed, mut kept) = (0, 0);
    for (path, rec) in &runs.records {
        let in_progress = rec
            .keys
            .iter()
            .any(|(_, k)| busy.contains(&(k.stage.clone(), k.key.clone())));
        if in_progress {
            println!("kept run record {}: its run is in progress", path.display());
            kept_folders.push(layout.run_files(&rec.spec.pipeline, &rec.spec.name));
            kept += 1;
            continue;
        }
        removed += 1;
        if !dry_run {
            std::fs::remove_file(path).map_err(|e| Exit::Failed(e.into()))?;
        }
    }
    if !dry_run {
        for f in &runs.files {
            if !kept_folders.iter().any(|k| f.starts_with(k)) {
                std::fs::remove_file(f).map_err(|e| Exit::Failed(e.into()))?;
            }
        }
        // Folders go only when empty: a kept record's stay.
        for d in &runs.dirs {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir(layout.runs());
    }
    Ok((removed, kept))
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
