//! One compile per key at a time: when two builds (two worktrees, two CI
//! jobs on one runner) miss the same key at once, the first compiles and
//! the others wait for its entry, up to a time limit after which they
//! compile themselves.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cachepot_compiler::digest::Digest;

/// The keys being compiled now.
#[derive(Default)]
pub struct InFlight {
    slots: Mutex<HashMap<Digest, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    done: Mutex<bool>,
    cv: Condvar,
}

/// The right to compile a key; dropping it (once the entry is stored, or
/// the compile failed) wakes the waiters.
pub struct Claim {
    key: Digest,
    slot: Arc<Slot>,
    owner: Arc<InFlight>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Ok(mut m) = self.owner.slots.lock() {
            if m.get(&self.key).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
                m.remove(&self.key);
            }
        }
        let mut done = match self.slot.done.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *done = true;
        self.slot.cv.notify_all();
    }
}

/// What [`InFlight::claim_or_wait`] did.
pub enum Turn {
    /// Nobody compiles this key: the caller does.
    Mine(Claim),
    /// Another compile of this key finished while the caller waited: look
    /// it up again.
    Waited,
    /// Another compile of this key did not finish in time: compile without
    /// a claim.
    TimedOut,
}

impl InFlight {
    /// Claims `key`, or waits (up to `limit`) for the compile that holds it.
    pub fn claim_or_wait(self: &Arc<Self>, key: Digest, limit: Duration) -> Turn {
        let slot = {
            let Ok(mut m) = self.slots.lock() else {
                return Turn::TimedOut;
            };
            match m.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let slot = Arc::new(Slot::default());
                    m.insert(key, slot.clone());
                    return Turn::Mine(Claim {
                        key,
                        slot,
                        owner: self.clone(),
                    });
                }
            }
        };
        let deadline = Instant::now() + limit;
        let mut done = match slot.done.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Turn::TimedOut;
            }
            done = match slot.cv.wait_timeout(done, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        Turn::Waited
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_second_waits_for_the_first_and_a_stuck_one_times_out() {
        let f = Arc::new(InFlight::default());
        let key = Digest::of(b"k");
        let Turn::Mine(claim) = f.claim_or_wait(key, Duration::ZERO) else {
            panic!("first claim")
        };
        // A stuck first compile: the limit passes.
        assert!(matches!(
            f.claim_or_wait(key, Duration::from_millis(10)),
            Turn::TimedOut
        ));
        // A waiter with a long limit gets through once the claim is
        // dropped: woken if it was already waiting, or finding the key
        // free if it came after. Never by its limit.
        let f2 = f.clone();
        let waiter =
            std::thread::spawn(
                move || match f2.claim_or_wait(key, Duration::from_secs(600)) {
                    Turn::Waited => "waited",
                    Turn::Mine(_) => "claimed",
                    Turn::TimedOut => "timed out",
                },
            );
        drop(claim);
        let started = Instant::now();
        let how = waiter.join().unwrap();
        assert!(how == "waited" || how == "claimed", "{how}");
        assert!(started.elapsed() < Duration::from_secs(60));
        // Free again: the next caller claims it.
        assert!(matches!(
            f.claim_or_wait(key, Duration::ZERO),
            Turn::Mine(_)
        ));
    }
}
