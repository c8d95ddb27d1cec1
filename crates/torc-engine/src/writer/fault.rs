//! Debug builds only: a writer that panics on purpose, so that tests can check what a server
//! does when its writer dies. `TORC_DEBUG_WRITER_PANIC_AT=N` makes the writer panic while it
//! handles its N-th request. Release builds compile none of this: no client and no setting can
//! make a production writer panic.

/// The variable that arms the fault.
pub(crate) const PANIC_AT_VAR: &str = "TORC_DEBUG_WRITER_PANIC_AT";

#[derive(Debug, Default)]
pub(super) struct Fault {
    panic_at: Option<u64>,
    handled: u64,
}

impl Fault {
    pub(super) fn from_env() -> Fault {
        Fault {
            panic_at: std::env::var(PANIC_AT_VAR)
                .ok()
                .and_then(|v| v.parse().ok()),
            handled: 0,
        }
    }

    /// Counts a request; panics at the armed one.
    pub(super) fn count_request(&mut self) {
        self.handled += 1;
        if self.panic_at == Some(self.handled) {
            panic!(
                "{PANIC_AT_VAR}={}: the writer panics on purpose",
                self.handled
            );
        }
    }
}
