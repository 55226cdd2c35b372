//! Access to the f32 elements behind CPU tensors and storages, and per-thread scratch memory, for the
//! ops' hand-written kernels.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, StorageRef, Tensor, bail};
use rayon::prelude::*;

/// The contiguous f32 elements a CPU storage region describes, or an error naming `op`.
pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        other => bail!("{op}: expected f32 data, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!(
            "{op}: expected a contiguous tensor, got strides {:?}",
            layout.stride()
        ),
    }
}

/// A read lock on a contiguous f32 CPU tensor's storage, exposing its elements.
pub(crate) struct CpuF32<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> CpuF32<'a> {
    /// Lock `t`, which must be a contiguous f32 CPU tensor (else an error naming `op`).
    pub(crate) fn lock(t: &'a Tensor, op: &str) -> Result<Self> {
        let (storage, layout) = t.storage_and_layout();
        let (start, end) = match &*storage {
            Storage::Cpu(cpu) => {
                let data = contiguous_f32(cpu, layout, op)?;
                let base = layout.start_offset();
                (base, base + data.len())
            }
            _ => bail!("{op}: expected a CPU tensor, got {:?}", t.device().location()),
        };
        Ok(Self { storage, start, end })
    }

    /// The tensor's elements in row-major order.
    pub(crate) fn as_slice(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(data)) => &data[self.start..self.end],
            // `lock` admitted only f32 CPU storage, and the lock keeps it so.
            _ => &[],
        }
    }
}

/// Run `f` on the contiguous f32 elements of the CPU tensor `t` (copied first if it is strided).
pub(crate) fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.contiguous()?;
    let data = CpuF32::lock(&t, op)?;
    f(data.as_slice())
}

/// Which ops take their Candle-op composition even on the CPU, so that `labpipe bench` can count the
/// operations of the paths CUDA runs on any machine. Per thread (an op decides its path on the calling thread),
/// so a measurement never changes what other threads compute: for measurements only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Composition {
    /// None: every hand-written kernel runs (the CPU's path).
    None = 0,
    /// The ops that have no CUDA kernel (convolution, adaptive average pooling, BatchNorm → ReLU → max-pool as
    /// one op, evaluation BatchNorm): what CUDA runs with labpipe's kernels (`LABPIPE_CUDA_KERNELS=1`).
    CpuOnlyOps = 1,
    /// Every op: CUDA without labpipe's kernels (its default until they are verified on a GPU).
    All = 2,
}

thread_local! {
    static COMPOSITION: std::cell::Cell<Composition> = const { std::cell::Cell::new(Composition::None) };
}

/// Set which ops take their Candle-op composition on this thread (see [`Composition`]).
pub fn set_composition(c: Composition) {
    COMPOSITION.with(|x| x.set(c));
}

/// Which ops take their Candle-op composition on this thread (see [`set_composition`]).
pub fn composition() -> Composition {
    COMPOSITION.with(|x| x.get())
}

/// Whether the hand-written CPU kernels apply: an f32 tensor on the CPU (and not [`Composition::All`]).
pub(crate) fn is_cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32 && composition() != Composition::All
}

/// [`is_cpu_f32`] for an op whose only kernel is the CPU's: CUDA runs its composition even with labpipe's kernels.
pub(crate) fn is_cpu_f32_cpu_only(t: &Tensor) -> bool {
    is_cpu_f32(t) && composition() == Composition::None
}

thread_local! {
    /// Spare buffers of this thread, reused by [`with_scratch`] (a stack, so nested uses each get one).
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Run `f` with a reusable buffer of `len` floats from this thread's spares (contents unspecified:
/// callers overwrite what they read). Reuse spares the allocator and the kernel's page zeroing on
/// every call; nested calls, or a rayon task run while this thread waits, simply take another buffer.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH
        .with(|spares| spares.borrow_mut().pop())
        .unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let result = f(&mut buf[..len]);
    SCRATCH.with(|spares| spares.borrow_mut().push(buf));
    result
}

/// A new vector of `len` elements built in parallel: chunk `i` (of `chunk` elements, the last may be
/// shorter) is zeroed by the thread that then passes it to `fill(i, chunk)`, so the zeroing lands in
/// cache right before use instead of costing a separate single-threaded memory pass.
pub(crate) fn par_filled<T, F>(len: usize, chunk: usize, fill: F) -> Vec<T>
where
    T: Copy + Default + Send + Sync,
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    let mut v: Vec<T> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, part)| {
            fill(i, zeroed(part));
        });
    // SAFETY: the chunks cover indices 0..len and `zeroed` initialized every one of them.
    unsafe { v.set_len(len) };
    v
}

/// [`par_filled`] for two outputs filled together, chunk `i` of each (both must have as many chunks).
pub(crate) fn par_filled2<A, B, F>(
    len_a: usize,
    chunk_a: usize,
    len_b: usize,
    chunk_b: usize,
    fill: F,
) -> (Vec<A>, Vec<B>)
where
    A: Copy + Default + Send + Sync,
    B: Copy + Default + Send + Sync,
    F: Fn(usize, &mut [A], &mut [B]) + Send + Sync,
{
    let (ca, cb) = (chunk_a.max(1), chunk_b.max(1));
    assert_eq!(
        len_a.div_ceil(ca),
        len_b.div_ceil(cb),
        "par_filled2: outputs have different chunk counts"
    );
    let mut a: Vec<A> = Vec::with_capacity(len_a);
    let mut b: Vec<B> = Vec::with_capacity(len_b);
    a.spare_capacity_mut()[..len_a]
        .par_chunks_mut(ca)
        .zip(b.spare_capacity_mut()[..len_b].par_chunks_mut(cb))
        .enumerate()
        .for_each(|(i, (pa, pb))| fill(i, zeroed(pa), zeroed(pb)));
    // SAFETY: as in `par_filled`, for both vectors.
    unsafe {
        a.set_len(len_a);
        b.set_len(len_b);
    }
    (a, b)
}

/// Initialize every slot to `T::default()` and view the slots as initialized.
fn zeroed<T: Copy + Default>(part: &mut [MaybeUninit<T>]) -> &mut [T] {
    for slot in part.iter_mut() {
        slot.write(T::default());
    }
    // SAFETY: every element was initialized just above, and MaybeUninit<T> has T's layout.
    unsafe { &mut *(part as *mut [MaybeUninit<T>] as *mut [T]) }
}
