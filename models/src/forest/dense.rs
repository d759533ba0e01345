//! A dense, breadth-first copy of a forest, for scoring many rows.
//!
//! Each tree becomes a complete binary tree of the forest's height limit
//! `D`, stored heap-style, so a walk is `D` steps of pure arithmetic on the
//! slot index, without loading child indices (see [`Trees`] for the exact
//! indexing). A leaf of the original tree above depth `D` is copied to every
//! walk end below it, so whatever way a point goes under it, it ends with
//! that leaf's path length.
//!
//! Thresholds and row values are compared as *order keys*: `u64`s whose
//! unsigned order is the order of the `f64`s they come from (see [`key`]).
//! The comparison is exact, as with the floats, but it is one integer
//! compare whose carry flag feeds the index update directly. Rows are
//! converted once per block into groups of `LANES` rows at a power-of-two
//! stride `S`, so a lane's value of feature `f` is a fixed offset from the
//! group's address.
//!
//! Scoring is bound by how many instructions the CPU issues per cycle (with
//! the previous layout, callgrind's instruction count against CPU time gave
//! close to six per cycle), so the layout is chosen for the fewest
//! instructions per step, and a step is five: load the split feature, load
//! the threshold key, compare it with the row's key in memory, and double
//! the index and subtract the comparison's borrow. What it takes:
//!
//! * a tree is one struct (threshold keys and leaf values in one array,
//!   split features in another), so one base register serves every load;
//! * a split feature is a one-byte enum with exactly `S` variants ([`F16`],
//!   [`F64`], or a `u8` for `S` = 256): the compiler knows its range from
//!   the type, so indexing the row needs neither a bounds check nor a mask;
//! * the index update `j = 2j − (t < x)` (not `k = 2k + (x > t)`, which
//!   costs a flag materialised in a register and an add);
//! * the step count a constant per tree size, so the walk is unrolled and
//!   the compiler knows each step's index range: no bounds checks;
//! * the group's address opaque to the optimiser (otherwise it is rebuilt
//!   as base plus offset, an instruction per step);
//! * with those, ten walks in lock-step fit the registers without spills.
//!
//! The copy is derived data: built on first use, never persisted, and only
//! for height limits up to [`MAX_DENSE_DEPTH`] (ψ ≤ 4096) and at most
//! [`MAX_DENSE_FEATURES`] features.

use std::fmt;
use std::sync::Arc;

use super::Node;
use crate::Matrix;

/// Deepest height limit worth a dense copy (72 KB per tree).
pub(super) const MAX_DENSE_DEPTH: usize = 12;

/// Widest input the dense copy handles: the largest row stride of a block.
pub(super) const MAX_DENSE_FEATURES: usize = 256;

/// Rows walked through a tree in lock-step: independent walks let the CPU
/// overlap their loads. Ten is the most the registers hold.
const LANES: usize = 10;

/// Bytes of row keys per block: a block's rows and one tree fit in L1
/// together, so each tree is loaded once per block rather than once per
/// row, and every step's row value is an L1 hit. (Measured: 10 to 16 groups
/// of ten 16-wide rows were equally fast, 32 groups 5% slower.)
const BLOCK_BYTES: usize = 16 * LANES * 16 * 8;

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

/// A split feature of a dense tree whose rows have stride `S`: a byte whose
/// type bounds it below `S`.
trait Feature: Copy + Send + Sync + 'static {
    /// The first feature, for unused slots.
    const FIRST: Self;
    /// Feature `f`, or `None` when it is not below the stride.
    fn new(f: usize) -> Option<Self>;
    /// The feature's index into a row.
    fn index(self) -> usize;
}

/// Declares a one-byte enum with one variant per feature below the stride.
macro_rules! feature_enum {
    ($(#[$doc:meta])* $name:ident, $($v:ident)*) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        #[repr(u8)]
        enum $name { $($v),* }

        impl Feature for $name {
            const FIRST: Self = Self::V0;
            fn new(f: usize) -> Option<Self> {
                const ALL: &[$name] = &[$($name::$v),*];
                ALL.get(f).copied()
            }
            #[inline(always)]
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

feature_enum!(
    /// A feature of a row at stride 16.
    F16,
    V0 V1 V2 V3 V4 V5 V6 V7 V8 V9 V10 V11 V12 V13 V14 V15
);

feature_enum!(
    /// A feature of a row at stride 64.
    F64,
    V0 V1 V2 V3 V4 V5 V6 V7 V8 V9 V10 V11 V12 V13 V14 V15
    V16 V17 V18 V19 V20 V21 V22 V23 V24 V25 V26 V27 V28 V29 V30 V31
    V32 V33 V34 V35 V36 V37 V38 V39 V40 V41 V42 V43 V44 V45 V46 V47
    V48 V49 V50 V51 V52 V53 V54 V55 V56 V57 V58 V59 V60 V61 V62 V63
);

/// A feature of a row at stride 256.
impl Feature for u8 {
    const FIRST: Self = 0;
    fn new(f: usize) -> Option<Self> {
        u8::try_from(f).ok()
    }
    #[inline(always)]
    fn index(self) -> usize {
        usize::from(self)
    }
}

/// One dense tree in arrays of `M` slots (see [`Trees`] for the indices).
#[derive(Clone)]
#[repr(C)]
struct Tree<const M: usize, F> {
    /// Threshold keys of the split nodes, and the bits of the walk ends'
    /// path lengths.
    slots: [u64; M],
    /// Split features of the split nodes.
    features: [F; M],
}

/// All trees of a forest of height limit `D = log2 N`, in arrays of
/// `M = 2N` slots, for rows of stride `S`.
///
/// Heap node `k` (root 1; at depth `d`, `k ∈ [2^d, 2^(d+1))`) has its right
/// child (`x > t`) at `2k` and its left child (`x <= t`) at `2k + 1`, and is
/// stored at slot `j = k + 1`: split nodes at slots `2 ..= N`, walk ends
/// (`k ∈ [N, 2N)`) at slots `N + 1 .. 2N` and, for `k = 2N − 1`, slot 0
/// (`j mod M`). A walk keeps `j`: a step is `j = 2j − (t < x)`, an add and a
/// subtract-with-borrow of the comparison's carry flag.
struct Trees<const N: usize, const M: usize, const S: usize, F> {
    trees: Vec<Tree<M, F>>,
}

/// What the forest needs of its dense copy, whatever its tree size and
/// stride.
trait Layout: Send + Sync {
    /// Sum over all trees, in tree order, of each row's path length, into
    /// `totals` (one per row of `x`).
    fn path_totals(&self, x: &Matrix, totals: &mut [f64]);
    /// Bytes of heap the copy occupies.
    fn heap_bytes(&self) -> usize;
}

/// All trees of a forest in the dense layout.
#[derive(Clone)]
pub(super) struct DenseForest(Arc<dyn Layout>);

impl fmt::Debug for DenseForest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DenseForest")
            .field("heap_bytes", &self.0.heap_bytes())
            .finish()
    }
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
        match n_features {
            ..=16 => by_depth::<16, F16>(nodes, roots, depth),
            17..=64 => by_depth::<64, F64>(nodes, roots, depth),
            _ => by_depth::<MAX_DENSE_FEATURES, u8>(nodes, roots, depth),
        }
        .map(Self)
    }

    /// Bytes of heap the copy occupies.
    pub(super) fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }

    /// Sum over all trees, in tree order, of each row's path length, into
    /// `totals` (one per row of `x`). `x` must be as wide as the forest.
    pub(super) fn path_totals(&self, x: &Matrix, totals: &mut [f64]) {
        debug_assert_eq!(totals.len(), x.rows());
        self.0.path_totals(x, totals);
    }
}

/// The dense copy for rows of stride `S`, monomorphised per height limit:
/// with the tree size a constant, the walk is unrolled and its slot
/// indices need no bounds checks.
fn by_depth<const S: usize, F: Feature>(
    nodes: &[Node],
    roots: &[u32],
    depth: usize,
) -> Option<Arc<dyn Layout>> {
    fn boxed<const N: usize, const M: usize, const S: usize, F: Feature>(
        nodes: &[Node],
        roots: &[u32],
    ) -> Option<Arc<dyn Layout>> {
        Some(Arc::new(Trees::<N, M, S, F>::build(nodes, roots)?))
    }
    match depth {
        0 => boxed::<1, 2, S, F>(nodes, roots),
        1 => boxed::<2, 4, S, F>(nodes, roots),
        2 => boxed::<4, 8, S, F>(nodes, roots),
        3 => boxed::<8, 16, S, F>(nodes, roots),
        4 => boxed::<16, 32, S, F>(nodes, roots),
        5 => boxed::<32, 64, S, F>(nodes, roots),
        6 => boxed::<64, 128, S, F>(nodes, roots),
        7 => boxed::<128, 256, S, F>(nodes, roots),
        8 => boxed::<256, 512, S, F>(nodes, roots),
        9 => boxed::<512, 1024, S, F>(nodes, roots),
        10 => boxed::<1024, 2048, S, F>(nodes, roots),
        11 => boxed::<2048, 4096, S, F>(nodes, roots),
        12 => boxed::<4096, 8192, S, F>(nodes, roots),
        _ => None,
    }
}

impl<const N: usize, const M: usize, const S: usize, F: Feature> Trees<N, M, S, F> {
    /// The height limit `D`.
    const DEPTH: usize = N.trailing_zeros() as usize;

    /// Copies the arena trees rooted at `roots`; `None` when a split
    /// feature does not fit the stride or a node is out of place (never,
    /// for a consistent forest).
    fn build(nodes: &[Node], roots: &[u32]) -> Option<Self> {
        if !N.is_power_of_two() || M != 2 * N {
            return None;
        }
        let empty = Tree {
            // Unused slots (under an early leaf) keep threshold 0: their
            // direction does not matter, every walk end below is the same.
            slots: [0; M],
            features: [F::FIRST; M],
        };
        let mut trees = vec![empty; roots.len()];
        for (tree, &root) in trees.iter_mut().zip(roots) {
            Self::fill(tree, nodes, root as usize, 1, 0)?;
        }
        Some(Self { trees })
    }

    /// Copies the arena subtree at `a` into heap node `k` (at depth `d`) of
    /// `tree`.
    fn fill(tree: &mut Tree<M, F>, nodes: &[Node], a: usize, k: usize, d: usize) -> Option<()> {
        let node = nodes.get(a)?;
        if node.is_leaf(a) || d == Self::DEPTH {
            // Every walk end under `k` (its descendants at depth D): slots
            // `lo ..= hi`, where only `hi` can be `M`, which is slot 0.
            let lo = (k << (Self::DEPTH - d)) + 1;
            let hi = lo + (1 << (Self::DEPTH - d)) - 1;
            let bits = node.value.to_bits();
            if hi == M {
                *tree.slots.first_mut()? = bits;
            }
            tree.slots.get_mut(lo..=hi.min(M - 1))?.fill(bits);
            return Some(());
        }
        *tree.slots.get_mut(k + 1)? = key(node.value);
        *tree.features.get_mut(k + 1)? = F::new(node.feature as usize)?;
        Self::fill(tree, nodes, node.kids[0] as usize, 2 * k + 1, d + 1)?;
        Self::fill(tree, nodes, node.kids[1] as usize, 2 * k, d + 1)
    }

    /// Adds every tree's path length for each row of the block to `acc`,
    /// tree after tree.
    fn accumulate(&self, groups: &[[[u64; S]; LANES]], acc: &mut [f64]) {
        for tree in &self.trees {
            for (rows, acc) in groups.iter().zip(acc.chunks_exact_mut(LANES)) {
                // Opaque to the optimiser, so the group's address stays in
                // one register (otherwise it is rebuilt as base + offset,
                // an instruction per step).
                let rows = std::hint::black_box(rows);
                // `j ≤ 2^(d+1)` after `d` steps, so `j` indexes the split
                // slots (`≤ N`) without a check, and the walk's end is
                // `j mod M`.
                let mut j = [2u32; LANES];
                for _ in 0..Self::DEPTH {
                    for (j, row) in j.iter_mut().zip(rows) {
                        let slot = *j as usize;
                        let v = row[tree.features[slot].index()];
                        *j = 2 * *j - u32::from(tree.slots[slot] < v);
                    }
                }
                for (a, &j) in acc.iter_mut().zip(&j) {
                    *a += f64::from_bits(tree.slots[j as usize % M]);
                }
            }
        }
    }
}

impl<const N: usize, const M: usize, const S: usize, F: Feature> Layout for Trees<N, M, S, F> {
    fn heap_bytes(&self) -> usize {
        self.trees.len() * std::mem::size_of::<Tree<M, F>>()
    }

    fn path_totals(&self, x: &Matrix, totals: &mut [f64]) {
        let cols = x.cols();
        debug_assert!(cols <= S);
        // As many rows per block as fit `BLOCK_BYTES` at stride `S`.
        let n_groups = (BLOCK_BYTES / std::mem::size_of::<[[u64; S]; LANES]>()).max(1);
        let block = n_groups * LANES;
        let mut groups = vec![[[0u64; S]; LANES]; n_groups];
        let mut acc = vec![0.0; block];
        for (rows, out) in x
            .as_slice()
            .chunks(block * cols)
            .zip(totals.chunks_mut(block))
        {
            for (group, rows) in groups.iter_mut().zip(rows.chunks(LANES * cols)) {
                for (lane, row) in group.iter_mut().zip(rows.chunks_exact(cols)) {
                    for (slot, &v) in lane.iter_mut().zip(row) {
                        *slot = key(v);
                    }
                }
            }
            // A short last block walks only the groups it fills; rows past
            // its end in the last of them hold older keys: walked, but
            // never read back.
            let used = out.len().div_ceil(LANES);
            let acc = &mut acc[..used * LANES];
            acc.fill(0.0);
            self.accumulate(&groups[..used], acc);
            out.copy_from_slice(&acc[..out.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{F16, F64, Feature, key};

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

    #[test]
    fn feature_bytes_cover_their_stride() {
        for f in 0..16 {
            assert_eq!(F16::new(f).map(F16::index), Some(f));
        }
        assert!(F16::new(16).is_none());
        for f in 0..64 {
            assert_eq!(F64::new(f).map(F64::index), Some(f));
        }
        assert!(F64::new(64).is_none());
        for f in 0..256 {
            assert_eq!(<u8 as Feature>::new(f).map(u8::index), Some(f));
        }
        assert!(<u8 as Feature>::new(256).is_none());
    }
}
