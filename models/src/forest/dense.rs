//! A dense, breadth-first copy of a forest, for scoring many rows.
//!
//! Each tree becomes a complete binary tree of the forest's height limit
//! `D`, stored heap-style: split slots `1 .. 2^D` (the children of slot `k`
//! are `2k` and `2k + 1`) and `2^D` leaf values. A leaf of the original tree
//! above depth `D` is copied to every leaf slot below it, so whatever way a
//! point goes under it, it ends with that leaf's path length. A walk is then
//! `D` steps of pure arithmetic, `k = 2k + (x > t)`, without loading child
//! indices, and ends at leaf `k − 2^D`.
//!
//! Thresholds and row values are compared as *order keys*: `u64`s whose
//! unsigned order is the order of the `f64`s they come from (see [`key`]).
//! The comparison is exact, as with the floats, but it is one integer
//! compare (a float compare also needs its NaN case and a flag extraction).
//! A tree's threshold keys and split features share one array, so one base
//! address serves both loads of a step. Rows are converted once per block
//! into groups of `LANES` rows at a power-of-two stride `S`, so a lane's
//! value of feature `f` is a fixed offset from the group's address and a
//! feature index is masked rather than bounds-checked. A step is then about
//! seven instructions, and ten walks in lock-step hide most of the latency
//! of its two dependent loads (split feature, then the row's value).
//!
//! The copy is derived data: built on first use, never persisted, and only
//! for height limits up to [`MAX_DENSE_DEPTH`] (ψ ≤ 4096) and at most
//! [`MAX_DENSE_FEATURES`] features.

use super::Node;
use crate::Matrix;

/// Deepest height limit worth a dense copy (96 KB per tree).
pub(super) const MAX_DENSE_DEPTH: usize = 12;

/// Widest input the dense copy handles: the largest row stride of a block.
pub(super) const MAX_DENSE_FEATURES: usize = 256;

/// Rows walked through a tree in lock-step: independent walks let the CPU
/// overlap their loads. Measured: 8 and 12 were slower than 10 (12 no
/// longer fits the registers).
const LANES: usize = 10;

/// Rows scored per block: a block's columns and one tree fit in L1
/// together, so each tree is loaded once per block rather than once per
/// row.
const BLOCK: usize = LANES * 32;

/// The order key of `v`: `key(a) > key(b)` exactly when `a > b`, for all
/// non-NaN values (−0 and +0 are equal as floats and get the same key); NaN
/// maps above everything, so it walks right like in the arena walk.
#[inline]
pub(super) fn key(v: f64) -> u64 {
    if v.is_nan() {
        return u64::MAX;
    }
    // Adding +0 turns −0 into +0 and changes nothing else.
    let bits = (v + 0.0).to_bits();
    // Negative floats order backwards by their bits: flip them all; positive
    // ones only need the sign bit set to sort above the negatives.
    let negative = ((bits as i64) >> 63) as u64;
    bits ^ (negative | (1 << 63))
}

/// All trees of a forest in the dense layout.
#[derive(Debug, Clone)]
pub(super) struct DenseForest {
    depth: usize,
    /// Per tree, `2^depth` threshold keys then `2^depth` split features
    /// (slot 0 of each unused), tree after tree: one base address serves
    /// both loads of a step, which keeps the lock-step walks in registers.
    splits: Vec<u64>,
    /// `2^depth` path lengths per tree, tree after tree.
    leaves: Vec<f64>,
}

impl DenseForest {
    /// Copies the arena trees rooted at `roots`; `None` when the height
    /// limit or the width is too large for a dense copy.
    pub(super) fn build(
        nodes: &[Node],
        roots: &[u32],
        depth: usize,
        n_features: usize,
    ) -> Option<Self> {
        if depth > MAX_DENSE_DEPTH || n_features > MAX_DENSE_FEATURES {
            return None;
        }
        let slots = roots.len() << depth;
        let mut dense = Self {
            depth,
            // Unused slots (under an early leaf) keep threshold 0: their
            // direction does not matter, every leaf below is the same.
            splits: vec![0; 2 * slots],
            leaves: vec![0.0; slots],
        };
        for (t, &root) in roots.iter().enumerate() {
            dense.fill(nodes, t, root as usize, 1, 0);
        }
        Some(dense)
    }

    /// Bytes of heap the copy occupies.
    pub(super) fn heap_bytes(&self) -> usize {
        self.splits.len() * std::mem::size_of::<u64>()
            + self.leaves.len() * std::mem::size_of::<f64>()
    }

    /// Copies the arena subtree at `a` into heap slot `k` (at depth `d`) of
    /// tree `t`.
    fn fill(&mut self, nodes: &[Node], t: usize, a: usize, k: usize, d: usize) {
        let base = t << self.depth;
        let node = nodes[a];
        if node.is_leaf(a) || d == self.depth {
            // Every leaf slot under `k`: its leftmost descendant at depth D
            // and the 2^(D−d) slots after it.
            let first = (k << (self.depth - d)) - (1 << self.depth);
            self.leaves[base + first..base + first + (1 << (self.depth - d))].fill(node.value);
            return;
        }
        let n = 1 << self.depth;
        self.splits[2 * base + k] = key(node.value);
        self.splits[2 * base + n + k] = u64::from(node.feature);
        self.fill(nodes, t, node.kids[0] as usize, 2 * k, d + 1);
        self.fill(nodes, t, node.kids[1] as usize, 2 * k + 1, d + 1);
    }

    /// Sum over all trees, in tree order, of each row's path length, into
    /// `totals` (one per row of `x`). `x` must be as wide as the forest.
    pub(super) fn path_totals(&self, x: &Matrix, totals: &mut [f64]) {
        debug_assert_eq!(totals.len(), x.rows());
        // Row stride of a converted block: the smallest that holds every
        // feature, so a feature index needs no bounds check.
        match x.cols() {
            ..=16 => self.blocks::<16>(x, totals),
            17..=64 => self.blocks::<64>(x, totals),
            _ => self.blocks::<MAX_DENSE_FEATURES>(x, totals),
        }
    }

    /// [`path_totals`](Self::path_totals) with rows converted to keys at a
    /// stride of `S` (a power of two, at least the width of `x`).
    fn blocks<const S: usize>(&self, x: &Matrix, totals: &mut [f64]) {
        let cols = x.cols();
        let mut groups = vec![[[0u64; S]; LANES]; BLOCK / LANES];
        for (rows, out) in x
            .as_slice()
            .chunks(BLOCK * cols)
            .zip(totals.chunks_mut(BLOCK))
        {
            for (group, rows) in groups.iter_mut().zip(rows.chunks(LANES * cols)) {
                for (lane, row) in group.iter_mut().zip(rows.chunks_exact(cols)) {
                    for (slot, &v) in lane.iter_mut().zip(row) {
                        *slot = key(v);
                    }
                }
            }
            // Rows past the end of a short last block hold the previous
            // block's keys: walked, but never read back.
            let mut acc = [0.0; BLOCK];
            self.accumulate(&groups, &mut acc);
            out.copy_from_slice(&acc[..out.len()]);
        }
    }

    /// Adds every tree's path length for each row of the block to `acc`.
    fn accumulate<const S: usize>(&self, groups: &[[[u64; S]; LANES]], acc: &mut [f64; BLOCK]) {
        // One monomorphised walk per height limit: with the tree size a
        // constant, slot indices are masked instead of bounds-checked.
        match self.depth {
            0 => self.walk::<1, 2, S>(groups, acc),
            1 => self.walk::<2, 4, S>(groups, acc),
            2 => self.walk::<4, 8, S>(groups, acc),
            3 => self.walk::<8, 16, S>(groups, acc),
            4 => self.walk::<16, 32, S>(groups, acc),
            5 => self.walk::<32, 64, S>(groups, acc),
            6 => self.walk::<64, 128, S>(groups, acc),
            7 => self.walk::<128, 256, S>(groups, acc),
            8 => self.walk::<256, 512, S>(groups, acc),
            9 => self.walk::<512, 1024, S>(groups, acc),
            10 => self.walk::<1024, 2048, S>(groups, acc),
            11 => self.walk::<2048, 4096, S>(groups, acc),
            _ => self.walk::<4096, 8192, S>(groups, acc),
        }
    }

    /// [`accumulate`](Self::accumulate) for trees with `N = 2^depth` leaves
    /// (`M = 2N` split words) and rows at stride `S`.
    fn walk<const N: usize, const M: usize, const S: usize>(
        &self,
        groups: &[[[u64; S]; LANES]],
        acc: &mut [f64; BLOCK],
    ) {
        debug_assert_eq!(N, 1 << self.depth);
        debug_assert_eq!(M, 2 * N);
        let trees = self.splits.chunks_exact(M).zip(self.leaves.chunks_exact(N));
        for (splits, leaves) in trees {
            let (Ok(splits), Ok(leaves)): (Result<&[u64; M], _>, Result<&[f64; N], _>) =
                (splits.try_into(), leaves.try_into())
            else {
                unreachable!("chunks_exact yields whole trees")
            };
            for (rows, acc) in groups.iter().zip(acc.chunks_exact_mut(LANES)) {
                let mut k = [1usize; LANES];
                for _ in 0..N.trailing_zeros() {
                    for (k, row) in k.iter_mut().zip(rows) {
                        let slot = *k & (N - 1);
                        let v = row[splits[N + slot] as usize & (S - 1)];
                        *k = 2 * *k + usize::from(splits[slot] < v);
                    }
                }
                for (a, &k) in acc.iter_mut().zip(&k) {
                    *a += leaves[k & (N - 1)];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key;

    #[test]
    fn keys_order_like_floats() {
        let values = [
            f64::NEG_INFINITY,
            f64::MIN,
            -1.5,
            -f64::MIN_POSITIVE,
            -5e-324,
            0.0,
            5e-324,
            f64::MIN_POSITIVE,
            1.0,
            1.0 + f64::EPSILON,
            f64::MAX,
            f64::INFINITY,
        ];
        for a in values {
            for b in values {
                assert_eq!(key(a) > key(b), a > b, "{a} vs {b}");
            }
        }
        assert_eq!(key(-0.0), key(0.0));
        assert!(key(f64::NAN) > key(f64::INFINITY));
        assert!(key(-f64::NAN) > key(f64::INFINITY));
    }
}
