//! `labpipe clean`: remove cache entries that no current run refers to.

use super::{Exit, records_for};
use labpipe::cache::Store;
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

pub fn clean(pipelines: &[Pipeline], out: &Path, dry_run: bool, all: bool) -> Result<i32, Exit> {
    let store = Store::new(out);
    if all {
        let size = dir_size(store.root());
        if dry_run {
            println!(
                "would remove the whole cache {} ({:.1} MB)",
                store.root().display(),
                size as f64 / 1e6
            );
        } else if store.root().exists() {
            std::fs::remove_dir_all(store.root()).map_err(|e| Exit::Failed(e.into()))?;
            let _ = std::fs::remove_dir_all(out.join("runs"));
            println!("removed the cache ({:.1} MB)", size as f64 / 1e6);
        }
        return Ok(0);
    }
    let keep: HashSet<(String, String)> = records_for(pipelines, out)
        .iter()
        .flat_map(|r| {
            r.keys
                .all()
                .into_iter()
                .map(|k| (k.stage.clone(), k.key.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut total = 0u64;
    let mut count = 0usize;
    for (stage, key, path) in store.entries() {
        let bare = key.trim_start_matches(".partial-").to_string();
        if keep.contains(&(stage.clone(), bare)) {
            continue;
        }
        let size = dir_size(&path);
        total += size;
        count += 1;
        if dry_run {
            println!("would remove {stage}/{key} ({:.2} MB)", size as f64 / 1e6);
        } else {
            std::fs::remove_dir_all(&path).map_err(|e| Exit::Failed(e.into()))?;
            println!("removed {stage}/{key} ({:.2} MB)", size as f64 / 1e6);
        }
    }
    let verb = if dry_run { "would free" } else { "freed" };
    println!(
        "{count} entr{} not used by any current run; {verb} {:.1} MB",
        if count == 1 { "y" } else { "ies" },
        total as f64 / 1e6
    );
    Ok(0)
}
