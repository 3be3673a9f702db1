//! Wrappers that give any [`ObjectStore`] a policy, in restic's manner:
//! [`Retrying`] retries what failed for a passing reason, [`Limited`] caps
//! how many calls are under way at once. Both are one [`Wrapped`] store
//! with a [`Policy`] around each call, and an `ObjectStore` themselves, so
//! they stack.

use std::ops::Range;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{
    io_kind, Cond, Etag, Key, ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, Page, Space,
    Unfinished,
};
use crate::error::Result;

/// What a wrapper does around each call to the store it wraps.
/// `repeatable` says whether the call may be made again to the same effect:
/// reads, lists, and unconditional puts and deletes (a conditional one,
/// repeated, could find its own work done and call it a conflict).
pub trait Policy: Send + Sync + std::fmt::Debug {
    fn run<T>(&self, repeatable: bool, call: &mut dyn FnMut() -> Result<T>) -> Result<T>;
}

/// A store with a policy around each of its calls.
#[derive(Debug)]
pub struct Wrapped<S, P> {
    inner: S,
    policy: P,
}

/// Retries a failed, repeatable call with exponential backoff while the
/// error is transient and the budget lasts.
pub type Retrying<S> = Wrapped<S, Retry>;

/// Lets at most a number of calls into the inner store at once; the rest
/// wait. A writer or reader, once made, is not counted: the limit is on
/// calls.
pub type Limited<S> = Wrapped<S, Limit>;

/// Whether an error may pass if the call is made again.
fn is_transient(e: &crate::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        io_kind(e),
        Some(
            Interrupted | TimedOut | ConnectionReset | ConnectionAborted | BrokenPipe | WouldBlock
        )
    )
}

/// [`Retrying`]'s policy: the time a call may keep being retried.
#[derive(Debug)]
pub struct Retry {
    budget: Duration,
}

impl<S: ObjectStore> Wrapped<S, Retry> {
    pub fn new(inner: S, budget: Duration) -> Retrying<S> {
        Wrapped {
            inner,
            policy: Retry { budget },
        }
    }
}

impl Policy for Retry {
    fn run<T>(&self, repeatable: bool, call: &mut dyn FnMut() -> Result<T>) -> Result<T> {
        let deadline = Instant::now() + self.budget;
        let mut pause = Duration::from_millis(50);
        loop {
            match call() {
                Err(e) if repeatable && is_transient(&e) && Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }
}

/// [`Limited`]'s policy: how many calls may be under way at once.
#[derive(Debug)]
pub struct Limit {
    limit: usize,
    running: Mutex<usize>,
    freed: Condvar,
}

impl<S: ObjectStore> Wrapped<S, Limit> {
    pub fn new(inner: S, limit: usize) -> Limited<S> {
        Wrapped {
            inner,
            policy: Limit {
                limit: limit.max(1),
                running: Mutex::new(0),
                freed: Condvar::new(),
            },
        }
    }
}

impl Policy for Limit {
    fn run<T>(&self, _: bool, call: &mut dyn FnMut() -> Result<T>) -> Result<T> {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            while *running >= self.limit {
                running = self.freed.wait(running).unwrap_or_else(|p| p.into_inner());
            }
            *running += 1;
        }
        let out = call();
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.freed.notify_one();
        out
    }
}

impl<S: ObjectStore, P: Policy> ObjectStore for Wrapped<S, P> {
    fn location(&self) -> &str {
        self.inner.location()
    }

    fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>> {
        self.policy
            .run(true, &mut || self.inner.writer(key, cond.clone()))
    }

    fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
        let repeatable = cond == Cond::Any;
        self.policy
            .run(repeatable, &mut || self.inner.put(key, body, cond.clone()))
    }

    fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>> {
        self.policy.run(true, &mut || self.inner.open(key))
    }

    fn get(&self, key: &Key) -> Result<Vec<u8>> {
        self.policy.run(true, &mut || self.inner.get(key))
    }

    fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Vec<u8>> {
        self.policy
            .run(true, &mut || self.inner.get_range(key, range.clone()))
    }

    fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        self.policy.run(true, &mut || self.inner.stat(key))
    }

    fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page> {
        self.policy
            .run(true, &mut || self.inner.list(prefix, after))
    }

    fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        let repeatable = cond == Cond::Any;
        self.policy
            .run(repeatable, &mut || self.inner.delete(key, cond.clone()))
    }

    fn space(&self) -> Result<Option<Space>> {
        self.policy.run(true, &mut || self.inner.space())
    }

    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        self.policy.run(true, &mut || self.inner.unfinished())
    }

    fn discard(&self, unfinished: &Unfinished) -> Result<()> {
        self.policy
            .run(true, &mut || self.inner.discard(unfinished))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::repository::objects::MemoryStore;

    /// A memory store whose next `failures` calls time out, and which
    /// counts the calls under way at once.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryStore,
        failures: AtomicUsize,
        running: AtomicUsize,
        most: AtomicUsize,
    }

    impl Flaky {
        fn new(failures: usize) -> Flaky {
            Flaky {
                inner: MemoryStore::new("flaky"),
                failures: AtomicUsize::new(failures),
                running: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
            }
        }

        fn call<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            let failing = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let out = match failing {
                true => Err(crate::Error::io(
                    "flaky",
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                )),
                false => f(),
            };
            self.running.fetch_sub(1, Ordering::SeqCst);
            out
        }
    }

    impl ObjectStore for Flaky {
        fn location(&self) -> &str {
            self.inner.location()
        }
        fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>> {
            self.call(|| self.inner.writer(key, cond))
        }
        fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
            self.call(|| self.inner.put(key, body, cond))
        }
        fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>> {
            self.call(|| self.inner.open(key))
        }
        fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>> {
            self.call(|| self.inner.stat(key))
        }
        fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page> {
            self.call(|| self.inner.list(prefix, after))
        }
        fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
            self.call(|| self.inner.delete(key, cond))
        }
        fn space(&self) -> Result<Option<Space>> {
            self.inner.space()
        }
        fn unfinished(&self) -> Result<Vec<Unfinished>> {
            self.inner.unfinished()
        }
        fn discard(&self, unfinished: &Unfinished) -> Result<()> {
            self.inner.discard(unfinished)
        }
    }

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    #[test]
    fn passing_failures_are_retried_and_conditional_calls_are_not() {
        let s = Retrying::new(Flaky::new(2), Duration::from_secs(5));
        s.put(&key("a"), b"1", Cond::Any).unwrap();
        assert_eq!(s.get(&key("a")).unwrap(), b"1");
        // A conditional put is made once: its failure is the caller's.
        s.inner.failures.store(1, Ordering::SeqCst);
        let refused = s.put(&key("b"), b"2", Cond::IfAbsent);
        assert_eq!(
            io_kind(&refused.unwrap_err()),
            Some(std::io::ErrorKind::TimedOut)
        );
        s.put(&key("b"), b"2", Cond::IfAbsent).unwrap();
        // A budget that runs out gives the error back.
        let short = Retrying::new(Flaky::new(1000), Duration::from_millis(200));
        assert!(short.stat(&key("a")).is_err());
    }

    #[test]
    fn a_limit_caps_the_calls_under_way() {
        let s = Limited::new(Flaky::new(0), 2);
        std::thread::scope(|scope| {
            for i in 0..8 {
                let s = &s;
                scope.spawn(move || s.put(&key(&format!("k{i}")), b"x", Cond::Any).unwrap());
            }
        });
        assert_eq!(s.list_all("").unwrap().len(), 8);
        let most = s.inner.most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} calls ran at once");
    }
}
