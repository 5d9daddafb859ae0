//! A single-threaded "something changed" signal for tasks on one shard.
//!
//! Waiters snapshot a generation number and wake when it moves. There is no lock: a shard's
//! tasks all run on one thread, so a `Cell` and a `RefCell` are enough.
//!
//! A waiter that gives up (a long poll whose deadline came first) takes its waker back when it
//! is dropped: an idle partition's fetches would otherwise pile up wakers until the next append,
//! and the count of waiters, which bounds long polls per partition, would only grow.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub struct Notify {
    generation: Cell<u64>,
    /// The wakers of the waiters now pending, by a key never used twice.
    wakers: RefCell<BTreeMap<u64, Waker>>,
    next_key: Cell<u64>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// Resolves at the next `notify_all` after this call.
    pub fn notified(&self) -> Notified<'_> {
        Notified { notify: self, generation: self.generation.get(), key: None }
    }

    /// Waiters pending now (polled, not yet woken or dropped).
    pub fn waiters(&self) -> usize {
        self.wakers.borrow().len()
    }
}

pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    /// Where its waker is in `Notify::wakers`, once polled.
    key: Option<u64>,
}

impl Future for Notified<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let notify = self.notify;
        let mut wakers = notify.wakers.borrow_mut();
        match self.key.and_then(|key| wakers.get_mut(&key)) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => *waker = cx.waker().clone(),
            None => {
                let key = notify.next_key.get();
                notify.next_key.set(key + 1);
                wakers.insert(key, cx.waker().clone());
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            // Gone already if a notify_all took it; keys are never reused.
            self.notify.wakers.borrow_mut().remove(&key);
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
    fn a_waiter_that_gives_up_takes_its_waker_back() {
        let notify = Notify::default();
        for _ in 0..10 {
            let mut waiting = notify.notified();
            assert!(poll_once(&mut waiting).is_pending());
            assert!(poll_once(&mut waiting).is_pending(), "polled again: still one waker");
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
