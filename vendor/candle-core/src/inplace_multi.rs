//! labpipe patch 6: one in-place operation over many tensors (as PyTorch's multi-tensor optimizers), counted
//! as one device operation. Candle's `inplace_op*` mutate one tensor per call.

use crate::storage::{StorageMutRef, StorageRef};
use crate::{bail, CpuStorage, CudaStorage, Layout, Result, Storage, Tensor};

/// An in-place operation that writes several target tensors at once, reading several source tensors.
pub trait InplaceOpMulti {
    /// The operation's name, for errors.
    fn name(&self) -> &'static str;

    /// The operation on CPU storages, targets and sources in the order given to [`inplace_op_multi`].
    fn cpu_fwd(
        &self,
        targets: &mut [(&mut CpuStorage, &Layout)],
        sources: &[(&CpuStorage, &Layout)],
    ) -> Result<()>;

    /// The operation on CUDA storages; by default it has none.
    fn cuda_fwd(
        &self,
        targets: &mut [(&mut CudaStorage, &Layout)],
        sources: &[(&CudaStorage, &Layout)],
    ) -> Result<()> {
        let _ = (targets, sources);
        bail!("{}: no cuda implementation", self.name())
    }
}

/// Runs `op` once over every target (written in place) and source (read), all on one device. A target
/// must own its storage: sharing it with any other tensor of the call is an error (sources may share).
/// Counted as one operation.
pub fn inplace_op_multi(targets: &[&Tensor], sources: &[&Tensor], op: &dyn InplaceOpMulti) -> Result<()> {
    let name = op.name();
    let Some(first) = targets.first() else {
        return Ok(());
    };
    for (i, t) in targets.iter().chain(sources).enumerate() {
        if !t.device().same_device(first.device()) {
            bail!(
                "{name}: tensor {i} is on {:?}, target 0 on {:?}; all must be on one device",
                t.device(),
                first.device()
            );
        }
    }
    for (i, t) in targets.iter().enumerate() {
        if t.layout().has_internal_overlap() {
            bail!("{name}: target {i} has repeated elements (zero stride) and cannot be written in place");
        }
    }
    // (storage key, index among targets then sources): locks are taken in key order, so two calls never
    // wait on each other in a cycle, and equal neighbours reveal shared storage.
    let mut keyed: Vec<(usize, usize)> = targets
        .iter()
        .chain(sources)
        .enumerate()
        .map(|(i, t)| (t.storage_key(), i))
        .collect();
    keyed.sort_unstable();
    for pair in keyed.windows(2) {
        let ((ka, a), (kb, b)) = (pair[0], pair[1]);
        if ka == kb && (a < targets.len() || b < targets.len()) {
            let what = |i: usize| {
                if i < targets.len() {
                    format!("target {i}")
                } else {
                    format!("source {}", i - targets.len())
                }
            };
            bail!(
                "{name}: {} and {} share one storage; a target must not be listed twice or alias another tensor",
                what(a),
                what(b)
            );
        }
    }
    let n = targets.len();
    let mut writes: Vec<Option<StorageMutRef<'_>>> = (0..n).map(|_| None).collect();
    let mut reads: Vec<Option<StorageRef<'_>>> = (0..sources.len()).map(|_| None).collect();
    for &(_, i) in &keyed {
        if i < n {
            writes[i] = Some(targets[i].storage_mut());
        } else {
            reads[i - n] = Some(sources[i - n].storage());
        }
    }
    let mut writes: Vec<StorageMutRef<'_>> = writes.into_iter().flatten().collect();
    let reads: Vec<StorageRef<'_>> = reads.into_iter().flatten().collect();
    crate::op_count::bump();
    macro_rules! dispatch {
        ($variant:ident, $fwd:ident) => {{
            let mut ts = Vec::with_capacity(n);
            for (g, t) in writes.iter_mut().zip(targets) {
                let Storage::$variant(s) = &mut **g else {
                    bail!("{name}: targets on different backends")
                };
                ts.push((s, t.layout()));
            }
            let mut ss = Vec::with_capacity(sources.len());
            for (g, t) in reads.iter().zip(sources) {
                let Storage::$variant(s) = &**g else {
                    bail!("{name}: sources on different backends")
                };
                ss.push((s, t.layout()));
            }
            op.$fwd(&mut ts, &ss)
        }};
    }
    match &*writes[0] {
        Storage::Cpu(_) => dispatch!(Cpu, cpu_fwd),
        Storage::Cuda(_) => dispatch!(Cuda, cuda_fwd),
        Storage::Metal(_) => bail!("{name}: no metal implementation"),
    }
}
