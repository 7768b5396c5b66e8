//! Ctrl-C and SIGTERM end the run between steps, so that every guard removes what the
//! benchmark made (the default action would kill the process before that). A second
//! one exits at once; the next run removes what is left (`netns::sweep_stale`).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

/// Fails once a stop was asked for.
pub fn check() -> anyhow::Result<()> {
    if STOP.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted; removing what the benchmark made");
    }
    Ok(())
}
