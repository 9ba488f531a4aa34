//! Storage errors reach the user: the first one is printed on the build's
//! stderr once (per cargo process), with a hint of what to fix. The rest
//! are in the daemon's log and the statistics.

use std::collections::HashSet;
use std::sync::Mutex;

use cachepot_storage::remote::hint;

#[derive(Default)]
struct State {
    /// The most recent storage error, with its hint.
    last: Option<String>,
    /// Builds (cargo processes) already told about it.
    told: HashSet<u32>,
}

/// The storage error to show, and who has seen it.
#[derive(Default)]
pub struct Warnings {
    state: Mutex<State>,
}

impl Warnings {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut g)
    }

    /// Records a storage error.
    pub fn storage_error(&self, message: &str) {
        let mut text =
            format!("cachepot: cache storage error (the build goes on without it): {message}");
        if let Some(h) = hint(message) {
            text.push_str(&format!("\ncachepot: hint: {h}"));
        }
        self.with(|s| {
            if s.last.is_none() {
                s.last = Some(text);
            }
        });
    }

    /// The warning for the build whose cargo is `ppid`, once.
    pub fn take_for(&self, ppid: u32) -> Option<String> {
        self.with(|s| {
            let text = s.last.clone()?;
            s.told.insert(ppid).then_some(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_build_is_told_once_with_a_hint() {
        let w = Warnings::default();
        assert_eq!(w.take_for(1), None);
        w.storage_error("s3 read failed: ... SignatureDoesNotMatch ...");
        let first = w.take_for(1).unwrap_or_default();
        assert!(
            first.contains("SignatureDoesNotMatch") && first.contains("hint"),
            "{first}"
        );
        assert_eq!(w.take_for(1), None);
        assert!(w.take_for(2).is_some());
    }
}
