//! The resources a Slurm job asks for: a pipeline's `slurm:` section and the matching command-line flags.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// What to ask Slurm for, from a pipeline's `slurm:` section or from `labpipe run` flags (every field optional).
///
/// `#[command(flatten)]` it into a clap command for the flags; deserialize it for the `slurm:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmOptions {
    /// Slurm partition (sbatch --partition).
    #[arg(long)]
    #[serde(default)]
    pub partition: Option<String>,
    /// Generic resources per node, e.g. `gpu:1` (sbatch --gres).
    #[arg(long)]
    #[serde(default)]
    pub gres: Option<String>,
    /// Time limit: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (sbatch --time).
    #[arg(long)]
    #[serde(default)]
    pub time: Option<TimeLimit>,
    /// CPUs for each run (sbatch --cpus-per-task).
    #[arg(long)]
    #[serde(default)]
    pub cpus_per_task: Option<u32>,
    /// Memory per node: a number of MB, or with a K, M, G or T suffix, e.g. `16G` (sbatch --mem).
    #[arg(long)]
    #[serde(default)]
    pub mem: Option<MemSize>,
    /// Account to charge (sbatch --account).
    #[arg(long)]
    #[serde(default)]
    pub account: Option<String>,
    /// Any other sbatch option, written as one `#SBATCH` line each, e.g. `--qos=high` (repeatable).
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    #[serde(default)]
    pub extra: Vec<String>,
}

/// Why a set of Slurm options cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A name-like value (partition, account, gres) is empty or has whitespace or control characters.
    #[error("slurm `{field}` {problem}: `{value}`")]
    BadName {
        /// The option (`partition`, `account`, `gres`).
        field: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `cpus_per_task: 0`.
    #[error("slurm `cpus_per_task` must be at least 1")]
    ZeroCpus,
    /// An `extra` entry that is not an option, spans lines, or sets what labpipe or a named field sets.
    #[error("slurm `extra` entry `{entry}`: {problem}")]
    BadExtra {
        /// The entry as given.
        entry: String,
        /// What is wrong with it, with what to do instead.
        problem: String,
    },
}

impl SlurmOptions {
    /// These options with every field that `flags` sets replacing this one's; `extra` is both lists, flags last.
    ///
    /// Flags win: sbatch lets a later `#SBATCH` line override an earlier one, so `flags.extra` goes after.
    pub fn overridden_by(&self, flags: &SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: flags.partition.clone().or_else(|| self.partition.clone()),
            gres: flags.gres.clone().or_else(|| self.gres.clone()),
            time: flags.time.clone().or_else(|| self.time.clone()),
            cpus_per_task: flags.cpus_per_task.or(self.cpus_per_task),
            mem: flags.mem.clone().or_else(|| self.mem.clone()),
            account: flags.account.clone().or_else(|| self.account.clone()),
            extra: self.extra.iter().chain(&flags.extra).cloned().collect(),
        }
    }

    /// The options a job that only renders the report needs: where it may run and who pays, not the GPUs,
    /// CPUs or memory that training asked for.
    pub fn for_report(&self) -> SlurmOptions {
        SlurmOptions {
            partition: self.partition.clone(),
            time: self.time.clone(),
            account: self.account.clone(),
            ..SlurmOptions::default()
        }
    }

    /// Every problem sbatch would otherwise report later (or worse, read differently), first one found.
    ///
    /// `time` and `mem` are already checked when parsed; this checks the free-form fields.
    pub fn validate(&self) -> Result<(), OptionsError> {
        for (field, value) in [
            ("partition", &self.partition),
            ("gres", &self.gres),
            ("account", &self.account),
        ] {
            if let Some(v) = value {
                check_name(field, v)?;
            }
        }
        if self.cpus_per_task == Some(0) {
            return Err(OptionsError::ZeroCpus);
        }
        self.extra.iter().try_for_each(|e| check_extra(e))
    }

    /// The `#SBATCH` options these stand for, in a fixed order, `extra` last (each as `--name=value`).
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut push = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{name}={v}"));
            }
        };
        push("partition", self.partition.clone());
        push("gres", self.gres.clone());
        push("time", self.time.as_ref().map(|t| t.to_string()));
        push("cpus-per-task", self.cpus_per_task.map(|c| c.to_string()));
        push("mem", self.mem.as_ref().map(|m| m.to_string()));
        push("account", self.account.clone());
        args.extend(self.extra.iter().cloned());
        args
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), OptionsError> {
    let problem = if value.is_empty() {
        Some("is empty")
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces or control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(OptionsError::BadName {
            field,
            value: value.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// sbatch options labpipe writes itself: a second value would break the array or its log paths.
const OWNED: &[(&str, Option<char>)] = &[
    ("array", Some('a')),
    ("output", Some('o')),
    ("error", Some('e')),
    ("job-name", Some('J')),
    ("dependency", Some('d')),
    ("parsable", None),
    ("wrap", None),
];

/// sbatch options that have their own field, so that one value cannot silently shadow the other.
const FIELDS: &[(&str, Option<char>, &str)] = &[
    ("partition", Some('p'), "partition"),
    ("gres", None, "gres"),
    ("time", Some('t'), "time"),
    ("cpus-per-task", Some('c'), "cpus_per_task"),
    ("mem", None, "mem"),
    ("account", Some('A'), "account"),
];

fn check_extra(entry: &str) -> Result<(), OptionsError> {
    let bad = |problem: String| {
        Err(OptionsError::BadExtra {
            entry: entry.to_string(),
            problem,
        })
    };
    if entry.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
        return bad("an option must fit on one `#SBATCH` line".into());
    }
    if !entry.starts_with('-') || entry == "-" || entry == "--" {
        return bad("expected an sbatch option such as `--qos=high`".into());
    }
    let (long, short) = match entry.strip_prefix("--") {
        Some(rest) => (Some(rest.split('=').next().unwrap_or(rest)), None),
        None => (None, entry[1..].chars().next()),
    };
    let is = |name: &str, letter: Option<char>| long == Some(name) || (short.is_some() && short == letter);
    if let Some((name, _)) = OWNED.iter().find(|(n, l)| is(n, *l)) {
        return bad(format!("labpipe sets --{name} itself"));
    }
    if let Some((name, _, field)) = FIELDS.iter().find(|(n, l, _)| is(n, *l)) {
        return bad(format!(
            "--{name} has its own field: use `{field}` (or the --{name} flag) instead"
        ));
    }
    Ok(())
}

/// A Slurm time limit in one of the forms sbatch accepts, kept as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLimit(String);

/// A time limit sbatch would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad slurm time limit `{0}`: expected MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS \
     (e.g. 90, 2:00:00, 1-12), or UNLIMITED"
)]
pub struct TimeLimitError(pub String);

impl FromStr for TimeLimit {
    type Err = TimeLimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        // sbatch checks the shape, not the ranges (it takes 1:75:00 and 0-25), so neither does labpipe.
        let ok = if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinite") {
            true
        } else if let Some((days, rest)) = s.split_once('-') {
            let parts: Vec<&str> = rest.split(':').collect();
            number(days) && parts.len() <= 3 && parts.iter().all(|p| number(p))
        } else {
            let parts: Vec<&str> = s.split(':').collect();
            parts.len() <= 3 && parts.iter().all(|p| number(p))
        };
        if ok {
            Ok(TimeLimit(s.to_string()))
        } else {
            Err(TimeLimitError(s.to_string()))
        }
    }
}

impl fmt::Display for TimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TimeLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `time: 90` is a YAML integer; `time: 2:00:00` a string.
        let text = d.deserialize_any(NumberOrText)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A memory size as sbatch's --mem takes it: a number of megabytes, or with a K, M, G or T suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemSize(String);

/// A memory size sbatch would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad slurm memory size `{0}`: expected a number of megabytes, or a number with K, M, G or T (e.g. 16G)"
)]
pub struct MemSizeError(pub String);

impl FromStr for MemSize {
    type Err = MemSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let unit = s[digits..].to_ascii_uppercase();
        // sbatch reads only the first letter after the number, so `16GB` means 16G: accept the B.
        let ok = digits > 0 && ["", "K", "M", "G", "T", "KB", "MB", "GB", "TB"].contains(&unit.as_str());
        if ok {
            Ok(MemSize(s.to_string()))
        } else {
            Err(MemSizeError(s.to_string()))
        }
    }
}

impl fmt::Display for MemSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MemSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(NumberOrText)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads a YAML scalar that may be a whole number or a string, as its text.
struct NumberOrText;

impl serde::de::Visitor<'_> for NumberOrText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn yaml(text: &str) -> Result<SlurmOptions, String> {
        serde_saphyr::from_str::<SlurmOptions>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn time_accepts_every_slurm_form() {
        for ok in [
            "90",
            "0",
            "90:30",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:15",
            "1:75:00",
            "UNLIMITED",
            "infinite",
        ] {
            assert_eq!(
                ok.parse::<TimeLimit>().map(|t| t.to_string()),
                Ok(ok.to_string()),
                "{ok}"
            );
        }
    }

    #[test]
    fn time_rejects_other_shapes() {
        for bad in [
            "",
            "1:2:3:4",
            "1-2:3:4:5",
            "2h",
            "-5",
            "1-",
            "1--2",
            ":30",
            "1:",
            "1.5",
            " 90",
            "1-2-3",
        ] {
            let e = bad.parse::<TimeLimit>().unwrap_err();
            assert!(e.to_string().contains("D-HH:MM:SS"), "{bad}: {e}");
        }
    }

    #[test]
    fn mem_accepts_sbatch_suffixes() {
        for ok in ["4096", "16G", "16g", "512M", "1T", "64K", "16GB"] {
            assert!(ok.parse::<MemSize>().is_ok(), "{ok}");
        }
        for bad in ["", "G", "16 G", "1.5G", "16X", "16GiB", "-1"] {
            assert!(bad.parse::<MemSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_section_reads_every_field() {
        let o = yaml(
            "partition: gpu\ngres: gpu:1\ntime: 2:00:00\ncpus_per_task: 8\nmem: 16G\naccount: lab\n\
             extra: [--qos=high, --constraint=a100]\n",
        )
        .unwrap();
        assert_eq!(
            o.sbatch_args(),
            [
                "--partition=gpu",
                "--gres=gpu:1",
                "--time=2:00:00",
                "--cpus-per-task=8",
                "--mem=16G",
                "--account=lab",
                "--qos=high",
                "--constraint=a100"
            ]
        );
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn yaml_numbers_are_minutes_and_megabytes() {
        let o = yaml("time: 90\nmem: 4096\n").unwrap();
        assert_eq!(o.time.unwrap().to_string(), "90");
        assert_eq!(o.mem.unwrap().to_string(), "4096");
    }

    #[test]
    fn yaml_errors_are_clear() {
        let e = yaml("partiton: gpu\n").unwrap_err();
        assert!(
            e.contains("unknown field `partiton`") && e.contains("partition"),
            "{e}"
        );
        let e = yaml("time: 2h\n").unwrap_err();
        assert!(e.contains("bad slurm time limit `2h`"), "{e}");
        let e = yaml("mem: lots\n").unwrap_err();
        assert!(e.contains("bad slurm memory size `lots`"), "{e}");
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        slurm: SlurmOptions,
    }

    #[test]
    fn flags_parse_and_win_over_the_file() {
        let file = yaml("partition: cpu\ntime: 60\nmem: 8G\nextra: [--qos=low]\n").unwrap();
        let cli = Cli::try_parse_from([
            "labpipe",
            "--partition",
            "gpu",
            "--gres=gpu:2",
            "--cpus-per-task",
            "4",
            "--sbatch-arg",
            "--qos=high",
        ])
        .unwrap();
        let merged = file.overridden_by(&cli.slurm);
        assert_eq!(
            merged.sbatch_args(),
            [
                "--partition=gpu",
                "--gres=gpu:2",
                "--time=60",
                "--cpus-per-task=4",
                "--mem=8G",
                "--qos=low",
                "--qos=high"
            ]
        );
        // Nothing set on the command line leaves the file's options as they are.
        assert_eq!(file.overridden_by(&SlurmOptions::default()), file);
    }

    #[test]
    fn flag_time_is_checked_by_clap() {
        let e = Cli::try_parse_from(["labpipe", "--time", "2 hours"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad slurm time limit `2 hours`"), "{e}");
    }

    #[test]
    fn report_keeps_placement_and_drops_resources() {
        let o = yaml("partition: gpu\ngres: gpu:1\ntime: 30\ncpus_per_task: 8\nmem: 16G\naccount: lab\nextra: [--gpus=1]\n")
            .unwrap();
        assert_eq!(
            o.for_report().sbatch_args(),
            ["--partition=gpu", "--time=30", "--account=lab"]
        );
    }

    #[test]
    fn validation_names_the_problem() {
        let with = |text: &str| yaml(text).unwrap().validate().unwrap_err().to_string();
        assert_eq!(
            with("partition: 'gpu a100'\n"),
            "slurm `partition` must not contain spaces or control characters: `gpu a100`"
        );
        assert_eq!(with("account: ''\n"), "slurm `account` is empty: ``");
        assert_eq!(
            with("cpus_per_task: 0\n"),
            "slurm `cpus_per_task` must be at least 1"
        );
        assert_eq!(
            with("extra: [qos=high]\n"),
            "slurm `extra` entry `qos=high`: expected an sbatch option such as `--qos=high`"
        );
        assert_eq!(
            with("extra: ['--array=0-3']\n"),
            "slurm `extra` entry `--array=0-3`: labpipe sets --array itself"
        );
        assert_eq!(
            with("extra: ['-o', x]\n"),
            "slurm `extra` entry `-o`: labpipe sets --output itself"
        );
        assert_eq!(
            with("extra: ['-pgpu']\n"),
            "slurm `extra` entry `-pgpu`: --partition has its own field: use `partition` (or the --partition flag) instead"
        );
        assert_eq!(
            with("extra: ['--time=5']\n"),
            "slurm `extra` entry `--time=5`: --time has its own field: use `time` (or the --time flag) instead"
        );
        assert_eq!(
            with("extra: [\"--comment=a\\nb\"]\n"),
            "slurm `extra` entry `--comment=a\nb`: an option must fit on one `#SBATCH` line"
        );
        // Options labpipe does not own pass, short or long.
        assert_eq!(
            yaml("extra: ['--qos=high', '-N1', '--exclusive']\n")
                .unwrap()
                .validate(),
            Ok(())
        );
    }
}
