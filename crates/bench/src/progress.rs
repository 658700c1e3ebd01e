//! A progress bar on stderr in the style of the pb bars etcd's tool draws
//! (`N / N Booooo   ! 42.00% 1s`), redrawn a few times a second, so stdout keeps only
//! the report.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WIDTH: u64 = 60;

/// Set by `compare`, which prints one line per scenario instead of bars.
static HIDDEN: AtomicBool = AtomicBool::new(false);

/// From now on bars count but never draw.
pub fn hide_all() {
    HIDDEN.store(true, Ordering::Relaxed);
}

struct Inner {
    total: u64,
    done: AtomicU64,
    stop: AtomicBool,
    began: Instant,
    /// Held while drawing, so no periodic redraw follows the final line.
    drawing: Mutex<()>,
}

/// A running progress bar; `inc` from any task, `finish` once.
#[derive(Clone)]
pub struct Bar {
    inner: Arc<Inner>,
}

impl Bar {
    pub fn start(total: u64) -> Bar {
        let hidden = HIDDEN.load(Ordering::Relaxed);
        let inner = Arc::new(Inner {
            total,
            done: AtomicU64::new(0),
            // A hidden bar is stopped from the start: `finish` draws nothing.
            stop: AtomicBool::new(hidden),
            began: Instant::now(),
            drawing: Mutex::new(()),
        });
        let bar = Bar { inner };
        if hidden {
            return bar;
        }
        let drawer = bar.clone();
        tokio::spawn(async move {
            while !drawer.inner.stop.load(Ordering::Relaxed) {
                drawer.draw(false);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        bar
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.inner.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Draws the final state and ends the line.
    pub fn finish(&self) {
        if self.inner.stop.swap(true, Ordering::Relaxed) {
            return;
        }
        self.draw(true);
    }

    fn draw(&self, last: bool) {
        let _held = self.inner.drawing.lock().unwrap();
        if !last && self.inner.stop.load(Ordering::Relaxed) {
            return;
        }
        let line = render(
            self.inner.done.load(Ordering::Relaxed),
            self.inner.total,
            self.inner.began.elapsed(),
        );
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}");
        if last {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// One line of the bar.
pub fn render(done: u64, total: u64, elapsed: Duration) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (frac * WIDTH as f64) as u64;
    let bar: String = (0..WIDTH)
        .map(|i| if i < filled { 'o' } else { ' ' })
        .collect();
    let width = total.to_string().len();
    format!(
        "{done:>width$} / {total} B{bar}! {:.2}% {}s",
        frac * 100.0,
        elapsed.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_line() {
        let l = render(5, 10, Duration::from_secs(2));
        assert!(l.starts_with(" 5 / 10 Boooo"), "{l}");
        assert!(l.ends_with("! 50.00% 2s"), "{l}");
        let l = render(10, 10, Duration::from_millis(300));
        assert!(
            l.ends_with(&format!("{}! 100.00% 0s", "o".repeat(60))),
            "{l}"
        );
    }
}
