//! A memo whose value for each key is computed once, even when several
//! compiles ask for it at the same moment: the first computes, the others
//! wait for its result. At the start of a build both cores would otherwise
//! spend a quarter of a second hashing the same toolchain twice.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// Values by key, each computed by the first caller that asks.
pub struct OnceMemo<K, V> {
    slots: Mutex<HashMap<K, Arc<Mutex<Option<V>>>>>,
}

impl<K, V> Default for OnceMemo<K, V> {
    fn default() -> Self {
        OnceMemo {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> OnceMemo<K, V> {
    /// The value for `key`: memoised, or computed by `compute` while other
    /// callers for the same key wait. An error is not memoised: the next
    /// caller (a waiting one too) computes again.
    pub fn get_or_try<E>(&self, key: K, compute: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            slots.entry(key).or_default().clone()
        };
        let mut value = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = value.as_ref() {
            return Ok(v.clone());
        }
        let v = compute()?;
        *value = Some(v.clone());
        Ok(v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::OnceMemo;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Barrier;

    #[test]
    fn callers_at_the_same_time_compute_once_and_errors_are_not_kept() {
        let memo: OnceMemo<&str, u32> = OnceMemo::default();
        let runs = AtomicU32::new(0);
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    start.wait();
                    let v = memo.get_or_try("k", || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(7)
                    });
                    assert_eq!(v, Ok(7));
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(memo.get_or_try("e", || Err::<u32, _>("no")), Err("no"));
        assert_eq!(memo.get_or_try("e", || Ok::<_, &str>(8)), Ok(8));
    }
}
