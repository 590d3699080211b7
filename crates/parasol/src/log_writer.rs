//! Where the server's log lines go: stderr, in as few writes as the load
//! allows.
//!
//! The request log writes one line per request, and each line was its own
//! `write` system call, about a tenth of the whole cost of a small cached
//! answer (BENCHMARKS.md, issue 18). Two things gather lines into fewer
//! writes:
//!
//! - Lines are written the way a database commits a group: a thread with a
//!   line to log writes it itself when no other is writing; while one is,
//!   the others append their lines to a shared batch and go on, and the
//!   writing thread, once done, writes everything gathered meanwhile in one
//!   call, until nothing is left.
//! - While requests are in flight ([`LogWriter::request_started`]), lines
//!   are held, for at most [`HOLD`] (a thread of the writer's own writes
//!   them then) or until [`HOLD_BYTES`] gather or the last request in
//!   flight logs its line, which writes everything held with it. So a busy
//!   server writes a batch every few milliseconds, and an idle one still
//!   writes each request's line before its answer is sent (the line is
//!   logged after the handler, before the answer goes out), as a test or
//!   an operator reading the log right after an answer expects.
//!
//! No line is dropped: past [`MAX_PENDING`] gathered bytes, a logger writes
//! its own line, waiting for stderr like a direct write. What a `SIGKILL`
//! can lose is what was held: at most [`HOLD`] of lines, and only lines
//! logged while requests were in flight. [`LogWriter::flush`] writes
//! everything before the process exits.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Bytes gathered before loggers stop appending and wait for stderr
/// themselves (bounded memory when stderr is slow, e.g. a stalled pipe).
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// The longest a line is held while requests are in flight.
pub const HOLD: Duration = Duration::from_millis(2);

/// Held bytes that are written at once rather than held longer.
pub const HOLD_BYTES: usize = 64 * 1024;

/// Where batches go: one call per batch, the whole batch at once.
type Output = Arc<dyn Fn(&[u8]) + Send + Sync>;

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// A thread is writing, and will write `bytes` before it stops.
    writing: bool,
    /// Lines are held, and the holding thread will write them within
    /// [`HOLD`].
    held: bool,
}

struct Shared {
    batch: Mutex<Batch>,
    /// Wakes the holding thread when lines start being held.
    hold: Condvar,
    out: Output,
    /// Requests started and not yet logged.
    in_flight: AtomicUsize,
}

/// A [`tracing_subscriber::fmt::MakeWriter`] over a stream (stderr for the
/// server) that writes concurrent lines in batches. Cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// A request in flight (see [`LogWriter::request_started`]); dropped when
/// its line is logged, or when the request is abandoned.
pub struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LogWriter {
    /// Lines to the process's stderr.
    pub fn stderr() -> Self {
        Self::to(|bytes| {
            // A failing stderr has nowhere to report to; the lines are lost
            // as they would be with a direct write.
            let _ = io::stderr().lock().write_all(bytes);
        })
    }

    fn to(out: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            batch: Mutex::default(),
            hold: Condvar::new(),
            out: Arc::new(out),
            in_flight: AtomicUsize::new(0),
        });
        let holder = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || holder.write_held())
            .expect("a thread for the log writer");
        Self { shared }
    }

    /// Counts a request as in flight until the returned guard is dropped:
    /// lines logged meanwhile are held (see the module's doc). Drop it
    /// before logging the request's own line.
    pub fn request_started(&self) -> InFlight {
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.shared.clone())
    }

    /// Writes every line logged so far, and waits until it is written
    /// (before the process exits).
    pub fn flush(&self) {
        loop {
            let b = self.shared.batch.lock().expect("poisoned");
            if !b.writing {
                if b.bytes.is_empty() {
                    return;
                }
                self.shared.write_all_from(b, Vec::new());
                continue;
            }
            drop(b);
            std::thread::yield_now();
        }
    }

    /// Writes one whole line (or several), as a logging call does.
    pub fn write_line(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut b = shared.batch.lock().expect("poisoned");
        if b.writing {
            if b.bytes.len() < MAX_PENDING {
                b.bytes.extend_from_slice(line);
                return;
            }
            // Too much gathered: wait for stderr like a direct write.
            drop(b);
            (shared.out)(line);
            return;
        }
        if shared.in_flight.load(Ordering::Acquire) > 0 && b.bytes.len() + line.len() <= HOLD_BYTES
        {
            b.bytes.extend_from_slice(line);
            if !b.held {
                b.held = true;
                shared.hold.notify_one();
            }
            return;
        }
        if b.bytes.is_empty() {
            // Nothing held: the line is written from where it is.
            b.writing = true;
            drop(b);
            (shared.out)(line);
            b = shared.batch.lock().expect("poisoned");
            b.writing = false;
            if b.bytes.is_empty() {
                return;
            }
        } else {
            b.bytes.extend_from_slice(line);
        }
        shared.write_all_from(b, Vec::new());
    }
}

impl Shared {
    /// Writes what is gathered in `b`, and what gathers meanwhile, until
    /// nothing is left; `spare` is a buffer to swap in.
    fn write_all_from<'a>(&'a self, mut b: MutexGuard<'a, Batch>, mut spare: Vec<u8>) {
        b.writing = true;
        loop {
            std::mem::swap(&mut b.bytes, &mut spare);
            drop(b);
            (self.out)(&spare);
            spare.clear();
            b = self.batch.lock().expect("poisoned");
            if b.bytes.is_empty() {
                b.writing = false;
                if b.bytes.capacity() < spare.capacity() {
                    // Keep the larger buffer for the next batch.
                    std::mem::swap(&mut b.bytes, &mut spare);
                }
                return;
            }
        }
    }

    /// The holding thread: once lines are held, waits [`HOLD`] and writes
    /// them (unless a logger has meanwhile).
    fn write_held(&self) {
        loop {
            let mut b = self.batch.lock().expect("poisoned");
            while !b.held {
                b = self.hold.wait(b).expect("poisoned");
            }
            drop(b);
            std::thread::sleep(HOLD);
            let mut b = self.batch.lock().expect("poisoned");
            b.held = false;
            if b.writing || b.bytes.is_empty() {
                // The writing thread writes them; or a logger already has.
                continue;
            }
            self.write_all_from(b, Vec::new());
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing's formatter hands over each event's whole line at once.
        self.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_order() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let calls = Arc::new(Mutex::new(0usize));
        let (w2, c2) = (written.clone(), calls.clone());
        let w = LogWriter::to(move |bytes| {
            // A slow stream, so lines gather while one is written.
            std::thread::sleep(std::time::Duration::from_micros(50));
            w2.lock().unwrap().extend_from_slice(bytes);
            *c2.lock().unwrap() += 1;
        });
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        // Half the threads log while requests are in
                        // flight, so some lines are held.
                        let request = (t % 2 == 0).then(|| w.request_started());
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                        drop(request);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        w.flush();
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let want: Vec<String> = (0..500).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, want, "thread {t}'s lines are whole and in order");
        }
        assert!(
            *calls.lock().unwrap() < 2000,
            "concurrent lines share writes"
        );
    }

    #[test]
    fn lines_are_held_while_requests_are_in_flight() {
        let calls = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let c2 = calls.clone();
        let mut w = LogWriter::to(move |bytes| c2.lock().unwrap().push(bytes.to_vec()));
        let a = w.request_started();
        let b = w.request_started();
        w.write_all(b"other\n").unwrap();
        drop(a);
        w.write_all(b"a\n").unwrap();
        assert!(
            calls.lock().unwrap().is_empty(),
            "held while b is in flight"
        );
        // The last request's line takes every held line with it, in one
        // write, before the logging call returns.
        drop(b);
        w.write_all(b"b\n").unwrap();
        assert_eq!(*calls.lock().unwrap(), vec![b"other\na\nb\n".to_vec()]);

        // A request that never logs holds lines for at most HOLD.
        let stuck = w.request_started();
        w.write_all(b"c\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while calls.lock().unwrap().len() < 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "held line never written"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(calls.lock().unwrap()[1], b"c\n");

        // Flushing writes what is held.
        w.write_all(b"d\n").unwrap();
        w.flush();
        assert_eq!(calls.lock().unwrap()[2], b"d\n");
        drop(stuck);
    }

    #[test]
    fn an_idle_writer_writes_the_line_before_returning() {
        let written = Arc::new(Mutex::new(Vec::<u8>::new()));
        let w2 = written.clone();
        let mut w = LogWriter::to(move |bytes| w2.lock().unwrap().extend_from_slice(bytes));
        w.write_all(b"one\n").unwrap();
        assert_eq!(&*written.lock().unwrap(), b"one\n");
        w.write_all(b"two\n").unwrap();
        assert_eq!(&*written.lock().unwrap(), b"one\ntwo\n");
    }
}
