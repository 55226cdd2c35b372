//! Cross-entropy with optional label smoothing, as torch.nn.CrossEntropyLoss (mean reduction).

use candle_core::{D, Result, Tensor};

/// Mean cross-entropy of `logits` `[N, K]` against `labels` `[N]` (u32), with label smoothing `eps`.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
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

/// Number of rows whose arg-max equals the label.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let pred = logits.argmax(D::Minus1)?;
    Ok(pred
        .eq(labels)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
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
}
