//! The code that makes a stage is part of its key: a cache made by a labpipe whose training code differed
//! does not count as this labpipe's, and `plan` says so in words.

use crate::util::binary::{labpipe, stderr, stdout};
use crate::util::cache::complete_dir;
use crate::util::files::{read_json, write};
use crate::util::pipeline::pipeline;

#[test]
fn plan_says_when_labpipes_training_code_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, "p.yaml", &pipeline("code", 1, ""));
    let out = dir.join("out");
    assert!(labpipe(dir, &["run", "p.yaml", "-q"]).status.success());
    let record_path = out.join("runs/code/baseline.json");
    let mut record = read_json(&record_path);
    let train = &record["keys"]["train"];
    let code = train["input"]["code"]
        .as_str()
        .expect("the train key has a code identity");
    assert_eq!(code.len(), 16, "{train}");
    assert_ne!(
        record["keys"]["plot"]["input"]["code"], train["input"]["code"],
        "every stage has its own code identity"
    );

    // The cache and record as a labpipe with other training code left them: its train entry is under
    // another key.
    record["keys"]["train"]["input"]["code"] = "0123456789abcdef".into();
    record["keys"]["train"]["key"] = "fedcba9876543210".into();
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
    std::fs::remove_dir_all(complete_dir(&out, "train")).unwrap();
    let o = labpipe(dir, &["plan", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = stdout(&o);
    assert!(
        plan.contains("train    will run: labpipe's training code changed"),
        "{plan}"
    );
    assert!(
        plan.contains("dataset  cached") && plan.contains("model    cached"),
        "{plan}"
    );
}
