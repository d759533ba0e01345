//! The in-memory series index: label set → series id (interning) and the
//! inverted index (label name, value → sorted series ids) used to resolve
//! matchers without touching SQLite.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use vigil_wire::{Labels, MatchOp, Matcher};

/// Series ids are dense `u32`s assigned by the writer and never reused.
pub type SeriesId = u32;

/// Keys of `by_hash` are already well-mixed hashes; hashing them again
/// (SipHash) would only cost time on the ingest hot path.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Hashes a series id with one multiplication: ids are dense small
/// integers, which SipHash spends most of a group commit's map time on,
/// and which an identity hash would leave without the high bits hashbrown
/// groups by.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MUL);
        }
    }

    fn write_u32(&mut self, v: u32) {
        self.0 = (self.0 ^ u64::from(v)).wrapping_mul(MUL);
    }
}

/// The hasher of maps keyed by [`SeriesId`].
pub type IdHash = BuildHasherDefault<IdHasher>;

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Mixes `bytes` into `h` a word at a time; the length goes in too, so
/// name/value boundaries count.
fn mix(mut h: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(a)).wrapping_mul(MUL);
    }
    let mut tail = [0u8; 8];
    let rest = words.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    (h.rotate_left(23) ^ u64::from_le_bytes(tail) ^ bytes.len() as u64).wrapping_mul(MUL)
}

/// A fast in-memory hash of a label set (never persisted, so it may change
/// between versions), finished with MurmurHash3's avalanche step so every
/// bit of the result depends on every input bit.
pub fn labels_hash(labels: &Labels) -> u64 {
    labels_hash_pairs(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// [`labels_hash`] of a label set given as name/value pairs in order, such
/// as a request's raw labels before any are copied.
pub fn labels_hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    let mut h: u64 = 0;
    for (name, value) in pairs {
        h = mix(h, name.as_bytes());
        h = mix(h, value.as_bytes());
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[derive(Debug)]
pub struct Index {
    /// The label-set hash; tests swap in a degenerate one to force collisions.
    hash: fn(&Labels) -> u64,
    /// Label-set hash → the first id with that hash.
    by_hash: HashKeyed<SeriesId>,
    /// Further ids whose hash collided with one in `by_hash` (rare).
    collisions: HashKeyed<Vec<SeriesId>>,
    /// name → value → ids, ascending.
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesId>>>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            hash: labels_hash,
            by_hash: HashKeyed::default(),
            collisions: HashKeyed::default(),
            postings: BTreeMap::new(),
        }
    }
}

impl Index {
    /// Finds the id of `labels`, using `labels_of` to resolve hash collisions.
    pub fn get<'a>(
        &self,
        labels: &Labels,
        labels_of: impl Fn(SeriesId) -> Option<&'a Labels>,
    ) -> Option<SeriesId> {
        let h = (self.hash)(labels);
        let first = *self.by_hash.get(&h)?;
        if labels_of(first) == Some(labels) {
            return Some(first);
        }
        let more = self.collisions.get(&h)?;
        more.iter()
            .copied()
            .find(|&id| labels_of(id) == Some(labels))
    }

    /// Finds the id of the label set given as raw name/value `pairs` in
    /// order. Only a set already in canonical form (sorted, no empty value)
    /// can be found; anything else answers `None`, as does an index whose
    /// hash a test replaced, and the caller takes the owned path.
    pub fn get_pairs<'a, 'p, I>(
        &self,
        pairs: I,
        labels_of: impl Fn(SeriesId) -> Option<&'a Labels>,
    ) -> Option<SeriesId>
    where
        I: ExactSizeIterator<Item = (&'p str, &'p str)> + Clone,
    {
        let h = labels_hash_pairs(pairs.clone());
        let is = |id: SeriesId| labels_of(id).is_some_and(|l| l.eq_pairs(pairs.clone()));
        let first = *self.by_hash.get(&h)?;
        if is(first) {
            return Some(first);
        }
        self.collisions.get(&h)?.iter().copied().find(|&id| is(id))
    }

    pub fn insert(&mut self, id: SeriesId, labels: &Labels) {
        let h = (self.hash)(labels);
        match self.by_hash.entry(h) {
            Entry::Vacant(v) => {
                v.insert(id);
            }
            Entry::Occupied(_) => self.collisions.entry(h).or_default().push(id),
        }
        for l in labels.iter() {
            let ids = self
                .postings
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
            // Ids are usually assigned in increasing order; keep the list sorted
            // either way (replay after retention may insert out of order).
            match ids.last() {
                Some(&last) if last > id => {
                    if let Err(pos) = ids.binary_search(&id) {
                        ids.insert(pos, id);
                    }
                }
                _ => ids.push(id),
            }
        }
    }

    pub fn remove(&mut self, id: SeriesId, labels: &Labels) {
        let h = (self.hash)(labels);
        if self.by_hash.get(&h) == Some(&id) {
            // Promote a colliding id, if any, into the primary slot.
            match self.collisions.get_mut(&h).and_then(Vec::pop) {
                Some(other) => {
                    self.by_hash.insert(h, other);
                }
                None => {
                    self.by_hash.remove(&h);
                }
            }
        } else if let Some(ids) = self.collisions.get_mut(&h) {
            ids.retain(|&x| x != id);
        }
        if self.collisions.get(&h).is_some_and(Vec::is_empty) {
            self.collisions.remove(&h);
        }
        for l in labels.iter() {
            let Some(values) = self.postings.get_mut(&l.name) else {
                continue;
            };
            if let Some(ids) = values.get_mut(&l.value) {
                if let Ok(pos) = ids.binary_search(&id) {
                    ids.remove(pos);
                }
                if ids.is_empty() {
                    values.remove(&l.value);
                }
            }
            if values.is_empty() {
                self.postings.remove(&l.name);
            }
        }
    }

    /// Series carrying `name="value"` (the per-metric budget's count).
    pub fn count(&self, name: &str, value: &str) -> usize {
        self.postings
            .get(name)
            .and_then(|values| values.get(value))
            .map_or(0, Vec::len)
    }

    /// The inverted index itself: name → value → ids.
    pub fn postings(&self) -> &BTreeMap<String, BTreeMap<String, Vec<SeriesId>>> {
        &self.postings
    }

    /// Ids carrying label `name` at all, ascending.
    pub fn with_name(&self, name: &str) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(name) else {
            return Vec::new();
        };
        let mut out: Vec<SeriesId> = values.values().flatten().copied().collect();
        out.sort_unstable();
        out
    }

    /// Ids matching every matcher, ascending. `all_ids` lists every live id
    /// and is only consulted when no matcher narrows the set (callers refuse
    /// such sets for selects, but `series` with no sets means all).
    pub fn select(
        &self,
        matchers: &[Matcher],
        all_ids: impl FnOnce() -> Vec<SeriesId>,
    ) -> Vec<SeriesId> {
        // Matchers that cannot match the empty string only match series that
        // have the label: resolve them through the postings and intersect.
        let mut narrowing: Vec<&Matcher> = matchers.iter().filter(|m| !m.matches_empty()).collect();
        // Equality first: cheapest and usually most selective.
        narrowing.sort_by_key(|m| m.op != MatchOp::Equal);
        let mut candidates: Option<Vec<SeriesId>> = None;
        for m in &narrowing {
            let ids = self.postings_for(m);
            candidates = Some(match candidates {
                None => ids,
                Some(c) => intersect(&c, &ids),
            });
            if candidates.as_ref().is_some_and(Vec::is_empty) {
                return Vec::new();
            }
        }
        let mut ids = candidates.unwrap_or_else(all_ids);
        // The rest (which also match an absent label) filter the candidates.
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            let excluded = self.postings_excluded(m);
            if !excluded.is_empty() {
                ids = difference(&ids, &excluded);
            }
        }
        ids
    }

    /// Ids whose value for `m.name` matches `m` (absent label excluded).
    fn postings_for(&self, m: &Matcher) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(&m.name) else {
            return Vec::new();
        };
        if m.op == MatchOp::Equal {
            return values.get(&m.value).cloned().unwrap_or_default();
        }
        let mut out: Vec<SeriesId> = values
            .iter()
            .filter(|(v, _)| m.matches_value(v))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        out.sort_unstable();
        out
    }

    /// For a matcher that matches the empty string: ids that have the label
    /// with a value it does *not* match.
    fn postings_excluded(&self, m: &Matcher) -> Vec<SeriesId> {
        let Some(values) = self.postings.get(&m.name) else {
            return Vec::new();
        };
        let mut out: Vec<SeriesId> = values
            .iter()
            .filter(|(v, _)| !m.matches_value(v))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        out.sort_unstable();
        out
    }
}

fn intersect(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn difference(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_wire::matches_all;

    fn matcher() -> impl Strategy<Value = Matcher> {
        let op = prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::RegexMatch),
            Just(MatchOp::RegexNoMatch)
        ];
        (
            prop::sample::select(vec!["a", "b", "c"]),
            op,
            prop::sample::select(vec!["", "x", "y", "x|y", ".*", ".+", "x.*"]),
        )
            .prop_filter_map("valid", |(n, op, v)| Matcher::new(n, op, v).ok())
    }

    proptest! {
        #[test]
        fn select_equals_brute_force(
            sets in prop::collection::vec(prop::collection::vec((prop::sample::select(vec!["a", "b", "c"]), prop::sample::select(vec!["", "x", "y", "z"])), 0..3), 1..12),
            matchers in prop::collection::vec(matcher(), 0..4),
            remove in prop::collection::vec(any::<bool>(), 12),
            collide in any::<bool>(),
        ) {
            let mut idx = Index::default();
            if collide {
                // Every label set hashes alike: exercises the collision lists.
                idx.hash = |_| 7;
            }
            let mut live = Vec::new();
            for (i, pairs) in sets.iter().enumerate() {
                let labels = Labels::from_pairs(pairs.iter().copied());
                if idx.get(&labels, |id| live.iter().find(|(x, _)| *x == id).map(|(_, l)| l)).is_some() {
                    continue;
                }
                idx.insert(i as SeriesId, &labels);
                live.push((i as SeriesId, labels));
            }
            for (i, r) in remove.iter().enumerate() {
                if *r
                    && i % 3 == 0
                    && let Some(pos) = live.iter().position(|(id, _)| *id == i as SeriesId)
                {
                    let (id, l) = live.remove(pos);
                    idx.remove(id, &l);
                }
            }
            for (id, l) in &live {
                let found = idx.get(l, |x| live.iter().find(|(y, _)| *y == x).map(|(_, l)| l));
                prop_assert_eq!(found, Some(*id));
            }
            let got = idx.select(&matchers, || live.iter().map(|(id, _)| *id).collect());
            let want: Vec<SeriesId> = live.iter().filter(|(_, l)| matches_all(&matchers, l)).map(|(id, _)| *id).collect();
            prop_assert_eq!(got, want);
        }
    }
}
