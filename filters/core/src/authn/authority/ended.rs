//! Sessions the authority has ended (idle, expired or revoked), per worker VM: a token of an
//! ended session that comes back is refused from here, so a replayed idle token costs no call
//! to the authority. Keyed by the session and its sign-in time: an SSO re-login that reuses the
//! `sid` has a newer `auth_time` and is asked about afresh. Bounded: the oldest entry goes
//! first (forgetting one only costs one more call).

use std::collections::{HashMap, VecDeque};

use crate::denial::Denial;

/// Entries kept per worker VM by default (~40 bytes each).
pub const DEFAULT_CAPACITY: usize = 4096;

type Key = ([u8; 16], Option<i64>);

#[derive(Debug, Clone)]
pub struct EndedSessions {
    capacity: usize,
    ended: HashMap<Key, Denial>,
    order: VecDeque<Key>,
}

impl Default for EndedSessions {
    fn default() -> Self {
        EndedSessions::new(DEFAULT_CAPACITY)
    }
}

impl EndedSessions {
    pub fn new(capacity: usize) -> EndedSessions {
        EndedSessions {
            capacity: capacity.max(1),
            ended: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The denial the authority gave this session (same sign-in), if it ended it.
    pub fn get(&self, session: [u8; 16], auth_time_ms: Option<i64>) -> Option<Denial> {
        self.ended.get(&(session, auth_time_ms)).copied()
    }

    /// Remembers that the authority ended this session with `denial`.
    pub fn insert(&mut self, session: [u8; 16], auth_time_ms: Option<i64>, denial: Denial) {
        let key = (session, auth_time_ms);
        if self.ended.insert(key, denial).is_some() {
            return;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ended.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ended.is_empty()
    }
}
