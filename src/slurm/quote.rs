//! Quoting values for the two readers of a batch script: bash (the body) and sbatch (the `#SBATCH` lines).

/// `value` as one bash word: single-quoted, each `'` written as `'\''`. Bash reads any text back exactly,
/// newlines included, except NUL, which no argument can hold (callers reject it).
pub fn shell_word(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `value` as one argument of an `#SBATCH` line.
///
/// sbatch splits these lines at whitespace, starts a comment at an unquoted `#`, groups with double quotes and
/// takes a backslash as "the next character as is" (checked against sbatch 22.05: `--job-name="a\"b"` gives
/// `a"b`, `--job-name=a#b` gives `a`). A value that needs none of that is written bare, for readability.
pub fn sbatch_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.,:=+@%/[]".contains(c));
    if plain {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn shell_words_read_back_exactly() {
        let values = [
            "lr[lr=0.01,scheduler=step]",
            "it's a \"test\"",
            "$(touch /tmp/never) `x` $HOME *",
            "two\nlines",
            "",
            "\\'\\",
        ];
        let script: String = values
            .iter()
            .map(|v| format!("printf '%s\\0' {}\n", shell_word(v)))
            .collect();
        let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success());
        let got: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        assert_eq!(got, values);
    }

    #[test]
    fn shell_word_text() {
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn sbatch_words() {
        assert_eq!(sbatch_word("--partition=gpu"), "--partition=gpu");
        assert_eq!(
            sbatch_word("--output=/out/slurm/x/%A_%a.out"),
            "--output=/out/slurm/x/%A_%a.out"
        );
        assert_eq!(
            sbatch_word("--output=/my out/%A_%a.out"),
            "\"--output=/my out/%A_%a.out\""
        );
        assert_eq!(sbatch_word("--comment=#1"), "\"--comment=#1\"");
        assert_eq!(sbatch_word(r#"--job-name=a"b\c"#), r#""--job-name=a\"b\\c""#);
        assert_eq!(sbatch_word("--job-name=it's"), "\"--job-name=it's\"");
    }
}
