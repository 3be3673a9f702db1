//! The terminal progress bar: bytes, files, rate, ETA. Drawn on stderr only
//! when stderr is a terminal; otherwise nothing is drawn.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use strata_engine::Progress;

pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    pub fn start(progress: Arc<Progress>, verb: &'static str) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Bar { stop, thread: None };
        }
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            let objects = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} objects {msg} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_prefix(verb);
            while !flag.load(Ordering::Relaxed) {
                let s = progress.snapshot();
                if s.bytes_total == 0 && s.files_total > 0 {
                    // Counted in objects (a rebuild reads trailers and layers).
                    bar.set_style(objects.clone());
                    bar.set_length(s.files_total.max(s.files_done));
                    bar.set_position(s.files_done);
                    bar.set_message(format!("{} read", indicatif::HumanBytes(s.bytes_done)));
                } else {
                    bar.set_length(s.bytes_total.max(s.bytes_done));
                    bar.set_position(s.bytes_done);
                    bar.set_message(format!("{} files", s.files_done));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
        });
        Bar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
