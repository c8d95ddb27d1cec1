//! What the benchmark binaries share: finding the binaries they run, and medians.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// `given`, or the binary `name` next to the running benchmark; an error saying how to build
/// it (`cargo build --release -p PACKAGE`) when it is not there.
pub fn sibling_binary(given: Option<PathBuf>, name: &str, package: &str) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no parent directory")?
            .join(name),
    };
    if !path.exists() {
        bail!(
            "{} not found; build it with cargo build --release -p {package}",
            path.display()
        );
    }
    Ok(path)
}

/// The middle value (the upper one of an even count); sorts `v`.
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}
