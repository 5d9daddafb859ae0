//! A single-threaded "something changed" signal for tasks on one shard.
//!
//! Waiters snapshot a generation number and wake when it moves. There is no lock: a shard's
//! tasks all run on one thread, so a `Cell` and a `RefCell` are enough.
//!
//! `waiters` counts the waiters pending now: one that gives up (a long poll whose deadline came
//! first) stops counting when it is dropped, so the count, which bounds long polls per
//! partition, does not grow on a partition nobody writes to. Its waker stays in the list until
//! the next `notify_all`, as before: waking it then is harmless, and some waits elsewhere were
//! found to depend on those wake-ups (taking the wakers back on drop made a new active
//! controller stop fencing a cut-off broker, one run in three).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
    /// Waiters of this generation that are pending and not dropped.
    pending: Cell<usize>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        self.pending.set(0);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Resolves at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self, generation: self.generation.get(), counted: false }
    }

    /// Waiters pending now (polled, not yet woken or dropped).
    pub fn waiters(&self) -> usize {
        self.pending.get()
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    /// Counted in `Notify::pending` (polled while its generation was current).
    counted: bool,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.notify.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        drop(wakers);
        if !self.counted {
            self.counted = true;
            self.notify.pending.set(self.notify.pending.get() + 1);
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        // After a notify_all the count was reset already.
        if self.counted && self.notify.generation.get() == self.generation {
            self.notify.pending.set(self.notify.pending.get() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;

    fn poll_once(f: &mut Notified<'_>) -> Poll<()> {
        Pin::new(f).poll(&mut Context::from_waker(noop_waker_ref()))
    }

    #[test]
    fn a_waiter_that_gives_up_stops_counting() {
        let notify = Notify::default();
        for _ in 0..10 {
            let mut waiting = notify.notified();
            assert!(poll_once(&mut waiting).is_pending());
            assert!(poll_once(&mut waiting).is_pending(), "polled again: still one waiter");
            assert_eq!(notify.waiters(), 1);
        }
        assert_eq!(notify.waiters(), 0, "ten long polls that timed out leave nothing behind");
    }

    #[test]
    fn notify_all_wakes_every_waiter_pending_and_only_later_ones_wait() {
        let notify = Notify::default();
        let (mut a, mut b) = (notify.notified(), notify.notified());
        assert!(poll_once(&mut a).is_pending() && poll_once(&mut b).is_pending());
        assert_eq!(notify.waiters(), 2);
        notify.notify_all();
        assert_eq!(notify.waiters(), 0);
        assert!(poll_once(&mut a).is_ready() && poll_once(&mut b).is_ready());
        let mut later = notify.notified();
        assert!(poll_once(&mut later).is_pending(), "a waiter after the notification waits for the next");
        drop((a, b));
        assert_eq!(notify.waiters(), 1, "dropping woken waiters leaves the new one");
    }
}
