//! A dense, breadth-first copy of a forest, for scoring many rows.
//!
//! Each tree becomes a complete binary tree of the forest's height limit
//! `D`: `2^D − 1` split slots in breadth-first order (the children of slot
//! `k` are `2k + 1` and `2k + 2`) and `2^D` leaf values. A leaf of the
//! original tree above depth `D` is copied to every leaf slot below it, so
//! whatever way a point goes under it, it ends with that leaf's path length.
//! A walk is then `D` steps of pure arithmetic, `k = 2k + 1 + (x > t)`,
//! without loading child indices: shorter dependency chains than the arena
//! walk, which matters when a block of rows walks each tree in lock-step.
//!
//! The copy is derived data: built on first use, never persisted, and only
//! for height limits up to [`MAX_DENSE_DEPTH`] (ψ ≤ 4096), where it costs at
//! most `2^D · 24` bytes per tree.

use super::{BLOCK_ROWS, LANES, Node};

/// Deepest height limit worth a dense copy (about 100 KB per tree).
pub(super) const MAX_DENSE_DEPTH: usize = 12;

/// One split slot. Unused slots (under an early leaf) keep the default,
/// whose direction does not matter.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    threshold: f64,
    feature: u32,
}

/// All trees of a forest in the dense layout.
#[derive(Debug, Clone)]
pub(super) struct DenseForest {
    depth: usize,
    /// `2^depth − 1` slots per tree plus one unused padding slot, tree after
    /// tree.
    splits: Vec<Slot>,
    /// `2^depth` path lengths per tree, tree after tree.
    leaves: Vec<f64>,
}

impl DenseForest {
    /// Copies the arena trees rooted at `roots`; `None` when the height
    /// limit is too large for a dense copy.
    pub(super) fn build(nodes: &[Node], roots: &[u32], depth: usize) -> Option<Self> {
        if depth > MAX_DENSE_DEPTH {
            return None;
        }
        let internal = (1usize << depth) - 1;
        let mut dense = Self {
            depth,
            // One padding slot per tree keeps each tree's slots a power of two
            // long, which lets the walk index them without bounds checks.
            splits: vec![Slot::default(); roots.len() * (internal + 1)],
            leaves: vec![0.0; roots.len() * (internal + 1)],
        };
        for (t, &root) in roots.iter().enumerate() {
            dense.fill(nodes, t, root as usize, 0, 0);
        }
        Some(dense)
    }

    /// Bytes of heap the copy occupies.
    pub(super) fn heap_bytes(&self) -> usize {
        self.splits.len() * std::mem::size_of::<Slot>()
            + self.leaves.len() * std::mem::size_of::<f64>()
    }

    /// Copies the arena subtree at `a` into dense slot `k` (at depth `d`) of
    /// tree `t`.
    fn fill(&mut self, nodes: &[Node], t: usize, a: usize, k: usize, d: usize) {
        let internal = (1usize << self.depth) - 1;
        let node = nodes[a];
        if node.is_leaf(a) || d == self.depth {
            // Every leaf slot under `k`: the leftmost descendant at depth D
            // and the 2^(D−d) slots after it.
            let first = ((k + 1) << (self.depth - d)) - 1 - internal;
            let base = t * (internal + 1);
            self.leaves[base + first..base + first + (1 << (self.depth - d))].fill(node.value);
            return;
        }
        self.splits[t * (internal + 1) + k] = Slot {
            threshold: node.value,
            feature: node.feature,
        };
        self.fill(nodes, t, node.kids[0] as usize, 2 * k + 1, d + 1);
        self.fill(nodes, t, node.kids[1] as usize, 2 * k + 2, d + 1);
    }

    /// Adds every tree's path length for each row of `rows` (row-major,
    /// `cols` wide, finite values, at most [`BLOCK_ROWS`] rows) to `acc`.
    pub(super) fn accumulate(&self, rows: &[f64], cols: usize, acc: &mut [f64]) {
        debug_assert!(rows.len() <= BLOCK_ROWS * cols);
        // One monomorphised walk per height limit: with the tree size a
        // constant, the compiler can prove the slot indices in bounds.
        match self.depth {
            0 => self.walk::<1>(rows, cols, acc),
            1 => self.walk::<2>(rows, cols, acc),
            2 => self.walk::<4>(rows, cols, acc),
            3 => self.walk::<8>(rows, cols, acc),
            4 => self.walk::<16>(rows, cols, acc),
            5 => self.walk::<32>(rows, cols, acc),
            6 => self.walk::<64>(rows, cols, acc),
            7 => self.walk::<128>(rows, cols, acc),
            8 => self.walk::<256>(rows, cols, acc),
            9 => self.walk::<512>(rows, cols, acc),
            10 => self.walk::<1024>(rows, cols, acc),
            11 => self.walk::<2048>(rows, cols, acc),
            _ => self.walk::<4096>(rows, cols, acc),
        }
    }

    /// [`accumulate`](Self::accumulate) for trees with `N = 2^depth` leaves.
    fn walk<const N: usize>(&self, rows: &[f64], cols: usize, acc: &mut [f64]) {
        debug_assert_eq!(N, 1 << self.depth);
        let internal = N - 1;
        for (splits, leaves) in self.splits.chunks_exact(N).zip(self.leaves.chunks_exact(N)) {
            let (Ok(padded), Ok(leaves)): (Result<&[Slot; N], _>, Result<&[f64; N], _>) =
                (splits.try_into(), leaves.try_into())
            else {
                unreachable!("chunks_exact yields N slots and N leaves")
            };
            let mut groups = rows.chunks_exact(LANES * cols);
            let mut out = acc.chunks_exact_mut(LANES);
            for (group, out) in (&mut groups).zip(&mut out) {
                let mut k = [0usize; LANES];
                for _ in 0..self.depth {
                    for (lane, k) in k.iter_mut().enumerate() {
                        let s = padded[*k & (N - 1)];
                        let v = group[lane * cols + s.feature as usize];
                        *k = 2 * *k + 1 + usize::from(v > s.threshold);
                    }
                }
                for (o, &k) in out.iter_mut().zip(&k) {
                    *o += leaves[(k - internal) & (N - 1)];
                }
            }
            for (row, o) in groups
                .remainder()
                .chunks_exact(cols)
                .zip(out.into_remainder())
            {
                let mut k = 0;
                for _ in 0..self.depth {
                    let s = padded[k & (N - 1)];
                    k = 2 * k + 1 + usize::from(row[s.feature as usize] > s.threshold);
                }
                *o += leaves[(k - internal) & (N - 1)];
            }
        }
    }
}
