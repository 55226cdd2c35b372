//! A truncated or edited artifact is caught when the cache is read: `plan` and `run` say which file is
//! damaged, the stage runs again, and the rebuilt entry (and everything downstream) is what it was.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::cache::{complete_dir, partials};
use crate::util::files::write;
use crate::util::pipeline::pipeline;

#[test]
fn truncated_checkpoint_and_edited_metrics_are_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("damage", 2, ""));
    let out = dir.join("out");
    let o = labpipe(dir, &["run", "p.yaml", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let train = complete_dir(&out, "train");
    let evaluate = complete_dir(&out, "evaluate");
    let model = std::fs::read(train.join("model.safetensors")).unwrap();
    let metrics = std::fs::read(evaluate.join("metrics.json")).unwrap();

    // Truncate the selected checkpoint.
    std::fs::write(train.join("model.safetensors"), &model[..model.len() / 2]).unwrap();
    let o = labpipe(dir, &["plan", "p.yaml"]);
    let plan = stdout(&o);
    let why = format!(
        "artifact model.safetensors is {} bytes, the manifest says {}",
        model.len() / 2,
        model.len()
    );
    assert!(
        plan.contains(&format!("train    will run: artifact damaged: {why}")),
        "{plan}"
    );
    // Its key is unchanged, so the stages after it stay cached: retraining reproduces the same bytes.
    assert!(plan.contains("evaluate cached"), "{plan}");

    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "baseline: train    cache entry damaged ({why}); running again"
        )),
        "{err}"
    );
    assert!(err.contains("baseline: train    ran in"), "{err}");
    assert!(err.contains("baseline: evaluate cached"), "{err}");
    assert_eq!(complete_dir(&out, "train"), train, "rebuilt under the same key");
    assert!(
        std::fs::read(train.join("model.safetensors")).unwrap() == model,
        "rebuilt checkpoint differs"
    );
    assert!(partials(&out).is_empty());

    // Edit the test metrics without changing their size.
    let text = String::from_utf8(metrics.clone()).unwrap();
    let edited = text.replacen("\"images\": 60", "\"images\": 61", 1);
    assert_ne!(
        edited, text,
        "metrics.json has no `images` field to edit:\n{text}"
    );
    std::fs::write(evaluate.join("metrics.json"), &edited).unwrap();
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(
        stdout(&o).contains(
            "evaluate will run: artifact damaged: artifact metrics.json was altered (hash differs)"
        ),
        "{}",
        stdout(&o)
    );
    let o = labpipe(dir, &["run", "p.yaml"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("baseline: train    cached"), "{err}");
    assert!(
        err.contains("baseline: evaluate cache entry damaged (artifact metrics.json was altered"),
        "{err}"
    );
    assert!(err.contains("baseline: plot     cached"), "{err}");
    assert_eq!(std::fs::read(evaluate.join("metrics.json")).unwrap(), metrics);

    // A lost manifest is damage too; the report reads only verified entries.
    std::fs::remove_file(complete_dir(&out, "plot").join("manifest.json")).unwrap();
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(
        stdout(&o).contains("plot     will run: artifact damaged: manifest.json is missing"),
        "{}",
        stdout(&o)
    );
    let o = labpipe(dir, &["run", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("baseline: plot     ran in"), "{}", stderr(&o));
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(stdout(&o).contains("everything is cached"), "{}", stdout(&o));
}
