//! A training BatchNorm's running-statistics update, as torch.nn.BatchNorm2d does it after each training
//! batch, in one operation instead of seven (the unbiased variance, two scalings and an add for each of the
//! mean and the variance). Running mean and variance travel as one `[2, C]` tensor (row 0 the mean, row 1 the
//! variance) so one operation writes both.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::cpu_data::{contiguous_f32, is_cpu_f32};

/// How the running statistics move towards a batch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningUpdate {
    /// PyTorch's `momentum`: the weight of the batch statistic (0.1 by default).
    pub momentum: f64,
    /// Values per channel in the batch (N·H·W): the variance is made unbiased with count / (count − 1).
    pub count: f64,
}

impl RunningUpdate {
    /// The three f32 factors, rounded as Candle rounds an `affine` multiplier: (keep, take, unbias).
    fn factors(self) -> (f32, f32, f32) {
        let unbias = self.count / (self.count - 1.0).max(1.0);
        ((1.0 - self.momentum) as f32, self.momentum as f32, unbias as f32)
    }
}

/// `[running_mean; running_var]` `[2, C]` moved towards the batch `mean` and biased `var` (both `[C]`):
/// `running_mean·(1 − m) + mean·m` and `running_var·(1 − m) + var·count/(count − 1)·m`. A new tensor; the
/// inputs carry no gradient. One operation on the CPU and on CUDA with labpipe's kernels; Candle ops elsewhere.
pub fn update_running_stats(
    running: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    update: RunningUpdate,
) -> Result<Tensor> {
    let c = mean.elem_count();
    if running.dims() != [2, c] || var.dims() != mean.dims() || mean.rank() != 1 {
        bail!(
            "running statistics: expected [2, C] running values and [C] batch mean and variance, got {:?}, {:?}, {:?}",
            running.dims(),
            mean.dims(),
            var.dims()
        )
    }
    let (mean, var) = (mean.detach(), var.detach());
    if is_cpu_f32(running) && is_cpu_f32(&mean) && is_cpu_f32(&var) {
        return running.apply_op3_no_bwd(&mean, &var, &RunningOp(update));
    }
    #[cfg(feature = "cuda")]
    if crate::cuda::is_cuda_f32(running)
        && crate::cuda::is_cuda_f32(&mean)
        && crate::cuda::is_cuda_f32(&var)
        && crate::cuda::kernels_enabled()
    {
        return running.apply_op3_no_bwd(&mean, &var, &RunningOp(update));
    }
    update_composed(running, &mean, &var, update)
}

/// The same update from Candle ops, in the same f32 operations (other devices and dtypes, the tests' reference).
fn update_composed(running: &Tensor, mean: &Tensor, var: &Tensor, update: RunningUpdate) -> Result<Tensor> {
    let unbias = update.count / (update.count - 1.0).max(1.0);
    let m = update.momentum;
    let rm = ((running.get(0)? * (1.0 - m))? + (mean * m)?)?;
    let rv = ((running.get(1)? * (1.0 - m))? + ((var * unbias)? * m)?)?;
    Tensor::stack(&[rm, rv], 0)
}

/// The fused op over (running `[2, C]`, mean `[C]`, var `[C]`).
struct RunningOp(RunningUpdate);

impl CustomOp3 for RunningOp {
    fn name(&self) -> &'static str {
        "labpipe-batch-norm-running-stats"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let running = contiguous_f32(s1, l1, "running statistics")?;
        let mean = contiguous_f32(s2, l2, "batch mean")?;
        let var = contiguous_f32(s3, l3, "batch variance")?;
        let c = mean.len();
        let (keep, take, unbias) = self.0.factors();
        // Each expression rounds as the composed ops do: affine is `x * mul + add` with add = 0.
        let mut out = Vec::with_capacity(2 * c);
        out.extend((0..c).map(|i| (running[i] * keep + 0.0) + (mean[i] * take + 0.0)));
        out.extend((0..c).map(|i| (running[c + i] * keep + 0.0) + ((var[i] * unbias + 0.0) * take + 0.0)));
        Ok((CpuStorage::F32(out), Shape::from((2, c))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        use crate::cuda;
        let dev = &s1.device;
        let running = cuda::view(s1, l1, "running statistics")?;
        let mean = cuda::view(s2, l2, "batch mean")?;
        let var = cuda::view(s3, l3, "batch variance")?;
        let c = mean.len();
        let (keep, take, unbias) = self.0.factors();
        let out = cuda::bn_running_update(dev, &running, &mean, &var, c, [keep, take, unbias])?;
        Ok((cuda::storage(out, dev), Shape::from((2, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn bits(t: &Tensor) -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn fused_update_equals_the_composed_ops_bit_for_bit_and_counts_one_operation() {
        let dev = Device::Cpu;
        let c = 37;
        let val = |k: f32| {
            (0..c)
                .map(|i| ((i as f32) * 0.37 + k).sin() * 3.0)
                .collect::<Vec<f32>>()
        };
        let running = Tensor::from_vec(
            [val(0.1), val(0.7).iter().map(|v| v.abs()).collect()].concat(),
            (2, c),
            &dev,
        )
        .unwrap();
        let mean = Tensor::from_vec(val(1.3), c, &dev).unwrap();
        let var = Tensor::from_vec(val(2.9).iter().map(|v| v * v).collect(), c, &dev).unwrap();
        for (momentum, count) in [(0.1, 64.0 * 32.0 * 32.0), (0.01, 2.0), (0.5, 1.0), (0.1, 7.0)] {
            let update = RunningUpdate { momentum, count };
            let before = candle_core::op_count::get();
            let fused = update_running_stats(&running, &mean, &var, update).unwrap();
            assert!(candle_core::op_count::get() > before);
            let composed = update_composed(&running, &mean, &var, update).unwrap();
            assert_eq!(
                bits(&fused),
                bits(&composed),
                "momentum {momentum}, count {count}"
            );
        }
    }

    #[test]
    fn torch_values() {
        // torch.nn.BatchNorm's rule, by hand: running [1, -2] / [4, 0.5], a batch of 4 values per channel with
        // mean [0.5, 3] and biased var [2, 1] (unbiased [8/3, 4/3]), momentum 0.1: [0.95, -1.5] / [3.8666…, 0.58333…].
        let dev = Device::Cpu;
        let running = Tensor::new(&[[1f32, -2.0], [4.0, 0.5]], &dev).unwrap();
        let mean = Tensor::new(&[0.5f32, 3.0], &dev).unwrap();
        let var = Tensor::new(&[2f32, 1.0], &dev).unwrap();
        let out = update_running_stats(
            &running,
            &mean,
            &var,
            RunningUpdate {
                momentum: 0.1,
                count: 4.0,
            },
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        let want = [[0.95f32, -1.5], [3.8666668, 0.5833334]];
        for (o, w) in out.iter().flatten().zip(want.iter().flatten()) {
            assert!((o - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let dev = Device::Cpu;
        let running = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let four = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let e = update_running_stats(
            &running,
            &four,
            &four,
            RunningUpdate {
                momentum: 0.1,
                count: 4.0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("expected [2, C]") && e.contains("[2, 3]") && e.contains("[4]"),
            "{e}"
        );
    }
}
