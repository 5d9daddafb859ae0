//! Byte budgets of one shard: the memory a kind of work may hold at once, and the wait that
//! turns a spent budget into back-pressure.
//!
//! Two budgets bound a shard's data path (see `BrokerConfig`): request bytes read off its
//! sockets and not yet answered (`queued.max.request.bytes`), and appended bytes not yet
//! durable (`shardlog.dirty.shard.bytes`). When one is spent, whoever needs more waits: a
//! connection stops reading its socket, a produce waits before it appends. So a slow disk
//! slows producers down instead of growing memory, as Kafka's muted channels and Redpanda's
//! `storage_resources` do.
//!
//! Waiters are served first come, first served: produces to one partition wait here in the
//! order they arrived, and that order is the order of their offsets (pipelined requests of one
//! producer must not overtake each other). A small request never jumps a large one.
//!
//! Like Kafka's non-strict memory pool, a request larger than the whole budget is let in when
//! nothing else holds any of it: a budget smaller than `socket.request.max.bytes` or
//! `message.max.bytes` must not wedge a connection for good.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use crate::notify::Notify;

pub struct ByteBudget {
    /// The limit, in bytes; `usize::MAX` is none.
    bytes_max: usize,
    used_bytes: Cell<usize>,
    /// The most `used_bytes` has been, for the metrics and the tests.
    used_bytes_peak: Cell<usize>,
    /// Times a caller had to wait for room.
    waits: Cell<u64>,
    released: Notify,
    /// Tickets of the callers waiting, in arrival order: only the front one may take room.
    waiting: RefCell<VecDeque<u64>>,
    next_ticket: Cell<u64>,
}

impl ByteBudget {
    pub fn new(bytes_max: usize) -> Rc<ByteBudget> {
        Rc::new(ByteBudget {
            bytes_max,
            used_bytes: Cell::new(0),
            used_bytes_peak: Cell::new(0),
            waits: Cell::new(0),
            released: Notify::default(),
            waiting: RefCell::new(VecDeque::new()),
            next_ticket: Cell::new(0),
        })
    }

    /// No limit: for unit tests and benches that own a lone partition.
    pub fn unbounded() -> Rc<ByteBudget> {
        ByteBudget::new(usize::MAX)
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }
    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }
    pub fn used_bytes_peak(&self) -> usize {
        self.used_bytes_peak.get()
    }
    pub fn waits(&self) -> u64 {
        self.waits.get()
    }

    /// Whether `bytes` more fit now (always, when nothing is held).
    pub fn has_room(&self, bytes: usize) -> bool {
        let used = self.used_bytes.get();
        used == 0 || used.saturating_add(bytes) <= self.bytes_max
    }

    /// Waits until `bytes` fit and every earlier waiter has gone. The caller charges them
    /// before its next await, so the room it saw is still there (a shard is one thread).
    pub async fn wait_for_room(&self, bytes: usize) {
        self.wait_for_room_of(|| bytes).await
    }

    /// As `wait_for_room`, for a charge that may change while waiting (`bytes` is asked at each
    /// look): a batch kept in a request buffer that another batch has charged already adds
    /// nothing.
    pub async fn wait_for_room_of(&self, bytes: impl Fn() -> usize) {
        if self.waiting.borrow().is_empty() && self.has_room(bytes()) {
            return;
        }
        self.waits.set(self.waits.get() + 1);
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket + 1);
        self.waiting.borrow_mut().push_back(ticket);
        // A waiter that is dropped (its connection went away) leaves the line.
        let _in_line = InLine { budget: self, ticket };
        loop {
            let released = self.released.notified();
            if self.waiting.borrow().front() == Some(&ticket) && self.has_room(bytes()) {
                self.waiting.borrow_mut().pop_front();
                // The next in line looks once this caller has charged its bytes.
                self.released.notify_all();
                return;
            }
            released.await;
        }
    }

    pub fn charge(&self, bytes: usize) {
        let used = self.used_bytes.get() + bytes;
        self.used_bytes.set(used);
        self.used_bytes_peak.set(self.used_bytes_peak.get().max(used));
    }

    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let used = self.used_bytes.get();
        assert!(bytes <= used, "released {bytes} bytes of a budget holding only {used}");
        self.used_bytes.set(used - bytes);
        self.released.notify_all();
    }

    /// Waits for room, then holds `bytes` until the permit is dropped.
    pub async fn acquire(self: &Rc<Self>, bytes: usize) -> BudgetPermit {
        self.wait_for_room(bytes).await;
        self.charge(bytes);
        BudgetPermit { budget: self.clone(), bytes }
    }
}

/// A place in a budget's line; leaving it (served or dropped) lets the next one look.
struct InLine<'a> {
    budget: &'a ByteBudget,
    ticket: u64,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        let mut waiting = self.budget.waiting.borrow_mut();
        if let Some(i) = waiting.iter().position(|&t| t == self.ticket) {
            waiting.remove(i);
            drop(waiting);
            self.budget.released.notify_all();
        }
    }
}

/// Bytes held from a budget; dropping the permit gives them back.
pub struct BudgetPermit {
    budget: Rc<ByteBudget>,
    bytes: usize,
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_spent_budget_makes_the_next_caller_wait_until_bytes_are_released() {
        let budget = ByteBudget::new(100);
        let first = {
            let mut f = pin!(budget.acquire(60));
            match poll_once(f.as_mut()) {
                Poll::Ready(p) => p,
                Poll::Pending => panic!("an empty budget has room"),
            }
        };
        let mut second = pin!(budget.acquire(60));
        assert!(poll_once(second.as_mut()).is_pending(), "60 + 60 > 100 must wait");
        assert_eq!(budget.waits(), 1);
        drop(first);
        let second = match poll_once(second.as_mut()) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("room after the release"),
        };
        assert_eq!(budget.used_bytes(), 60);
        drop(second);
        assert_eq!(budget.used_bytes(), 0);
        assert_eq!(budget.used_bytes_peak(), 60);
    }

    #[test]
    fn waiters_are_served_in_arrival_order_and_a_dropped_one_leaves_the_line() {
        let budget = ByteBudget::new(100);
        budget.charge(90);
        let mut large = pin!(budget.acquire(50));
        let mut small = pin!(budget.acquire(5));
        let mut third = pin!(budget.acquire(5));
        assert!(poll_once(large.as_mut()).is_pending());
        assert!(poll_once(small.as_mut()).is_pending(), "5 bytes fit, but the large request came first");
        assert!(poll_once(third.as_mut()).is_pending());
        budget.release(40); // 50 used: the large one fits now
        assert!(poll_once(small.as_mut()).is_pending(), "still behind the large request");
        let large = match poll_once(large.as_mut()) {
            Poll::Ready(p) => p,
            Poll::Pending => panic!("first in line, and it fits"),
        };
        assert_eq!(budget.used_bytes(), 100);
        drop(large);
        assert!(poll_once(small.as_mut()).is_ready());
        assert!(poll_once(third.as_mut()).is_ready());

        let budget = ByteBudget::new(10);
        budget.charge(10);
        {
            let mut gone = pin!(budget.acquire(5));
            assert!(poll_once(gone.as_mut()).is_pending());
        } // dropped while waiting
        let mut next = pin!(budget.acquire(5));
        assert!(poll_once(next.as_mut()).is_pending());
        budget.release(10);
        assert!(poll_once(next.as_mut()).is_ready(), "a dropped waiter must not block the line");
    }

    #[test]
    fn a_waiter_whose_charge_fell_to_nothing_gets_in_at_its_next_look() {
        let budget = ByteBudget::new(100);
        budget.charge(90);
        // A batch of a request buffer that no other batch has charged yet needs its 50 bytes.
        let need = Cell::new(50);
        let mut waiting = pin!(budget.wait_for_room_of(|| need.get()));
        assert!(poll_once(waiting.as_mut()).is_pending());
        // Another batch of the same request charged the buffer meanwhile: this one adds nothing.
        need.set(0);
        budget.release(1);
        assert!(poll_once(waiting.as_mut()).is_ready(), "asked again at the next look: 89 + 0 fits");
    }

    #[test]
    fn a_request_larger_than_the_budget_gets_in_when_nothing_is_held() {
        let budget = ByteBudget::new(10);
        assert!(budget.has_room(1000));
        budget.charge(1000);
        assert!(!budget.has_room(1), "over the limit: everyone else waits");
        budget.release(1000);
        assert!(budget.has_room(5));
    }

    #[test]
    #[should_panic(expected = "released 5 bytes")]
    fn releasing_more_than_was_charged_is_a_bug() {
        let budget = ByteBudget::new(10);
        budget.charge(1);
        budget.release(5);
    }
}
