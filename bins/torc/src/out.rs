//! Where the command line's output goes, and how colour is decided.
//!
//! Every line meant for stdout goes through [`outln!`], which returns the write error instead of
//! panicking as `println!` does. A closed pipe (`torc jobs list | head -n1`) surfaces as an
//! `io::Error` of kind `BrokenPipe` that travels up with `?` like any other error, and `main`
//! turns it into a quiet exit with status 0 ([`is_broken_pipe`]). This is preferred over
//! restoring `SIGPIPE`'s default action: a signal would kill `torc run` in the middle of a run,
//! before it could stop its jobs and record them, and the shell would see status 141.
//!
//! Diagnostics (progress, warnings, errors) go to stderr through [`errln!`], which drops write
//! errors: a reader that went away must not stop a run that is still going.
//!
//! Both streams are `anstream` streams: ANSI styles written to them reach a terminal and are
//! stripped for a pipe or a file, and when `NO_COLOR` is set (`CLICOLOR_FORCE` forces them).

use anstyle::{AnsiColor, Style};
use std::io::{self, Write};

/// Writes one line to stdout; a failed write (a closed pipe) is returned, never a panic.
pub fn line(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = anstream::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Writes to stderr, ignoring failures (nobody left to tell).
pub fn err(args: std::fmt::Arguments<'_>) {
    let mut err = anstream::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.flush();
}

/// `println!` that returns the error from the enclosing function (via `?`).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))?
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, outln};

/// Whether `e` (or anything in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Whether colour may be drawn on stderr (a terminal, and `NO_COLOR` unset).
pub fn stderr_colours() -> bool {
    anstream::stderr().current_choice() != anstream::ColorChoice::Never
}

/// `text` in the colour of a job state or outcome: red for failures, yellow for terminated and
/// canceled, green for completed, plain otherwise. The stream decides whether it is shown.
pub fn state(text: &str) -> String {
    let style = match text {
        "failed" | "pending_failed" => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
        "terminated" | "canceled" => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        "completed" | "complete" => Style::new().fg_color(Some(AnsiColor::Green.into())),
        _ => Style::new(),
    };
    format!("{style}{text}{style:#}")
}
