//! A manifest vouches only for itself as written: one that drops an artifact from its list (sealed again or
//! not), an entry holding a file its manifest does not list, or a manifest copied from another entry is
//! damage, and `plan` and `run` treat it so.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::cache::complete_dir;
use crate::util::files::write;
use crate::util::pipeline::pipeline;
use labpipe::cache::Manifest;
use std::path::Path;

fn plan(dir: &Path) -> String {
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn edit_manifest(entry: &Path, edit: impl FnOnce(&mut Manifest), reseal: bool) {
    let path = entry.join("manifest.json");
    let mut m: Manifest = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    if reseal {
        m.digest = m.digest();
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// Run again and check that `stage` is rebuilt because of `why`, and that everything is cached after.
fn rebuilt(dir: &Path, stage: &str, why: &str) {
    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let padded = format!("{stage:<9}");
    assert!(
        err.contains(&format!(
            "baseline: {padded}cache entry damaged ({why}); running again"
        )),
        "{err}"
    );
    assert!(plan(dir).contains("everything is cached"), "{}", plan(dir));
}

#[test]
fn an_artifact_dropped_from_the_manifest_and_altered_is_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("manifest", 1, ""));
    let out = dir.join("out");
    assert!(labpipe(dir, &["run", "p.yaml", "-q"]).status.success());
    let evaluate = complete_dir(&out, "evaluate");
    let metrics = std::fs::read_to_string(evaluate.join("metrics.json")).unwrap();
    let altered = metrics.replacen("\"images\": 60", "\"images\": 61", 1);
    assert_ne!(altered, metrics);

    for (reseal, why) in [
        (false, "manifest.json was edited (its integrity hash differs)"),
        (true, "manifest.json does not list metrics.json"),
    ] {
        edit_manifest(
            &evaluate,
            |m| m.artifacts.retain(|a| a.name != "metrics.json"),
            reseal,
        );
        std::fs::write(evaluate.join("metrics.json"), &altered).unwrap();
        let p = plan(dir);
        assert!(
            p.contains(&format!("evaluate will run: artifact damaged: {why}")),
            "{p}"
        );
        rebuilt(dir, "evaluate", why);
        assert_eq!(
            std::fs::read_to_string(evaluate.join("metrics.json")).unwrap(),
            metrics
        );
    }

    // A file beside the listed ones.
    let train = complete_dir(&out, "train");
    std::fs::write(train.join("extra.safetensors"), b"not written by labpipe").unwrap();
    let why = "extra.safetensors is in the entry but not in its manifest";
    assert!(plan(dir).contains(&format!("train    will run: artifact damaged: {why}")));
    rebuilt(dir, "train", why);
    assert!(!train.join("extra.safetensors").exists());

    // Another entry's manifest and files copied over this one's.
    let plot = complete_dir(&out, "plot");
    let model = complete_dir(&out, "model");
    edit_manifest(
        &plot,
        |m| {
            *m = serde_json::from_str(&std::fs::read_to_string(model.join("manifest.json")).unwrap()).unwrap()
        },
        false,
    );
    let p = plan(dir);
    assert!(
        p.contains("plot     will run: artifact damaged: manifest.json describes model/"),
        "{p}"
    );
}
