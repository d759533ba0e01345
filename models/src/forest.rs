//! The isolation forest (Liu, Ting & Zhou 2008), as scikit-learn implements it.
//!
//! * Each of `n_estimators` trees is grown on `ψ = min(sample_size, n)` rows
//!   drawn without replacement, to a height limit of `ceil(log2 ψ)`.
//! * A node picks features at random (without replacement) until it finds
//!   one that is not constant over its rows, then splits uniformly at random
//!   inside that feature's range; rows `<= threshold` go left. A node with
//!   one row, at the height limit, or with only constant features is a leaf.
//! * The path length of a point is the depth of the leaf it lands in plus
//!   `c(leaf_size)`, the expected depth of an unbuilt subtree; its anomaly
//!   score is `2^(−E[h] / c(ψ))`, in (0, 1], higher meaning more anomalous.
//!
//! Trees are stored flat in one arena, in pre-order. A leaf stores its final
//! path length (`depth + c(size)`) and loops on itself, so scoring a point is
//! a fixed-length, branch-free walk plus one addition per tree. Batches are
//! scored on a dense copy (`dense.rs`: heap-ordered trees, integer order
//! keys), a block of rows per tree at a time, several walks in lock-step;
//! the extrapolated single-point walk of the streaming detector also walks
//! several trees in lock-step, without branches.

use serde::{Deserialize, Serialize};

mod dense;

use std::sync::OnceLock;

use dense::DenseForest;

use crate::rng::Rng;
use crate::stats::percentile;
use crate::{Error, Matrix};

/// Euler–Mascheroni constant, used in the harmonic-number approximation.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Feature ranges narrower than this count as constant, as in scikit-learn's
/// tree splitter (`FEATURE_THRESHOLD`).
const FEATURE_THRESHOLD: f64 = 1e-7;

const MAX_FEATURES: usize = u32::MAX as usize;

/// Rows walked through a tree in lock-step by the arena fallback of
/// [`IsolationForest::score_matrix`] (forests too deep or too wide for the
/// dense copy): independent walks let the CPU overlap their memory loads.
const LANES: usize = 8;

/// Rows scored per block by the arena fallback: a block's rows and one tree
/// fit in L1/L2 together, so each tree is loaded once per block rather than
/// once per row.
const BLOCK_ROWS: usize = 256;

/// `c(n)`: the average path length of an unsuccessful search in a binary
/// search tree of `n` points, `2H(n−1) − 2(n−1)/n`, with `c(2) = 1` and
/// `c(n ≤ 1) = 0`. It normalises path lengths (Liu et al. 2008, eq. 1).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// How the forest turns scores into a yes/no decision.
///
/// Serialised as the string `"auto"` or a number in (0, 0.5].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contamination {
    /// The threshold is 0.5, the value the original paper calls the boundary
    /// of clear anomalies (scikit-learn's `contamination="auto"`).
    Auto,
    /// The expected share of outliers in the training data: the threshold is
    /// the `(1 − fraction)` quantile of the training scores.
    Fraction(f64),
}

impl Default for Contamination {
    /// 0.1, the value of the original design documents.
    fn default() -> Self {
        Contamination::Fraction(0.1)
    }
}

impl Contamination {
    fn validate(self) -> Result<(), Error> {
        match self {
            Contamination::Auto => Ok(()),
            Contamination::Fraction(f) if f > 0.0 && f <= 0.5 => Ok(()),
            Contamination::Fraction(f) => Err(Error::Config(format!(
                "contamination must be \"auto\" or in (0, 0.5], got {f}"
            ))),
        }
    }
}

impl Serialize for Contamination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Contamination::Auto => s.serialize_str("auto"),
            Contamination::Fraction(f) => s.serialize_f64(*f),
        }
    }
}

impl<'de> Deserialize<'de> for Contamination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(f) => Ok(Contamination::Fraction(f)),
            Raw::Str(s) if s == "auto" => Ok(Contamination::Auto),
            Raw::Str(s) => s.parse::<f64>().map(Contamination::Fraction).map_err(|_| {
                serde::de::Error::custom(format!(
                    "contamination must be \"auto\" or a number, got {s:?}"
                ))
            }),
        }
    }
}

/// Parameters of [`IsolationForest::fit`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForestConfig {
    /// Number of trees (scikit-learn's `n_estimators`).
    pub n_estimators: usize,
    /// Rows per tree, capped at the training-set size (`max_samples`).
    pub sample_size: usize,
    /// How the decision threshold is set.
    pub contamination: Contamination,
    /// Seed of the tree-building random generator.
    pub seed: u64,
}

impl Default for ForestConfig {
    fn default() -> Self {
        Self {
            n_estimators: 100,
            sample_size: 256,
            contamination: Contamination::default(),
            seed: 42,
        }
    }
}

impl ForestConfig {
    /// Checks the ranges scikit-learn also rejects.
    pub fn validate(&self) -> Result<(), Error> {
        if self.n_estimators == 0 {
            return Err(Error::Config("n_estimators must be at least 1".into()));
        }
        if self.sample_size == 0 {
            return Err(Error::Config("sample_size must be at least 1".into()));
        }
        self.contamination.validate()
    }
}

/// One arena slot.
///
/// A split sends `x[feature] <= value` to `kids[0]` (always the next slot:
/// trees are stored in pre-order) and the rest to `kids[1]`; `[lo, hi]` is
/// the split feature's range over the node's rows. A leaf points both kids
/// at itself, so a point walking into it stays there: walks run a fixed
/// number of steps (the height limit) with no leaf test, and the direction
/// is a load indexed by the comparison rather than a branch. A leaf's
/// `value` is its path length `depth + c(size)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    value: f64,
    lo: f64,
    hi: f64,
    feature: u32,
    kids: [u32; 2],
}

impl Node {
    fn leaf(index: u32, path_length: f64) -> Self {
        Self {
            value: path_length,
            lo: 0.0,
            hi: 0.0,
            feature: 0,
            kids: [index, index],
        }
    }

    fn is_leaf(&self, index: usize) -> bool {
        self.kids[0] as usize == index
    }
}

/// A trained isolation forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    n_features: usize,
    /// The subsample size actually used, `min(sample_size, n)`.
    psi: usize,
    /// The height limit the trees were grown to.
    max_depth: usize,
    /// All nodes of all trees, each tree in pre-order.
    nodes: Vec<Node>,
    /// Index of each tree's root in `nodes`.
    roots: Vec<u32>,
    /// Scores above this are outliers.
    threshold: f64,
    /// The dense copy for batch scoring, built on first use.
    #[serde(skip)]
    dense: DenseCache,
}

/// Lazily built [`DenseForest`]. Derived data: it never takes part in
/// equality, and a clone or a deserialised forest builds its own.
#[derive(Debug, Clone, Default)]
struct DenseCache(OnceLock<Option<DenseForest>>);

impl PartialEq for DenseCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl IsolationForest {
    /// Grows a forest on the rows of `x`.
    pub fn fit(x: &Matrix, cfg: &ForestConfig) -> Result<Self, Error> {
        let mut rng = Rng::seed_from_u64(cfg.seed);
        Self::fit_with_rng(x, cfg, &mut rng)
    }

    /// Grows a forest drawing randomness from `rng` (the streaming detector
    /// keeps one generator across retrains so its state can be persisted).
    pub fn fit_with_rng(x: &Matrix, cfg: &ForestConfig, rng: &mut Rng) -> Result<Self, Error> {
        cfg.validate()?;
        let n = x.rows();
        if n == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        if x.cols() >= MAX_FEATURES {
            return Err(Error::Shape("too many features".into()));
        }
        let psi = cfg.sample_size.min(n);
        // scikit-learn: max_depth = ceil(log2(max(ψ, 2))).
        let max_depth = (psi.max(2) as f64).log2().ceil() as usize;
        let mut builder = Builder {
            x,
            rng,
            max_depth,
            nodes: Vec::with_capacity(cfg.n_estimators * (2 * psi).min(1 << (max_depth + 1))),
            features: (0..x.cols()).collect(),
        };
        let mut roots = Vec::with_capacity(cfg.n_estimators);
        let mut all: Vec<usize> = (0..n).collect();
        for _ in 0..cfg.n_estimators {
            // Partial Fisher–Yates: the first ψ slots become a uniform sample
            // without replacement.
            for i in 0..psi {
                let j = i + builder.rng.below(n - i);
                all.swap(i, j);
            }
            let mut sample = all[..psi].to_vec();
            let root = u32::try_from(builder.nodes.len())
                .map_err(|_| Error::Shape("forest too large".into()))?;
            roots.push(root);
            builder.grow(&mut sample, 0)?;
        }
        let nodes = builder.nodes;
        let mut forest = Self {
            n_features: x.cols(),
            psi,
            max_depth,
            nodes,
            roots,
            threshold: 0.5,
            dense: DenseCache::default(),
        };
        if let Contamination::Fraction(f) = cfg.contamination {
            let mut scores = forest.score_matrix(x)?;
            forest.threshold = percentile(&mut scores, 100.0 * (1.0 - f));
        }
        Ok(forest)
    }

    /// Number of features the forest was trained on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// The height limit `ceil(log2 ψ)`: no walk is longer.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Total number of nodes over all trees (a measure of model size).
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of heap the trained model occupies: the arena, and the dense
    /// copy once batch scoring has built it.
    pub fn heap_bytes(&self) -> usize {
        let arena = self.nodes.len() * std::mem::size_of::<Node>()
            + self.roots.len() * std::mem::size_of::<u32>();
        let dense = self.dense.0.get().and_then(Option::as_ref);
        arena + dense.map_or(0, DenseForest::heap_bytes)
    }

    /// The subsample size ψ the trees were grown on.
    pub fn sample_size(&self) -> usize {
        self.psi
    }

    /// The highest score any point can get, `2^(−1/c(ψ))`: isolated by the
    /// first split of every tree (a path of length 1). About 0.93 at ψ = 256,
    /// not 1.
    pub fn max_score(&self) -> f64 {
        let c = average_path_length(self.psi);
        if c == 0.0 { 0.5 } else { (-1.0 / c).exp2() }
    }

    /// The decision threshold: scores strictly above it are outliers.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Mean path length `E[h(x)]` of one point over all trees.
    ///
    /// `x` must have [`n_features`](Self::n_features) values; a NaN feature
    /// compares false and so walks right, like scikit-learn's trees.
    pub fn mean_path_length(&self, x: &[f64]) -> f64 {
        debug_assert_eq!(x.len(), self.n_features);
        let mut total = 0.0;
        for &root in &self.roots {
            let mut i = root as usize;
            for _ in 0..self.max_depth {
                let node = &self.nodes[i];
                i = step(node, x[node.feature as usize]);
            }
            total += self.nodes[i].value;
        }
        total / self.roots.len() as f64
    }

    /// Expected path length of a point *as if it had been in the training
    /// sample*, for the features where `extrapolate[f]` is true.
    ///
    /// A standard isolation tree sends a point beyond a node's range (say
    /// `x > hi`) the same way as the node's largest row, so a value far
    /// outside everything seen in training is only as isolated as the most
    /// extreme training row. Had the point been among the node's rows, the
    /// split would have been uniform in `[lo, x]` instead of `[lo, hi]`: with
    /// probability `p = (x − hi) / (x − lo)` it falls in the gap and isolates
    /// the point at depth `d + 1`, and otherwise it is uniform in `[lo, hi]`,
    /// exactly the split the tree has. So the expectation is exact node by
    /// node: `Σ P(reach) · p · (d + 1) + P(reach leaf) · leaf path`. For rows
    /// inside every range (training rows in particular) this equals
    /// [`mean_path_length`](Self::mean_path_length). Cyclic or categorical
    /// features (hour of day) should not extrapolate: an unseen hour is not
    /// an extreme one.
    pub fn mean_path_length_extrapolated(&self, x: &[f64], extrapolate: &[bool]) -> f64 {
        debug_assert_eq!(x.len(), self.n_features);
        debug_assert_eq!(extrapolate.len(), self.n_features);
        // Trees are walked TREE_LANES at a time in lock-step: one tree's walk
        // is a chain of dependent loads, several independent ones overlap.
        // Each tree's expectation is summed on its own and the sums are added
        // in tree order, so the result does not depend on the lane count.
        let mut total = 0.0;
        let mut groups = self.roots.chunks_exact(TREE_LANES);
        for group in &mut groups {
            let mut walks = [Walk::default(); TREE_LANES];
            for (w, &root) in walks.iter_mut().zip(group) {
                w.node = root as usize;
            }
            for depth in 1..=self.max_depth {
                let depth = depth as f64;
                for w in &mut walks {
                    w.step_extrapolated(&self.nodes, x, extrapolate, depth);
                }
            }
            for w in &walks {
                total += w.finish(&self.nodes);
            }
        }
        for &root in groups.remainder() {
            let mut w = Walk {
                node: root as usize,
                ..Walk::default()
            };
            for depth in 1..=self.max_depth {
                w.step_extrapolated(&self.nodes, x, extrapolate, depth as f64);
            }
            total += w.finish(&self.nodes);
        }
        total / self.roots.len() as f64
    }

    /// Score from [`mean_path_length_extrapolated`](Self::mean_path_length_extrapolated),
    /// in (0, 1]. `x` and `extrapolate` must have one entry per feature.
    pub fn score_extrapolated(&self, x: &[f64], extrapolate: &[bool]) -> Result<f64, Error> {
        if x.len() != self.n_features || extrapolate.len() != self.n_features {
            return Err(Error::Shape(format!(
                "the forest has {} features, the point {} and the mask {}",
                self.n_features,
                x.len(),
                extrapolate.len()
            )));
        }
        Ok(self.score_extrapolated_unchecked(x, extrapolate))
    }

    /// [`score_extrapolated`](Self::score_extrapolated) without the length
    /// checks, for callers that validated widths once.
    pub(crate) fn score_extrapolated_unchecked(&self, x: &[f64], extrapolate: &[bool]) -> f64 {
        let c = average_path_length(self.psi);
        if c == 0.0 {
            return 0.5;
        }
        (-self.mean_path_length_extrapolated(x, extrapolate) / c).exp2()
    }

    /// Anomaly score of one point, in (0, 1]: `2^(−E[h] / c(ψ))`.
    pub fn score(&self, x: &[f64]) -> Result<f64, Error> {
        if x.len() != self.n_features {
            return Err(Error::Shape(format!(
                "the forest has {} features, the point {}",
                self.n_features,
                x.len()
            )));
        }
        Ok(self.score_unchecked(x))
    }

    /// [`score`](Self::score) without the length check, for hot loops that
    /// have checked it once.
    pub(crate) fn score_unchecked(&self, x: &[f64]) -> f64 {
        let c = average_path_length(self.psi);
        if c == 0.0 {
            // ψ = 1: every path has length 0 and c(1) = 0; scikit-learn
            // defines the ratio as 1 here, so every score is 0.5.
            return 0.5;
        }
        (-self.mean_path_length(x) / c).exp2()
    }

    /// Scores every row of `x`.
    pub fn score_matrix(&self, x: &Matrix) -> Result<Vec<f64>, Error> {
        if x.cols() != self.n_features {
            return Err(Error::Shape(format!(
                "the forest has {} features, the matrix {}",
                self.n_features,
                x.cols()
            )));
        }
        let c = average_path_length(self.psi);
        if c == 0.0 {
            return Ok(vec![0.5; x.rows()]);
        }
        let mut totals = vec![0.0; x.rows()];
        let dense = self.dense.0.get_or_init(|| {
            DenseForest::build(&self.nodes, &self.roots, self.max_depth, self.n_features)
        });
        match dense {
            Some(d) => d.path_totals(x, &mut totals),
            None => {
                let cols = x.cols();
                for (block, acc) in x
                    .as_slice()
                    .chunks(BLOCK_ROWS * cols)
                    .zip(totals.chunks_mut(BLOCK_ROWS))
                {
                    for &root in &self.roots {
                        self.accumulate_tree(root as usize, block, cols, acc);
                    }
                }
            }
        }
        let n_trees = self.roots.len() as f64;
        Ok(totals
            .into_iter()
            .map(|t| (-(t / n_trees) / c).exp2())
            .collect())
    }

    /// Adds one tree's path length for each row of `rows` (row-major, `cols`
    /// wide) to `acc`, walking [`LANES`] rows at a time for a fixed
    /// `max_depth` steps (leaves loop on themselves).
    fn accumulate_tree(&self, root: usize, rows: &[f64], cols: usize, acc: &mut [f64]) {
        let nodes = &self.nodes[..];
        let mut groups = rows.chunks_exact(LANES * cols);
        let mut out = acc.chunks_exact_mut(LANES);
        for (group, out) in (&mut groups).zip(&mut out) {
            let mut idx = [root; LANES];
            for _ in 0..self.max_depth {
                for (lane, i) in idx.iter_mut().enumerate() {
                    let node = &nodes[*i];
                    *i = step(node, group[lane * cols + node.feature as usize]);
                }
            }
            for (o, &i) in out.iter_mut().zip(&idx) {
                *o += nodes[i].value;
            }
        }
        for (row, o) in groups
            .remainder()
            .chunks_exact(cols)
            .zip(out.into_remainder())
        {
            let mut i = root;
            for _ in 0..self.max_depth {
                let node = &nodes[i];
                i = step(node, row[node.feature as usize]);
            }
            *o += nodes[i].value;
        }
    }

    /// Whether the arena is well formed: every child index points forward and
    /// inside the arena, every split feature exists. Walks then always end at
    /// a leaf; checked when a persisted model is loaded.
    pub fn is_consistent(&self) -> bool {
        let n = self.nodes.len();
        let nodes_ok = self.nodes.iter().enumerate().all(|(i, node)| {
            if node.is_leaf(i) {
                return node.kids[1] as usize == i && node.value.is_finite() && node.value >= 0.0;
            }
            (node.feature as usize) < self.n_features
                && node.kids[0] as usize == i + 1
                && (node.kids[1] as usize) > i + 1
                && (node.kids[1] as usize) < n
                && node.value.is_finite()
                && node.lo <= node.value
                && node.value < node.hi
        });
        // A walk of `max_depth` steps must be able to reach every leaf.
        let depth_ok = self.max_depth == (self.psi.max(2) as f64).log2().ceil() as usize;
        nodes_ok
            && depth_ok
            && !self.roots.is_empty()
            && self.psi > 0
            && self.roots.iter().all(|&r| (r as usize) < n)
    }

    /// Whether a score is above the decision threshold.
    pub fn is_outlier(&self, score: f64) -> bool {
        score > self.threshold
    }
}

/// One step of a walk through `node`, given the point's value `v` of the
/// node's feature: `v <= threshold` goes to `kids[0]`, anything else (NaN
/// included) to `kids[1]`; a leaf stays put.
///
/// The child is loaded with the comparison as index instead of chosen by an
/// `if`: the direction is a coin flip for the branch predictor, and
/// mispredictions dominated scoring time (the compiler turns `if`s and
/// register selects back into branches, but not an indexed load).
#[inline(always)]
fn step(node: &Node, v: f64) -> usize {
    node.kids[usize::from(v > node.value || v.is_nan())] as usize
}

/// Trees walked in lock-step by
/// [`IsolationForest::mean_path_length_extrapolated`].
const TREE_LANES: usize = 4;

/// `max(a, b)` for operands that are not NaN, written so that it compiles
/// to one `maxsd` (`f64::max`'s NaN handling costs three more instructions).
/// With a NaN operand it returns `b`.
#[inline(always)]
fn larger(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// `min(a, b)` for operands that are not NaN, as one `minsd` (see
/// [`larger`]).
#[inline(always)]
fn smaller(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

/// The state of one tree's extrapolated walk: where it is, the probability
/// that the point was not yet isolated above, and the expected path length
/// accumulated so far.
#[derive(Debug, Clone, Copy)]
struct Walk {
    node: usize,
    reach: f64,
    sum: f64,
}

impl Default for Walk {
    fn default() -> Self {
        Self {
            node: 0,
            reach: 1.0,
            sum: 0.0,
        }
    }
}

impl Walk {
    /// One step from the current node, arriving at depth `depth`: with the
    /// probability `p` that a split over the range widened to `v` falls in
    /// the gap, the point is isolated at `depth`; otherwise it goes on.
    /// Written as selects rather than branches (whether a value is outside a
    /// node's range is a coin flip for the branch predictor); `p` is 0 at
    /// leaves, inside the range and for features that do not extrapolate.
    #[inline(always)]
    fn step_extrapolated(&mut self, nodes: &[Node], x: &[f64], extrapolate: &[bool], depth: f64) {
        let node = &nodes[self.node];
        let f = node.feature as usize;
        let v = x[f];
        // Beyond `hi` the gap is `v − hi` of `v − lo`, below `lo` it is
        // `lo − v` of `hi − v`; the larger of each pair is the one that
        // applies (inside the range `gap` ≤ 0 and `p` is masked to 0).
        let gap = larger(v - node.hi, node.lo - v);
        let width = larger(v - node.lo, node.hi - v);
        let outside = (gap > 0.0) & extrapolate[f] & !node.is_leaf(self.node);
        // An all-ones or all-zeros mask, opaque to the optimiser: seen as a
        // select guarding a division, it would be compiled back into a
        // branch around the division, and whether a point is outside a
        // node's range is a coin flip for the branch predictor.
        let mask = std::hint::black_box(0u64.wrapping_sub(u64::from(outside)));
        let p = f64::from_bits((gap / width).to_bits() & mask);
        self.sum += self.reach * p * depth;
        self.reach *= 1.0 - p;
        self.node = step(node, v);
    }

    /// The tree's expected path length, once the walk is at its leaf.
    fn finish(&self, nodes: &[Node]) -> f64 {
        self.sum + self.reach * nodes[self.node].value
    }
}

/// A chosen split and the range it was drawn from.
struct Split {
    feature: usize,
    threshold: f64,
    lo: f64,
    hi: f64,
}

/// Tree-growing state shared by all trees of one fit.
struct Builder<'a> {
    x: &'a Matrix,
    rng: &'a mut Rng,
    max_depth: usize,
    nodes: Vec<Node>,
    /// Scratch: feature indices, shuffled lazily per node.
    features: Vec<usize>,
}

impl Builder<'_> {
    /// Appends the subtree over `rows` in pre-order. Recursion depth is bounded
    /// by the height limit (at most 64 for any `usize` sample size).
    fn grow(&mut self, rows: &mut [usize], depth: usize) -> Result<(), Error> {
        let me = self.nodes.len();
        let split = if rows.len() <= 1 || depth >= self.max_depth {
            None
        } else {
            self.choose_split(rows)
        };
        let Some(split) = split else {
            let index = u32::try_from(me).map_err(|_| Error::Shape("forest too large".into()))?;
            self.nodes.push(Node::leaf(
                index,
                depth as f64 + average_path_length(rows.len()),
            ));
            return Ok(());
        };
        let Split {
            feature,
            threshold,
            lo,
            hi,
        } = split;
        let me_u32 = u32::try_from(me).map_err(|_| Error::Shape("forest too large".into()))?;
        self.nodes.push(Node {
            value: threshold,
            lo,
            hi,
            feature: feature as u32,
            kids: [me_u32 + 1, 0],
        });
        // Partition in place, rows <= threshold first. Branch-free (every
        // row is swapped, `mid` advances only past left rows): which side a
        // row goes is a coin flip, and mispredicting it dominated fitting.
        // The order inside each side differs from a branching partition, but
        // a subtree depends only on its set of rows, not on their order.
        let mut mid = 0;
        for i in 0..rows.len() {
            let r = rows[i];
            let left = self.x.get(r, feature) <= threshold;
            rows[i] = rows[mid];
            rows[mid] = r;
            mid += usize::from(left);
        }
        let (left, right) = rows.split_at_mut(mid);
        self.grow(left, depth + 1)?;
        self.nodes[me].kids[1] =
            u32::try_from(self.nodes.len()).map_err(|_| Error::Shape("forest too large".into()))?;
        self.grow(right, depth + 1)
    }

    /// Minimum and maximum of feature `f` over `rows`.
    ///
    /// Four independent running extremes, combined at the end: with one,
    /// every row waits for the previous comparison. Extremes are exact, so
    /// the order does not change them (the matrix has no NaN).
    fn range(&self, rows: &[usize], f: usize) -> (f64, f64) {
        let mut lo = [f64::INFINITY; 4];
        let mut hi = [f64::NEG_INFINITY; 4];
        let mut quads = rows.chunks_exact(4);
        for quad in &mut quads {
            for ((&r, lo), hi) in quad.iter().zip(&mut lo).zip(&mut hi) {
                let v = self.x.get(r, f);
                *lo = smaller(v, *lo);
                *hi = larger(v, *hi);
            }
        }
        for &r in quads.remainder() {
            let v = self.x.get(r, f);
            lo[0] = smaller(v, lo[0]);
            hi[0] = larger(v, hi[0]);
        }
        (
            smaller(smaller(lo[0], lo[1]), smaller(lo[2], lo[3])),
            larger(larger(hi[0], hi[1]), larger(hi[2], hi[3])),
        )
    }

    /// Draws features without replacement until one is not constant over
    /// `rows`, then a threshold uniform in `[min, max)`. `None` when every
    /// feature is constant.
    fn choose_split(&mut self, rows: &[usize]) -> Option<Split> {
        let n_features = self.features.len();
        for drawn in 0..n_features {
            let k = drawn + self.rng.below(n_features - drawn);
            self.features.swap(drawn, k);
            let f = self.features[drawn];
            let (lo, hi) = self.range(rows, f);
            if hi > lo + FEATURE_THRESHOLD {
                // `uniform` is half-open, so at least the max goes right and
                // at least the min goes left: both children are non-empty.
                return Some(Split {
                    feature: f,
                    threshold: self.rng.uniform(lo, hi),
                    lo,
                    hi,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node-by-node definition of the extrapolated path length, one
    /// tree after the other: what the lock-step walk must compute.
    fn reference_extrapolated(forest: &IsolationForest, x: &[f64], extrapolate: &[bool]) -> f64 {
        debug_assert_eq!(x.len(), forest.n_features);
        debug_assert_eq!(extrapolate.len(), forest.n_features);
        let mut total = 0.0;
        for &root in &forest.roots {
            let mut i = root as usize;
            let mut depth = 0.0;
            let mut reach = 1.0;
            loop {
                let node = forest.nodes[i];
                if node.is_leaf(i) {
                    total += reach * node.value;
                    break;
                }
                let f = node.feature as usize;
                let v = x[f];
                if extrapolate[f] {
                    let p = if v > node.hi {
                        (v - node.hi) / (v - node.lo)
                    } else if v < node.lo {
                        (node.lo - v) / (node.hi - v)
                    } else {
                        0.0
                    };
                    total += reach * p * (depth + 1.0);
                    reach *= 1.0 - p;
                }
                depth += 1.0;
                i = step(&node, v);
            }
        }
        total / forest.roots.len() as f64
    }

    #[test]
    fn lock_step_extrapolated_walk_matches_the_definition() {
        // 1003 rows and 13 trees: whole lock-step groups plus a remainder;
        // points inside, at the edges of and far outside the training range.
        let x = Matrix::from_rows(&blob(1003, 11)).expect("finite");
        let cfg = ForestConfig {
            n_estimators: 13,
            ..ForestConfig::default()
        };
        let f = IsolationForest::fit(&x, &cfg).expect("fit");
        let mut r = Rng::seed_from_u64(5);
        for mask in [[true, true], [true, false], [false, false]] {
            for _ in 0..500 {
                let spread = [0.5, 1.0, 10.0, 1e6][r.below(4)];
                let p = [(r.next_f64() - 0.5) * spread, (r.next_f64() - 0.5) * spread];
                let (got, want) = (
                    f.mean_path_length_extrapolated(&p, &mask),
                    reference_extrapolated(&f, &p, &mask),
                );
                assert!(
                    (got - want).abs() <= 1e-12 * want,
                    "{p:?} {mask:?}: {got} vs {want}"
                );
            }
        }
        // Inside every range it is exactly the standard path length.
        let full = IsolationForest::fit(
            &x,
            &ForestConfig {
                sample_size: 1003,
                n_estimators: 5,
                ..ForestConfig::default()
            },
        )
        .expect("fit");
        for row in x.iter_rows().take(50) {
            assert_eq!(
                full.mean_path_length_extrapolated(row, &[true, true]),
                full.mean_path_length(row)
            );
        }
    }

    #[test]
    fn max_score_bounds_every_score_and_a_far_point_reaches_it() {
        let x = Matrix::from_rows(&blob(1003, 3)).expect("finite");
        let f = IsolationForest::fit(
            &x,
            &ForestConfig {
                n_estimators: 20,
                ..ForestConfig::default()
            },
        )
        .expect("fit");
        let ceiling = f.max_score();
        assert!((ceiling - (-1.0 / average_path_length(256)).exp2()).abs() < 1e-15);
        for row in x.iter_rows() {
            assert!(f.score(row).expect("width") <= ceiling);
        }
        // Far outside both ranges, every tree isolates the point at its
        // first split (almost surely), so the score is the ceiling.
        let far = f
            .score_extrapolated(&[1e12, -1e12], &[true, true])
            .expect("width");
        assert!(far <= ceiling && ceiling - far < 1e-6, "{far} vs {ceiling}");
    }

    fn blob(n: usize, seed: u64) -> Vec<[f64; 2]> {
        let mut r = Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| [r.next_f64() - 0.5, r.next_f64() - 0.5])
            .collect()
    }

    #[test]
    fn c_matches_reference_values() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // 2(ln 255 + γ) − 2·255/256, as scikit-learn computes it.
        let expected = 2.0 * (255f64.ln() + EULER_GAMMA) - 2.0 * 255.0 / 256.0;
        assert!((average_path_length(256) - expected).abs() < 1e-12);
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
    }

    #[test]
    fn outlier_scores_highest() {
        let mut rows = blob(300, 1).to_vec();
        rows.push([8.0, -8.0]);
        let x = Matrix::from_rows(&rows).expect("finite");
        let f = IsolationForest::fit(&x, &ForestConfig::default()).expect("fit");
        let scores = f.score_matrix(&x).expect("shape");
        let (best, _) =
            scores.iter().enumerate().fold(
                (0, 0.0),
                |acc, (i, &s)| if s > acc.1 { (i, s) } else { acc },
            );
        assert_eq!(best, 300);
        assert!(f.is_outlier(scores[300]));
        assert!(scores.iter().all(|s| *s > 0.0 && *s <= 1.0));
    }

    #[test]
    fn contamination_threshold_flags_that_share() {
        let x = Matrix::from_rows(&blob(1000, 2)).expect("finite");
        let f = IsolationForest::fit(&x, &ForestConfig::default()).expect("fit");
        let flagged = f
            .score_matrix(&x)
            .expect("shape")
            .into_iter()
            .filter(|s| f.is_outlier(*s))
            .count();
        assert!((95..=105).contains(&flagged), "flagged {flagged} of 1000");
    }

    #[test]
    fn auto_threshold_is_one_half_and_tiny_inputs_work() {
        let cfg = ForestConfig {
            contamination: Contamination::Auto,
            ..ForestConfig::default()
        };
        let one = Matrix::from_rows(&[[1.0, 2.0]]).expect("finite");
        let f = IsolationForest::fit(&one, &cfg).expect("fit");
        assert_eq!(f.threshold(), 0.5);
        assert_eq!(f.score(&[1.0, 2.0]).expect("shape"), 0.5);
        // Constant data: every tree is a single leaf of size ψ, E[h] = c(ψ).
        let flat = Matrix::from_rows(&vec![[3.0, 3.0]; 50]).expect("finite");
        let f = IsolationForest::fit(&flat, &cfg).expect("fit");
        assert_eq!(f.n_nodes(), 100);
        assert!((f.score(&[3.0, 3.0]).expect("shape") - 0.5).abs() < 1e-12);
        assert!(f.score(&[1.0]).is_err());
    }

    #[test]
    fn batch_scoring_matches_single_point_scoring() {
        // ψ from 1 to 5000: every height limit of the dense copy (1 to 8 in
        // 256-slot trees, 9 to 12 in trees of their own size) and 13,
        // above the dense limit, so the arena fallback runs; row counts not
        // multiples of the lanes.
        for (n, psi) in [
            (1, 256),
            (2, 256),
            (3, 256),
            (5, 256),
            (9, 256),
            (17, 256),
            (37, 256),
            (100, 256),
            (700, 256),
            (700, 512),
            (1500, 1024),
            (3000, 2048),
            (5000, 4096),
            (5000, 5000),
        ] {
            let x = Matrix::from_rows(&blob(n, n as u64)).expect("finite");
            let cfg = ForestConfig {
                n_estimators: 7,
                sample_size: psi,
                ..ForestConfig::default()
            };
            let f = IsolationForest::fit(&x, &cfg).expect("fit");
            let batch = f.score_matrix(&x).expect("shape");
            // The dense copy, not the fallback, scored every limit it covers.
            if psi.min(n) > 1 {
                let dense = f.dense.0.get().map(Option::is_some);
                assert_eq!(dense, Some(f.max_depth() <= 12), "n = {n}");
            }
            for (row, b) in x.iter_rows().zip(&batch) {
                assert_eq!(
                    f.score(row).expect("shape").to_bits(),
                    b.to_bits(),
                    "n = {n}"
                );
            }
        }
    }

    #[test]
    fn batch_scoring_matches_single_point_scoring_for_wide_rows() {
        // Every row stride of the dense blocks (16, 64, 256 columns) and,
        // past 256 features, the arena fallback; 333 rows end in a short
        // block.
        for cols in [16, 17, 64, 65, 256, 257] {
            let mut r = Rng::seed_from_u64(cols as u64);
            let data = (0..333 * cols).map(|_| r.next_f64() - 0.5).collect();
            let x = Matrix::new(333, cols, data).expect("finite");
            let cfg = ForestConfig {
                n_estimators: 5,
                ..ForestConfig::default()
            };
            let f = IsolationForest::fit(&x, &cfg).expect("fit");
            let batch = f.score_matrix(&x).expect("shape");
            let dense = f.dense.0.get().map(Option::is_some);
            assert_eq!(dense, Some(cols <= 256), "{cols} columns");
            for (row, b) in x.iter_rows().zip(&batch) {
                assert_eq!(
                    f.score(row).expect("shape").to_bits(),
                    b.to_bits(),
                    "{cols} columns"
                );
            }
        }
    }

    #[test]
    fn config_is_validated_and_parsed() {
        let x = Matrix::from_rows(&blob(10, 3)).expect("finite");
        for bad in [
            ForestConfig {
                n_estimators: 0,
                ..ForestConfig::default()
            },
            ForestConfig {
                contamination: Contamination::Fraction(0.7),
                ..ForestConfig::default()
            },
        ] {
            assert!(IsolationForest::fit(&x, &bad).is_err());
        }
        let c: ForestConfig =
            serde_json::from_str(r#"{"contamination":"auto","n_estimators":5}"#).expect("parse");
        assert_eq!(c.contamination, Contamination::Auto);
        assert_eq!(c.n_estimators, 5);
        let c: ForestConfig = serde_json::from_str(r#"{"contamination":0.05}"#).expect("parse");
        assert_eq!(c.contamination, Contamination::Fraction(0.05));
        assert!(serde_json::from_str::<ForestConfig>(r#"{"contamination":"most"}"#).is_err());
    }
}
