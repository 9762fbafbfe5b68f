//! Log capture for tests that check what is logged, and at which level.
//!
//! One global subscriber (installed once) writes each event into the buffer
//! of the thread that logged it, if that thread is capturing. A scoped
//! subscriber per test (`set_default`) is not enough: tests on other
//! threads register callsites while no subscriber wants them, tracing caches
//! that "never", and a capturing test then misses lines from callsites it
//! shares with them (seen as a flaky `a_member_removed_logs_…` test).

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};

type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static CAPTURE: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

/// Captures the events logged on this thread (as text, one line each) while
/// it lives.
pub(crate) struct LogCapture {
    buf: Buffer,
}

/// Writes into the current thread's capture buffer, if any.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(target) = &*capture.borrow() {
                target
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Starts capturing (DEBUG and up) on this thread.
    pub(crate) fn start() -> Self {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .with_max_level(tracing::Level::DEBUG)
                .finish();
            // Only this module installs a global subscriber in the lib tests.
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        let buf = Buffer::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(buf.clone()));
        Self { buf }
    }

    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|capture| *capture.borrow_mut() = None);
    }
}
