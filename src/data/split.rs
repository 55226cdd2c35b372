//! The validation split: images drawn at random, with the pipeline's seed, from the training set.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Which training-set indices train and which validate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Indices into the full training set used for training, ascending.
    pub train: Vec<usize>,
    /// Indices used for validation, ascending.
    pub val: Vec<usize>,
}

/// Draw `val_count` of `n` indices for validation; the same `(n, val_count, seed)` always gives the same split.
pub fn split(n: usize, val_count: usize, seed: u64) -> Split {
    let mut order: Vec<usize> = (0..n).collect();
    Rng::stream(seed, "val_split", 0).shuffle(&mut order);
    let mut val = order[..val_count.min(n)].to_vec();
    let mut train = order[val_count.min(n)..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    Split { train, val }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_a_seeded_partition() {
        let a = split(100, 10, 1);
        assert_eq!(a, split(100, 10, 1));
        assert_ne!(a, split(100, 10, 2));
        assert_eq!(a.val.len(), 10);
        let mut all: Vec<usize> = a.train.iter().chain(&a.val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Random, not the first ten.
        assert_ne!(a.val, (0..10).collect::<Vec<_>>());
    }
}
