//! Long work (backups, restores, deletes), at most `workers` running at once.
//!
//! Each piece of work gets a thread of its own and goes as far as recording
//! its new status in the catalog (the engine says so through
//! [`Progress::set_on_recorded`]): then its request is answered (202), and
//! the work waits there for one of the `workers` slots before it does the
//! heavy part. So a request never waits for other work to finish, while no
//! more than `workers` operations read or write data at once. Work that is
//! refused before it records anything answers with the refusal. At most
//! [`MAX_PENDING`] operations may be admitted and not finished; past that a
//! request is refused as busy. On shutdown no more work is taken and what
//! runs gets a grace period; what is left is what crash cleanup finishes on
//! the next start.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use strata_engine::{Error, Progress};

/// Operations admitted and not yet finished, at most.
pub const MAX_PENDING: usize = 256;

/// How a piece of work began.
enum Began {
    /// Its status is recorded; it goes on.
    Recorded,
    /// Refused, or failed, before anything was recorded.
    Failed(Error),
}

/// Counting slots for the heavy part of the work.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn take(&self) {
        let Ok(mut free) = self.free.lock() else {
            return;
        };
        while *free == 0 {
            free = match self.freed.wait(free) {
                Ok(f) => f,
                Err(_) => return,
            };
        }
        *free -= 1;
    }

    fn give(&self) {
        if let Ok(mut free) = self.free.lock() {
            *free += 1;
            self.freed.notify_one();
        }
    }
}

pub struct Pool {
    slots: Arc<Slots>,
    /// Operations admitted and not finished (threads alive).
    pending: Arc<AtomicUsize>,
    closed: AtomicBool,
}

impl Pool {
    pub fn new(workers: usize) -> Pool {
        Pool {
            slots: Arc::new(Slots {
                free: Mutex::new(workers.max(1)),
                freed: Condvar::new(),
            }),
            pending: Arc::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
        }
    }

    /// Starts `work` and blocks until it has recorded its status (`Ok`) or
    /// failed before that (`Err`). Call from a blocking context.
    pub fn start(
        &self,
        work: impl FnOnce(&Progress) -> Result<(), Error> + Send + 'static,
    ) -> Result<(), Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Busy("the server is shutting down".into()));
        }
        if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Busy(format!(
                "{MAX_PENDING} operations are already admitted on this server; retry later"
            )));
        }
        let (tx, rx) = crossbeam_channel::bounded::<Began>(2);
        let slots = Arc::clone(&self.slots);
        let pending = Arc::clone(&self.pending);
        let spawned = std::thread::Builder::new()
            .name("strata-work".into())
            .spawn(move || {
                let holding = Arc::new(AtomicBool::new(false));
                let progress = Progress::default();
                let (recorded, held, wait_for) =
                    (tx.clone(), Arc::clone(&holding), Arc::clone(&slots));
                progress.set_on_recorded(Box::new(move || {
                    let _ = recorded.send(Began::Recorded);
                    // The request has its answer; the heavy part waits its turn.
                    wait_for.take();
                    held.store(true, Ordering::SeqCst);
                }));
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&progress)));
                match outcome {
                    // Ignored once the request has its answer.
                    Ok(Err(e)) => {
                        let _ = tx.send(Began::Failed(e));
                    }
                    Ok(Ok(())) => {}
                    Err(_) => {
                        let _ = tx.send(Began::Failed(Error::Bug("the operation panicked".into())));
                    }
                }
                if holding.load(Ordering::SeqCst) {
                    slots.give();
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Busy(format!("cannot start the operation: {e}")));
        }
        match rx.recv() {
            Ok(Began::Recorded) => Ok(()),
            Ok(Began::Failed(e)) => Err(e),
            // Finished without a word: nothing was recorded, nothing failed.
            Err(_) => Err(Error::Bug(
                "the work ended without recording anything".into(),
            )),
        }
    }

    /// Takes no more work, then waits up to `grace` for what was admitted to
    /// finish. Returns how many were still unfinished.
    pub fn shutdown(&self, grace: Duration) -> usize {
        self.closed.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.pending.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.pending.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With one slot, a second piece of work is answered while the first
    /// still runs, and runs only after it.
    #[test]
    fn answers_before_running_and_runs_one_at_a_time() {
        let pool = Pool::new(1);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        // Every piece of work blocks until the gate opens: that all three
        // are answered while it is shut proves they are answered first.
        let (gate, shut) = crossbeam_channel::bounded::<()>(0);
        for _ in 0..3 {
            let (running, most, ran) = (Arc::clone(&running), Arc::clone(&most), Arc::clone(&ran));
            let shut = shut.clone();
            let answered = pool.start(move |p| {
                p.recorded();
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = shut.recv();
                ran.fetch_add(1, Ordering::SeqCst);
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            });
            assert!(answered.is_ok());
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "answered before any ran");
        drop(gate);
        assert_eq!(pool.shutdown(Duration::from_secs(60)), 0);
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        assert_eq!(most.load(Ordering::SeqCst), 1, "one at a time");
        let refused = pool.start(|_| Ok(()));
        assert!(matches!(refused, Err(Error::Busy(_))));
    }

    #[test]
    fn a_refusal_before_recording_is_the_answer() {
        let pool = Pool::new(1);
        let r = pool.start(|_| Err(Error::InvalidArgument("no".into())));
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
        let r = pool.start(|p| {
            p.recorded();
            Err(Error::Corrupt {
                location: "x".into(),
                detail: "after the answer".into(),
            })
        });
        assert!(
            r.is_ok(),
            "a failure after recording is the operation's, not the request's"
        );
        assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
    }
}
