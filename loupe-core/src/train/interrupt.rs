//! Stopping a training run cleanly from outside.
//!
//! [`request_stop`] asks every run of the process to stop after its current step: the
//! run writes a checkpoint and returns [`RunError::Interrupted`](super::run::RunError),
//! from which `--resume` continues exactly. The `loupe` command line calls it on the
//! first SIGINT (Ctrl-C) or SIGTERM and exits at once on a second one; a library user
//! can call it from any thread (a signal handler of their own, a GUI button).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

/// The exit code of `loupe train` stopped by a signal (the shell's code for SIGINT).
pub const INTERRUPTED_EXIT_CODE: i32 = 130;

fn flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Asks running training loops to stop after their current step.
pub fn request_stop() {
    flag().store(true, Ordering::SeqCst);
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    flag().load(Ordering::SeqCst)
}

/// Withdraws a stop request (before starting another run in the same process).
pub fn clear_stop() {
    flag().store(false, Ordering::SeqCst);
}

/// The flag itself, for signal handlers that set an `AtomicBool` (signal-hook's
/// `flag::register`).
pub fn stop_flag() -> Arc<AtomicBool> {
    Arc::clone(flag())
}
