//! Cooperative cancellation of long allocations.
//!
//! Editing a large ring (a preview of a thousand members) takes a while, and
//! whoever asked may be gone before it ends. [`cancellable`] runs work with a
//! flag; the allocator's outer loops look at the flag between their steps
//! and, once it is set, skip the steps left. Each step runs whole or not at
//! all, so the ring stays well-formed, but it is not the answer: the work's
//! result is dropped and [`cancellable`] returns [`Cancelled`].
//!
//! The flag travels in a thread-local rather than through every allocator
//! function: the check points are few and deep in the call tree, and the
//! work runs on one thread.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    static FLAG: RefCell<Option<Arc<AtomicBool>>> = const { RefCell::new(None) };
}

/// The work was cancelled (its flag was set) and its result dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the computation was cancelled")]
pub struct Cancelled;

/// Runs `work` on this thread, letting the allocator stop early once `flag`
/// is set (by another thread, or before the call). Returns the result only
/// if `flag` is still unset when `work` ends.
pub fn cancellable<T>(flag: &Arc<AtomicBool>, work: impl FnOnce() -> T) -> Result<T, Cancelled> {
    /// Puts the enclosing scope's flag back, also when `work` panics.
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            FLAG.with(|f| *f.borrow_mut() = outer);
        }
    }
    let _restore = Restore(FLAG.with(|f| f.replace(Some(Arc::clone(flag)))));
    let result = work();
    if flag.load(Ordering::Relaxed) {
        Err(Cancelled)
    } else {
        Ok(result)
    }
}

/// Whether the work running on this thread was cancelled: a check point for
/// the allocator's outer loops. Always false outside [`cancellable`].
pub(crate) fn cancelled() -> bool {
    FLAG.with(|f| {
        f.borrow()
            .as_ref()
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemberSpec, Replication, Ring, RingConfig};

    fn members(n: usize, zones: usize) -> Vec<MemberSpec> {
        (0..n)
            .map(|i| {
                let spec = MemberSpec::new(format!("m-{i:04}"));
                if zones == 0 {
                    spec
                } else {
                    spec.with_zone(format!("z{}", i % zones))
                }
            })
            .collect()
    }

    /// The allocators stop at their check points and hand the ring back
    /// unedited: with the flag set from the start, 3 → 300 members (the
    /// three leaving) keeps the old tokens and the result is dropped; unset,
    /// the same call gives every joiner its share.
    #[test]
    fn a_cancelled_rebalance_leaves_the_ring_as_it_was_and_returns_cancelled() {
        for (replication, zones) in [
            (Replication::SINGLE, 0),
            (Replication::new(2, false), 0),
            (Replication::new(3, true), 3),
        ] {
            let base = Ring::with_members(RingConfig::default(), members(3, zones)).unwrap();
            let desired: Vec<MemberSpec> = members(303, zones).split_off(3);
            let set = Arc::new(AtomicBool::new(true));
            let mut partial = None;
            let outcome = cancellable(&set, || {
                partial = Some(base.rebalance_to_for(&desired, &replication));
            });
            assert_eq!(outcome, Err(Cancelled));
            let partial = partial.unwrap().unwrap();
            assert_eq!(partial.tokens(), base.tokens(), "{replication:?}");
            let full = cancellable(&Arc::new(AtomicBool::new(false)), || {
                base.rebalance_to_for(&desired, &replication)
            })
            .unwrap()
            .unwrap();
            let holders: std::collections::BTreeSet<u32> =
                full.owner_indices().iter().copied().collect();
            assert_eq!(holders.len(), 300, "{replication:?}");
        }
    }

    #[test]
    fn the_flag_is_scoped_to_its_call() {
        assert!(!cancelled());
        let set = Arc::new(AtomicBool::new(true));
        let unset = Arc::new(AtomicBool::new(false));
        let mut seen = None;
        let outer = cancellable(&set, || {
            seen = Some((cancellable(&unset, cancelled), cancelled()));
        });
        assert_eq!(outer, Err(Cancelled));
        assert_eq!(
            seen,
            Some((Ok(false), true)),
            "the inner call has its own flag"
        );
        assert!(!cancelled());
        assert_eq!(cancellable(&unset, cancelled), Ok(false));
    }
}
