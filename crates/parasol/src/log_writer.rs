//! Where the server's log lines go: stderr, in as few writes as the load
//! allows.
//!
//! The request log writes one line per request, and each line was its own
//! `write` system call, about a tenth of the whole cost of a small cached
//! answer (BENCHMARKS.md, issue 18). Here lines are written the way a
//! database commits a group: a thread with a line to log writes it itself
//! when no other is writing; while one is, the others append their lines
//! to a shared batch and go on, and the writing thread, once done, writes
//! everything gathered meanwhile in one call, until nothing is left. An
//! idle server therefore writes each line before the logging call returns
//! (a request's line is on stderr before its answer is sent), a busy one
//! writes many lines per call, and nothing waits on a timer or a thread of
//! its own. No line is dropped: past [`MAX_PENDING`] gathered bytes, a
//! logger writes its own line, waiting for stderr like a direct write.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Bytes gathered before loggers stop appending and wait for stderr
/// themselves (bounded memory when stderr is slow, e.g. a stalled pipe).
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// Where batches go: one call per batch, the whole batch at once.
type Output = Arc<dyn Fn(&[u8]) + Send + Sync>;

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// A thread is writing, and will write `bytes` before it stops.
    writing: bool,
}

/// A [`tracing_subscriber::fmt::MakeWriter`] over a stream (stderr for the
/// server) that writes concurrent lines in batches. Cheap to clone.
#[derive(Clone)]
pub struct LogWriter {
    batch: Arc<Mutex<Batch>>,
    out: Output,
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
        Self {
            batch: Arc::default(),
            out: Arc::new(out),
        }
    }

    /// Waits until every line logged so far has been written (before the
    /// process exits).
    pub fn flush(&self) {
        while self.batch.lock().expect("poisoned").writing {
            std::thread::yield_now();
        }
    }

    /// Writes one whole line (or gathers it into the batch being written).
    pub fn write_line(&self, line: &[u8]) {
        {
            let mut b = self.batch.lock().expect("poisoned");
            if b.writing {
                if b.bytes.len() < MAX_PENDING {
                    b.bytes.extend_from_slice(line);
                    return;
                }
                // Too much gathered: wait for stderr like a direct write.
                drop(b);
                (self.out)(line);
                return;
            }
            b.writing = true;
        }
        (self.out)(line);
        let mut batch = Vec::new();
        loop {
            {
                let mut b = self.batch.lock().expect("poisoned");
                if b.bytes.is_empty() {
                    b.writing = false;
                    return;
                }
                std::mem::swap(&mut b.bytes, &mut batch);
            }
            (self.out)(&batch);
            batch.clear();
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
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
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
