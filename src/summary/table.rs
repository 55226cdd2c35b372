//! Text output: torchsummary's table and the seed report's thop lines, character for character.

use std::fmt::Write;

use super::ModelSummary;

/// An integer with comma thousands separators, as Python's `"{:,}".format(n)`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Python's `repr(float(n))` for a whole number, as `print(f"{flops}")` shows thop's float64 totals.
fn python_float(n: u64) -> String {
    let x = n as f64;
    if x < 1e16 {
        // Python prints whole floats below 1e16 in positional form with a trailing `.0`.
        format!("{x}.0")
    } else {
        // Above that Python switches to shortest-digits scientific notation with a signed exponent.
        format!("{x:e}").replacen('e', "e+", 1)
    }
}

/// A shape as torchsummary prints it: `str(list(out.size()))` with the batch dimension shown as -1.
fn batch_shape(shape: &[usize]) -> String {
    let mut s = String::from("[-1");
    for d in shape {
        let _ = write!(s, ", {d}");
    }
    s.push(']');
    s
}

fn row(out: &mut String, name: &str, shape: &str, params: &str) {
    let _ = writeln!(out, "{name:>20}  {shape:>25} {params:>15}");
}

/// torchsummary 1.5.1's printout: the layer table, the parameter totals and the size estimates.
pub fn render_torchsummary(s: &ModelSummary) -> String {
    let dashes = "-".repeat(64);
    let equals = "=".repeat(64);
    let mut out = String::new();
    let _ = writeln!(out, "{dashes}");
    row(&mut out, "Layer (type)", "Output Shape", "Param #");
    let _ = writeln!(out, "{equals}");
    for r in &s.rows {
        row(
            &mut out,
            &r.name,
            &batch_shape(&r.output_shape),
            &thousands(r.params as u64),
        );
    }
    let _ = writeln!(out, "{equals}");
    let _ = writeln!(out, "Total params: {}", thousands(s.total_params as u64));
    let _ = writeln!(out, "Trainable params: {}", thousands(s.trainable_params as u64));
    let _ = writeln!(
        out,
        "Non-trainable params: {}",
        thousands(s.non_trainable_params as u64)
    );
    let _ = writeln!(out, "{dashes}");
    // Rust's `{:.2}` rounds the exact binary value half-to-even, as Python's "%0.2f" does.
    let _ = writeln!(out, "Input size (MB): {:.2}", s.input_mb);
    let _ = writeln!(
        out,
        "Forward/backward pass size (MB): {:.2}",
        s.forward_backward_mb
    );
    let _ = writeln!(out, "Params size (MB): {:.2}", s.params_mb);
    let _ = writeln!(out, "Estimated Total Size (MB): {:.2}", s.total_mb);
    let _ = writeln!(out, "{dashes}");
    out
}

/// What `labpipe summary` prints: thop's `FLOPs:` and `Params:` lines, then the torchsummary table.
pub fn render_seed_text(s: &ModelSummary) -> String {
    format!(
        "FLOPs: {}\nParams: {}\n{}",
        python_float(s.flops.thop_macs),
        python_float(s.flops.thop_params),
        render_torchsummary(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_matches_python() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(9408), "9,408");
        assert_eq!(thousands(11_181_642), "11,181,642");
        assert_eq!(thousands(123_456_789_012), "123,456,789,012");
    }

    #[test]
    fn python_float_repr() {
        assert_eq!(python_float(10_571_776), "10571776.0");
        assert_eq!(python_float(0), "0.0");
        assert_eq!(python_float(9_999_999_999_999_998), "9999999999999998.0");
        assert_eq!(python_float(10_000_000_000_000_000), "1e+16");
        assert_eq!(python_float(12_345_678_900_000_000), "1.23456789e+16");
    }

    #[test]
    fn shapes_show_the_batch_as_minus_one() {
        assert_eq!(batch_shape(&[32, 32, 32]), "[-1, 32, 32, 32]");
        assert_eq!(batch_shape(&[10]), "[-1, 10]");
    }
}
