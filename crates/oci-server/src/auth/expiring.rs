//! A bounded map whose entries expire: the store of verified credentials, tokens and refresh
//! tokens.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

/// A map whose entries expire, with a capacity. Every entry of one map lives equally long and
/// the clock only moves forward, so the insertion queue is also the expiry queue: sweeping pops
/// expired entries from its front, each once, and eviction when full pops the oldest.
pub(super) struct Expiring<K, V> {
    /// Each entry with its expiry and the number of its insertion.
    pub(super) entries: HashMap<K, (Instant, u64, V)>,
    /// Keys by expiry, with the number of their insertion: a key inserted again leaves a
    /// stale entry here, skipped when popped.
    pub(super) queue: VecDeque<(Instant, u64, K)>,
    pub(super) inserted: u64,
    pub(super) capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Expiring<K, V> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            queue: VecDeque::new(),
            inserted: 0,
            capacity: capacity.max(1),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Pops the front of the queue, removing its entry unless that was inserted again since.
    pub(super) fn pop_front(&mut self) -> bool {
        let Some((_, number, key)) = self.queue.pop_front() else {
            return false;
        };
        if self.entries.get(&key).is_some_and(|(_, n, _)| *n == number) {
            self.entries.remove(&key);
        }
        true
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        while self
            .queue
            .front()
            .is_some_and(|(expires, _, _)| *expires <= now)
        {
            self.pop_front();
        }
    }

    pub(super) fn insert(&mut self, key: K, value: V, expires: Instant, now: Instant) {
        self.sweep(now);
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if !self.pop_front() {
                break;
            }
        }
        // Stale queue entries (keys inserted again) are bounded too: compacting costs a pass,
        // but only after as many insertions, so it is constant per insertion.
        if self.queue.len() >= 2 * self.capacity {
            let entries = &self.entries;
            self.queue
                .retain(|(_, number, key)| entries.get(key).is_some_and(|(_, n, _)| n == number));
        }
        self.inserted += 1;
        self.entries
            .insert(key.clone(), (expires, self.inserted, value));
        self.queue.push_back((expires, self.inserted, key));
    }

    pub(super) fn get(&mut self, key: &K, now: Instant) -> Option<&V> {
        self.sweep(now);
        self.entries
            .get(key)
            .filter(|(expires, _, _)| *expires > now)
            .map(|(_, _, value)| value)
    }
}
