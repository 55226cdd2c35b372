//! Cross-entropy with optional label smoothing, as torch.nn.CrossEntropyLoss (mean reduction), and the count
//! of correct predictions. On the CPU (f32), and on CUDA with labpipe's kernels on, each is one fused op
//! (fused.rs); elsewhere they are composed of Candle ops.

mod fused;

use candle_core::{D, DType, Result, Tensor};

/// Whether the fused ops apply to `logits`: f32 on the CPU, or f32 on CUDA with labpipe's kernels enabled.
fn fused_applies(logits: &Tensor) -> bool {
    if logits.dtype() != DType::F32 {
        return false;
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::is_cuda_f32(logits) {
        return crate::cuda::kernels_enabled();
    }
    // A measurement of CUDA's default path on the CPU (bench::op_count) composes everything.
    logits.device().is_cpu() && crate::model::ops::composition() != crate::model::ops::Composition::All
}

/// Mean cross-entropy of `logits` `[N, K]` against `labels` `[N]` (u32), with label smoothing `eps`: a scalar
/// tensor. A label outside `0..K` is an error on the CPU (on CUDA the kernel cannot stop the step: the loss
/// is NaN, which the trainer reports as divergence).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    if fused_applies(logits) && labels.dtype() == DType::U32 {
        return logits
            .contiguous()?
            .apply_op2(&labels.contiguous()?, fused::CrossEntropy { eps });
    }
    cross_entropy_composed(logits, labels, eps)
}

/// [`cross_entropy`] composed of Candle ops (autograd derives the gradient).
fn cross_entropy_composed(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = log_probs
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .mean_all()?;
    if eps == 0.0 {
        return Ok(nll);
    }
    // PyTorch: (1 − ε)·nll + ε·mean over classes of −log p.
    let smooth = log_probs.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll * (1.0 - eps))? + (smooth * eps)?
}

/// Cross-entropy of each row of `logits` `[N, K]` against its label in `labels` `[N]` (u32), without label
/// smoothing: `[N]`, each row's loss computed from that row alone.
pub fn per_sample_cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(logits, D::Minus1)?
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()
}

/// Number of rows whose arg-max equals the label, read back to the host.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(correct_count(logits, labels)?.to_scalar::<f32>()? as usize)
}

/// Number of rows whose arg-max (the first maximum, as torch.argmax) equals the label, as an f32 scalar tensor
/// left on the device, so a caller can read it later without waiting for the device now.
pub fn correct_count(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    if fused_applies(logits) && labels.dtype() == DType::U32 {
        return logits
            .contiguous()?
            .apply_op2_no_bwd(&labels.contiguous()?, &fused::CorrectCount);
    }
    correct_count_composed(logits, labels)
}

/// [`correct_count`] composed of Candle ops.
fn correct_count_composed(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    logits
        .argmax(D::Minus1)?
        .eq(labels)?
        .to_dtype(DType::F32)?
        .sum_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_hand_computed_values() {
        // torch: F.cross_entropy(torch.tensor([[1.,2.,3.],[1.,0.,0.]]), torch.tensor([2,0])) = 0.4795253
        let logits = Tensor::new(&[[1f32, 2., 3.], [1., 0., 0.]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        let l = cross_entropy(&logits, &labels, 0.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - 0.479_525_3).abs() < 1e-5, "{l}");
        // label_smoothing=0.1: 0.5628587 (torch)
        let l = cross_entropy(&logits, &labels, 0.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - 0.562_858_7).abs() < 1e-5, "{l}");
        assert_eq!(correct(&logits, &labels).unwrap(), 2);
        // Per row: −log softmax at the label; their mean is the unsmoothed loss.
        let rows = per_sample_cross_entropy(&logits, &labels)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!((rows[0] - 0.407_605_9).abs() < 1e-6, "{rows:?}");
        assert!((rows[1] - 0.551_444_8).abs() < 1e-6, "{rows:?}");
    }

    fn random_case(n: usize, k: usize, seed: u64) -> (Tensor, Tensor) {
        let mut rng = crate::rng::Rng::stream(seed, "loss-test", 0);
        let x: Vec<f32> = (0..n * k).map(|_| (rng.normal() * 3.0) as f32).collect();
        let y: Vec<u32> = (0..n).map(|i| ((i * 7 + seed as usize) % k) as u32).collect();
        (
            Tensor::from_vec(x, (n, k), &Device::Cpu).unwrap(),
            Tensor::from_vec(y, n, &Device::Cpu).unwrap(),
        )
    }

    /// (loss, dlogits of 3·loss) through `f`.
    fn loss_and_grad(
        f: fn(&Tensor, &Tensor, f64) -> Result<Tensor>,
        x: &Tensor,
        y: &Tensor,
        eps: f64,
    ) -> (f32, Vec<f32>) {
        let v = candle_core::Var::from_tensor(x).unwrap();
        let loss = f(v.as_tensor(), y, eps).unwrap();
        let grads = (&loss * 3.0).unwrap().backward().unwrap();
        let g = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap();
        (loss.to_scalar().unwrap(), g.to_vec1().unwrap())
    }

    #[test]
    fn the_fused_loss_and_gradient_match_the_composed_ops() {
        // 300 × 300 takes the parallel row path.
        for (n, k) in [(1, 2), (7, 10), (128, 10), (64, 100), (300, 300)] {
            for eps in [0.0, 0.1] {
                let (x, y) = random_case(n, k, (n + k) as u64);
                let (fused, dfused) = loss_and_grad(cross_entropy, &x, &y, eps);
                let (composed, dcomposed) = loss_and_grad(cross_entropy_composed, &x, &y, eps);
                assert!(
                    (fused - composed).abs() <= 2e-6 * composed.abs().max(1.0),
                    "{n}x{k} eps {eps}: {fused} vs {composed}"
                );
                let worst = dfused
                    .iter()
                    .zip(&dcomposed)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-6 * 3.0 / n as f32 + 1e-9,
                    "{n}x{k} eps {eps}: gradient off by {worst}"
                );
            }
        }
    }

    #[test]
    fn the_fused_count_matches_the_composed_ops_and_takes_the_first_of_tied_maxima() {
        for (n, k) in [(1, 2), (7, 10), (128, 10), (64, 100)] {
            let (x, y) = random_case(n, k, 3);
            // Round to whole numbers so that rows have ties.
            let x = x.round().unwrap();
            let fused = correct_count(&x, &y).unwrap().to_scalar::<f32>().unwrap();
            let composed = correct_count_composed(&x, &y)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(fused, composed, "{n}x{k}");
        }
        // torch.argmax([[1, 3, 3], [2, 2, 0]]) = [1, 0]
        let x = Tensor::new(&[[1f32, 3., 3.], [2., 2., 0.]], &Device::Cpu).unwrap();
        let first = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
        let second = Tensor::new(&[2u32, 1], &Device::Cpu).unwrap();
        assert_eq!(correct(&x, &first).unwrap(), 2);
        assert_eq!(correct(&x, &second).unwrap(), 0);
    }

    #[test]
    fn a_label_outside_the_classes_is_a_clear_error() {
        let logits = Tensor::new(&[[1f32, 2., 3.], [1., 0., 0.]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[2u32, 3], &Device::Cpu).unwrap();
        let e = cross_entropy(&logits, &labels, 0.0).unwrap_err().to_string();
        assert!(
            e.contains("label 3 of row 1 is out of range") && e.contains("3 classes"),
            "{e}"
        );
        let short = Tensor::new(&[2u32], &Device::Cpu).unwrap();
        let e = cross_entropy(&logits, &short, 0.0).unwrap_err().to_string();
        assert!(e.contains("2 rows of logits but 1 labels"), "{e}");
    }

    #[test]
    fn the_fused_loss_and_gradient_match_pytorch() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cross_entropy");
        let t = candle_core::safetensors::load(dir.join("cross_entropy.safetensors"), &Device::Cpu)
            .expect("fixture");
        for (case, eps) in [
            ("b128_k10", 0.0),
            ("b128_k10_ls", 0.1),
            ("b7_k100_ls", 0.1),
            ("b16_k1000", 0.0),
            ("b16_k10_large", 0.05),
        ] {
            let get = |k: &str| {
                t.get(&format!("{case}.{k}"))
                    .unwrap_or_else(|| panic!("{case}.{k}"))
            };
            let x = candle_core::Var::from_tensor(get("x")).unwrap();
            let y = get("y").to_dtype(DType::U32).unwrap();
            let loss = cross_entropy(x.as_tensor(), &y, eps).unwrap();
            let want: Vec<f32> = get("loss").to_vec1().unwrap();
            let got = loss.to_scalar::<f32>().unwrap();
            assert!(
                (got - want[0]).abs() <= 1e-6 * want[0].abs().max(1.0),
                "{case}: loss {got} vs PyTorch {}",
                want[0]
            );
            let grads = loss.backward().unwrap();
            let got: Vec<f32> = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want: Vec<f32> = get("grad_x").flatten_all().unwrap().to_vec1().unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-6 * scale,
                "{case}: gradient off by {worst} (largest {scale})"
            );
        }
    }

    /// Time of the loss part of a training step (loss, its gradient, the correct count, both read back),
    /// fused against composed, interleaved: `cargo test --lib loss_step_time -- --ignored --nocapture` (the test
    /// profile is optimized).
    #[test]
    #[ignore = "a timing, not a check"]
    fn loss_step_time() {
        type Loss = fn(&Tensor, &Tensor, f64) -> Result<Tensor>;
        type Count = fn(&Tensor, &Tensor) -> Result<Tensor>;
        let step = |loss: Loss, count: Count, x: &Tensor, y: &Tensor| {
            let v = candle_core::Var::from_tensor(x).unwrap();
            let l = loss(v.as_tensor(), y, 0.1).unwrap();
            let g = l.backward().unwrap();
            std::hint::black_box(g.get(v.as_tensor()).unwrap());
            let c = count(v.as_tensor(), y).unwrap().to_scalar::<f32>().unwrap();
            std::hint::black_box((l.to_scalar::<f32>().unwrap(), c));
        };
        for (n, k) in [(64, 10), (128, 10), (256, 1000)] {
            let (x, y) = random_case(n, k, 5);
            let mut t = [std::time::Duration::ZERO; 2];
            for round in 0..400 {
                let fused = round % 2 == 0;
                let start = std::time::Instant::now();
                if fused {
                    step(cross_entropy, correct_count, &x, &y);
                } else {
                    step(cross_entropy_composed, correct_count_composed, &x, &y);
                }
                t[usize::from(!fused)] += start.elapsed();
            }
            eprintln!(
                "{n}x{k}: fused {:?}, composed {:?} per step (fused/composed {:.2})",
                t[0] / 200,
                t[1] / 200,
                t[0].as_secs_f64() / t[1].as_secs_f64()
            );
        }
    }
}
