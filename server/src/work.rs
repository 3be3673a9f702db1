//! Long work (backups, restores, deletes) on a bounded pool of threads.
//!
//! A request hands its work to the pool and waits only until the work has
//! recorded its new status in the catalog (the engine says so through
//! [`Progress::set_on_recorded`]), or has been refused before that: then
//! the answer is a 202, or the refusal. The work goes on after the answer.
//! On shutdown the pool takes no more work and waits a grace period for
//! what runs; what is left is what crash cleanup finishes on the next start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use strata_engine::{Error, Progress};

type Job = Box<dyn FnOnce() + Send>;

/// How a piece of work began.
enum Began {
    /// Its status is recorded; it goes on.
    Recorded,
    /// Refused, or failed, before anything was recorded.
    Failed(Error),
}

pub struct Pool {
    jobs: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    running: Arc<AtomicUsize>,
}

impl Pool {
    pub fn new(workers: usize) -> Pool {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        let running = Arc::new(AtomicUsize::new(0));
        let threads = (0..workers.max(1))
            .map(|n| {
                let rx = rx.clone();
                let running = Arc::clone(&running);
                std::thread::Builder::new()
                    .name(format!("strata-work-{n}"))
                    .spawn(move || {
                        for job in rx {
                            running.fetch_add(1, Ordering::SeqCst);
                            // A panic ends that job (its request hears of
                            // it), never the worker.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            running.fetch_sub(1, Ordering::SeqCst);
                        }
                    })
            })
            .filter_map(Result::ok)
            .collect();
        Pool {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            running,
        }
    }

    /// Runs `work` on the pool and blocks until it has recorded its status
    /// (`Ok`) or failed before that (`Err`). Call from a blocking context.
    pub fn start(
        &self,
        work: impl FnOnce(&Progress) -> Result<(), Error> + Send + 'static,
    ) -> Result<(), Error> {
        let (tx, rx) = crossbeam_channel::bounded::<Began>(2);
        let progress = Progress::default();
        let recorded = tx.clone();
        progress.set_on_recorded(Box::new(move || {
            let _ = recorded.send(Began::Recorded);
        }));
        let job: Job = Box::new(move || {
            if let Err(e) = work(&progress) {
                // Ignored once the request has its answer.
                let _ = tx.send(Began::Failed(e));
            }
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.as_ref().map(|j| j.send(job).is_ok()),
            Err(_) => None,
        };
        if sent != Some(true) {
            return Err(Error::Busy("the server is shutting down".into()));
        }
        match rx.recv() {
            Ok(Began::Recorded) => Ok(()),
            Ok(Began::Failed(e)) => Err(e),
            // Finished without a word: nothing was recorded, nothing failed
            // (a no-op), or the work panicked.
            Err(_) => Err(Error::Bug(
                "the work ended without recording anything".into(),
            )),
        }
    }

    /// Takes no more work, then waits up to `grace` for what runs (and is
    /// queued) to finish. Returns how many were still running.
    pub fn shutdown(&self, grace: Duration) -> usize {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let deadline = Instant::now() + grace;
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let left = self.running.load(Ordering::SeqCst);
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
        }
        left
    }
}
