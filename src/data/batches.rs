//! Batches for the trainer, produced ahead of it by background workers so training never waits on data.
//!
//! Each image's augmentation draws from its own random stream keyed by (seed, epoch, position), so results
//! are identical whatever the number of workers.

use super::ImageSet;
use super::augment::{Augment, augment_image};
use super::normalize::NormStats;
use super::shape::InputShape;
use crate::rng::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One batch: `len × C × H × W` normalized floats and the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The shape of each image.
    pub shape: InputShape,
    /// Pixels, image after image, channel-major.
    pub pixels: Vec<f32>,
    /// Class index per image.
    pub labels: Vec<u32>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The dimensions of the batch tensor: `(N, C, H, W)`.
    pub fn dims(&self) -> (usize, usize, usize, usize) {
        let s = self.shape;
        (self.len(), s.channels, s.height, s.width)
    }
}

/// What an epoch's batches are made from.
#[derive(Clone)]
pub struct BatchPlan {
    /// The images (a split of the dataset).
    pub images: Arc<ImageSet>,
    /// Normalization statistics.
    pub stats: NormStats,
    /// Augmentations (empty for evaluation).
    pub augment: Arc<Vec<Augment>>,
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle the order with this (seed, epoch); `None` keeps the stored order (evaluation).
    pub shuffle: Option<(u64, u64)>,
}

impl BatchPlan {
    /// Image order of the epoch.
    pub fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.images.len()).collect();
        if let Some((seed, epoch)) = self.shuffle {
            Rng::stream(seed, "order", epoch).shuffle(&mut order);
        }
        order
    }

    /// Number of batches (the last may be smaller).
    pub fn batch_count(&self) -> usize {
        self.images.len().div_ceil(self.batch_size)
    }

    /// Build batch `b` of `order`.
    pub fn build(&self, order: &[usize], b: usize) -> Batch {
        let start = b * self.batch_size;
        let idx = &order[start..(start + self.batch_size).min(order.len())];
        let shape = self.images.shape;
        let n = shape.values();
        let mut pixels = vec![0f32; idx.len() * n];
        let mut labels = Vec::with_capacity(idx.len());
        let (seed, epoch) = self.shuffle.unwrap_or((0, 0));
        for (k, &i) in idx.iter().enumerate() {
            let out = &mut pixels[k * n..(k + 1) * n];
            let mut rng = Rng::stream(
                seed,
                "augment",
                epoch.wrapping_mul(1 << 32).wrapping_add((start + k) as u64),
            );
            augment_image(
                &self.augment,
                shape,
                self.images.image(i),
                (&self.stats.mean, &self.stats.std),
                &mut rng,
                out,
            );
            labels.push(self.images.labels[i] as u32);
        }
        Batch {
            shape,
            pixels,
            labels,
        }
    }
}

/// An epoch's batches in order, built by `workers` background threads a few batches ahead.
pub struct Prefetcher {
    rx: Receiver<(usize, Batch)>,
    pending: BTreeMap<usize, Batch>,
    next: usize,
    total: usize,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    /// Time spent waiting for a batch that was not ready.
    pub waited: Duration,
}

impl Prefetcher {
    /// Start producing the batches of `plan` with `workers` threads.
    pub fn start(plan: BatchPlan, workers: usize) -> Self {
        let order = Arc::new(plan.order());
        let total = plan.batch_count();
        let workers = workers.max(1);
        // Bound the read-ahead so memory stays flat: a couple of batches per worker.
        let (tx, rx) = sync_channel(workers * 2);
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let plan = Arc::new(plan);
        let tx = Arc::new(Mutex::new(tx));
        let handles = (0..workers)
            .map(|w| {
                let (plan, order, counter, stop, tx) = (
                    plan.clone(),
                    order.clone(),
                    counter.clone(),
                    stop.clone(),
                    tx.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("labpipe-data-{w}"))
                    .spawn(move || {
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            let b = counter.fetch_add(1, Ordering::Relaxed);
                            if b >= total {
                                return;
                            }
                            let batch = plan.build(&order, b);
                            let sender = match tx.lock() {
                                Ok(s) => s.clone(),
                                Err(_) => return,
                            };
                            if sender.send((b, batch)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawning a data worker thread")
            })
            .collect();
        Prefetcher {
            rx,
            pending: BTreeMap::new(),
            next: 0,
            total,
            stop,
            handles,
            waited: Duration::ZERO,
        }
    }
}

impl Iterator for Prefetcher {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        loop {
            if let Some(b) = self.pending.remove(&self.next) {
                self.next += 1;
                return Some(b);
            }
            let t = Instant::now();
            let got = self.rx.recv();
            self.waited += t.elapsed();
            match got {
                Ok((i, b)) => {
                    self.pending.insert(i, b);
                }
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Drain so blocked senders wake up and see the stop flag.
        while self.rx.try_recv().is_ok() {}
        for h in self.handles.drain(..) {
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::yield_now();
            }
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    fn plan(batch: usize) -> BatchPlan {
        let d = synthetic::generate(37, 0);
        BatchPlan {
            images: Arc::new(d.train),
            stats: NormStats::identity(3),
            augment: Arc::new(Vec::new()),
            batch_size: batch,
            shuffle: Some((3, 1)),
        }
    }

    #[test]
    fn worker_count_does_not_change_batches() {
        let one: Vec<Batch> = Prefetcher::start(plan(8), 1).collect();
        let four: Vec<Batch> = Prefetcher::start(plan(8), 4).collect();
        assert_eq!(one.len(), 5);
        assert_eq!(one, four);
        assert_eq!(one.iter().map(Batch::len).sum::<usize>(), 37);
    }

    #[test]
    fn dropping_early_stops_workers() {
        let mut p = Prefetcher::start(plan(2), 3);
        assert!(p.next().is_some());
        drop(p);
    }

    #[test]
    fn epochs_shuffle_differently() {
        let mut a = plan(37);
        let first = a.order();
        a.shuffle = Some((3, 2));
        assert_ne!(first, a.order());
    }
}
