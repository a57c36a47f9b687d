//! Progress on stderr while the bench runs: one line per step with the
//! elapsed time and what is being measured.

use std::time::Instant;

pub struct Progress {
    start: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            start: Instant::now(),
        }
    }
}

impl Progress {
    pub fn step(&self, what: &str) {
        eprintln!("[{:6.1}s] {what}", self.start.elapsed().as_secs_f64());
    }

    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}
