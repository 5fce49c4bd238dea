//! [`PathMap`]: image paths (with a value each), asked about every parent of a path in one
//! pass over it.
//!
//! Why: asking a `HashMap` about each parent of a path hashes each parent whole, so a path of
//! 4 KiB and 128 components hashed half a MiB. A merge asks about every entry's parents, and
//! a hostile layer of such paths took minutes. Here a path's parents are hashed as one
//! running hash, component by component, with a per-map random key (so that a layer cannot
//! aim for collisions).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

/// Image paths (`a/b/c`, the root as the empty path), each with a value, that can be asked
/// about all the parents of a path in one pass over it.
#[derive(Debug)]
pub struct PathMap<V> {
    keys: RandomState,
    by_hash: HashMap<u64, (Box<[u8]>, V)>,
    /// Paths whose hash another path has already: with 64-bit keyed hashes, next to never
    /// (kept apart so that the usual entry costs no more than a `HashMap<Vec<u8>, V>`'s).
    collided: Vec<(u64, Box<[u8]>, V)>,
}

/// Paths without values.
pub type PathSet = PathMap<()>;

impl<V> Default for PathMap<V> {
    fn default() -> Self {
        Self {
            keys: RandomState::new(),
            by_hash: HashMap::new(),
            collided: Vec::new(),
        }
    }
}

impl<V> PathMap<V> {
    /// The running hash after each component of `path`: `(end, hash)` where `path[..end]`
    /// is the path so far and `hash` its [`hash_of`](Self::hash_of).
    fn running(&self, path: &[u8]) -> impl Iterator<Item = (usize, u64)> {
        let mut hasher = self.keys.build_hasher();
        let mut end = 0;
        path.split(|b| *b == b'/').map(move |component| {
            hasher.write(component);
            hasher.write_u8(b'/');
            end += component.len();
            let at = end;
            end += 1;
            (at, hasher.finish())
        })
    }

    fn hash_of(&self, path: &[u8]) -> u64 {
        self.running(path).last().map_or(0, |(_, hash)| hash)
    }

    /// Forgets every path (keeping the memory and the hash key).
    pub fn clear(&mut self) {
        self.by_hash.clear();
        self.collided.clear();
    }

    /// Whether no path is here.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    fn find(&self, hash: u64, path: &[u8]) -> Option<&V> {
        let (first, value) = self.by_hash.get(&hash)?;
        if **first == *path {
            return Some(value);
        }
        self.collided
            .iter()
            .find(|(h, p, _)| *h == hash && **p == *path)
            .map(|(_, _, value)| value)
    }

    /// Adds `path` with `value` unless it is here; whether it was added.
    pub fn insert_new(&mut self, path: &[u8], value: V) -> bool {
        self.insert_hashed(self.hash_of(path), path, value)
    }

    fn insert_hashed(&mut self, hash: u64, path: &[u8], value: V) -> bool {
        if self.find(hash, path).is_some() {
            return false;
        }
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert((path.into(), value));
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.push((hash, path.into(), value));
            }
        }
        true
    }

    /// The value of `path`, if it is here.
    pub fn get(&self, path: &[u8]) -> Option<&V> {
        if self.by_hash.is_empty() {
            return None;
        }
        self.find(self.hash_of(path), path)
    }

    /// The value of `path`, to change, if it is here.
    pub fn get_mut(&mut self, path: &[u8]) -> Option<&mut V> {
        if self.by_hash.is_empty() {
            return None;
        }
        let hash = self.hash_of(path);
        match self.by_hash.get_mut(&hash) {
            Some((first, value)) if **first == *path => Some(value),
            Some(_) => self
                .collided
                .iter_mut()
                .find(|(h, p, _)| *h == hash && **p == *path)
                .map(|(_, _, value)| value),
            None => None,
        }
    }

    /// Whether a parent of `path` (a proper prefix of it that ends before a `/`) is here with
    /// a value that `hides` says yes to.
    pub fn has_parent(&self, path: &[u8], hides: impl Fn(&V) -> bool) -> bool {
        if self.by_hash.is_empty() {
            return false;
        }
        self.running(path)
            .filter(|(end, _)| *end < path.len())
            .any(|(end, hash)| self.find(hash, &path[..end]).is_some_and(&hides))
    }

    /// The ends of the parents of `path` that are not here, shortest first.
    pub fn missing_parents(&self, path: &[u8]) -> Vec<usize> {
        self.running(path)
            .filter(|(end, hash)| *end < path.len() && self.find(*hash, &path[..*end]).is_none())
            .map(|(end, _)| end)
            .collect()
    }
}

impl PathSet {
    /// Adds `path`; whether it was not there.
    pub fn insert(&mut self, path: &[u8]) -> bool {
        self.insert_new(path, ())
    }

    /// Whether `path` is here.
    pub fn contains(&self, path: &[u8]) -> bool {
        self.get(path).is_some()
    }

    /// Whether `path` or a parent of it is here (one pass: the running hash ends at `path`).
    pub fn contains_or_within(&self, path: &[u8]) -> bool {
        !self.is_empty()
            && self
                .running(path)
                .any(|(end, hash)| self.find(hash, &path[..end]).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_found_by_their_running_hash() {
        let mut set = PathSet::default();
        assert!(!set.contains(b"a"));
        assert!(set.insert(b"a/b"));
        assert!(!set.insert(b"a/b"));
        assert!(set.contains(b"a/b"));
        assert!(!set.contains(b"a"));
        assert!(!set.contains(b"a/b/c"));
        let any = |_: &()| true;
        assert!(set.has_parent(b"a/b/c", any));
        assert!(set.has_parent(b"a/b/c/d", any));
        assert!(!set.has_parent(b"a/b", any), "a path is not its own parent");
        assert!(!set.has_parent(b"a/bc/d", any));
        assert!(!set.has_parent(b"x/a/b/c", any));
        assert_eq!(set.missing_parents(b"a/b/c/d"), [1, 5]);
        assert!(set.insert(b"a"));
        assert_eq!(set.missing_parents(b"a/b/c/d"), [5]);
        assert_eq!(set.missing_parents(b"top"), Vec::<usize>::new());
        // Components are told apart however the bytes fall.
        let mut other = PathSet::default();
        other.insert(b"ab");
        assert!(!other.has_parent(b"a/b/c", any));
        assert!(!other.contains(b"a/b"));
        // The root is the empty path, a parent of nothing by this reckoning: asked apart.
        assert!(set.contains_or_within(b"a/b"));
        assert!(set.contains_or_within(b"a/b/c/d"));
        assert!(!set.contains_or_within(b"b"));
        assert!(other.insert(b""));
        assert!(other.contains(b"") && !other.contains_or_within(b"x"));
        set.clear();
        assert!(set.is_empty() && !set.contains_or_within(b"a/b/c"));
    }

    #[test]
    fn paths_with_one_hash_are_told_apart() {
        let mut map = PathMap::default();
        assert!(map.insert_hashed(7, b"a", 1));
        assert!(map.insert_hashed(7, b"b", 2));
        assert!(!map.insert_hashed(7, b"b", 3));
        assert_eq!(map.find(7, b"a"), Some(&1));
        assert_eq!(map.find(7, b"b"), Some(&2));
        assert_eq!(map.find(7, b"c"), None);
        assert_eq!(map.find(8, b"a"), None);
    }

    #[test]
    fn values_decide_whether_a_parent_hides() {
        let mut files = PathMap::default();
        assert!(files.insert_new(b"a", false));
        assert!(files.insert_new(b"a/b", true));
        assert!(!files.insert_new(b"a/b", false), "the first value stays");
        assert_eq!(files.get(b"a/b"), Some(&true));
        assert!(files.has_parent(b"a/b/c", |file| *file));
        assert!(!files.has_parent(b"a/c", |file| *file));
        *files.get_mut(b"a").unwrap() = true;
        assert!(files.has_parent(b"a/c", |file| *file));
        assert!(files.get_mut(b"a/c").is_none());
        // `x` kept apart, under the hash `y` holds: changed where it is.
        let mut shared = PathMap::default();
        assert!(shared.insert_hashed(shared.hash_of(b"x"), b"y", 2));
        assert!(shared.insert_hashed(shared.hash_of(b"x"), b"x", 1));
        *shared.get_mut(b"x").unwrap() += 10;
        assert_eq!(shared.get(b"x"), Some(&11));
    }
}
