//! Keeping a runner's bearer token away from its jobs.
//!
//! Jobs run as the runner's Unix user, so anything the runner exposes through `/proc` they can
//! read: `/proc/<runner>/environ` is the environment the process was *started* with (removing a
//! variable later does not change it), and `/proc/<runner>/cmdline` is readable by every user.
//! [`seal_token`], called first in `main` while the process has one thread, takes the token
//! from the environment or the command line and, when it was there, executes the program again
//! (same pid) without it, handing it over through an inherited pipe; and it makes the process
//! non-dumpable, which turns its `/proc` entries (`environ`, `mem`, `fd`, …) over to root and
//! refuses `ptrace` to processes of the same user. Jobs become dumpable again when they exec.
//!
//! What it cannot do: hide a token from root, from other processes of the same user that hold it
//! (the shell that exported it), or a token file the user can read.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Set only for the program executed again, naming the pipe the token comes through.
const HANDOVER_FD: &str = "TORC_TOKEN_HANDOVER_FD";
/// Larger than any token, smaller than the smallest pipe buffer (one page): the write of the
/// handover never blocks.
const MAX_TOKEN: usize = 4000;

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    Environment,
    /// On the command line: visible to every user of the machine (`ps`) until the program was
    /// executed again without it.
    CommandLine,
}

/// A token taken out of the process's environment and command line.
#[derive(Debug)]
pub struct SealedToken {
    pub token: String,
    pub origin: TokenOrigin,
    /// Executing the program again failed: the token is still in this process's initial
    /// environment or command line (the process is non-dumpable all the same).
    pub still_exposed: Option<io::Error>,
}

/// Why the token could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the token is not valid UTF-8")]
    NotUtf8,
    #[error("the token is longer than {MAX_TOKEN} bytes")]
    TooLong,
    #[error("cannot hand the token over to the program executed again: {0}")]
    Handover(io::Error),
}

/// Takes the token given as `flag VALUE` (or `flag=VALUE`) on the command line, or in the
/// environment variable `var`, and executes this program again without either; returns it in
/// the program executed again. Makes the process non-dumpable in any case.
///
/// Must be called before any thread is started (before the async runtime): it may replace the
/// process image, and it changes the environment.
pub fn seal_token(flag: &str, var: &str) -> Result<Option<SealedToken>, SealError> {
    make_undumpable();
    if let Some(fd) = std::env::var_os(HANDOVER_FD) {
        // Single-threaded still: nobody reads the environment concurrently.
        std::env::remove_var(HANDOVER_FD);
        return receive(&fd).map(Some);
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let (rest, from_args) = strip_flag(&args, flag);
    let from_env = std::env::var_os(var).filter(|t| !t.is_empty());
    let (token, origin) = match (from_args, from_env) {
        (Some(t), _) => (t, TokenOrigin::CommandLine),
        (None, Some(t)) => (t, TokenOrigin::Environment),
        (None, None) => return Ok(None),
    };
    let token = token.into_string().map_err(|_| SealError::NotUtf8)?;
    if token.len() > MAX_TOKEN {
        return Err(SealError::TooLong);
    }
    let read = hand_over(&token, origin).map_err(SealError::Handover)?;
    let mut cmd = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.first() {
        cmd.arg0(arg0);
    }
    cmd.args(rest.iter().skip(1))
        .env_remove(var)
        .env(HANDOVER_FD, raw(&read).to_string());
    let err = cmd.exec();
    // Still here: the exec failed. Go on with the token where it was.
    drop(read);
    Ok(Some(SealedToken {
        token,
        origin,
        still_exposed: Some(err),
    }))
}

/// Reads a token file: its first line, without surrounding white space.
pub fn read_token_file(path: &Path) -> io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "no token in it"));
    }
    Ok(token)
}

/// No core dumps, and `/proc/self/{environ,mem,…}` and `ptrace` for root only.
fn make_undumpable() {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes plain integers and has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

/// The arguments without `flag VALUE` and `flag=VALUE` (up to a `--`), and the last value.
fn strip_flag(args: &[OsString], flag: &str) -> (Vec<OsString>, Option<OsString>) {
    let with_eq = format!("{flag}=");
    let mut rest = Vec::with_capacity(args.len());
    let mut value = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            rest.push(a.clone());
            rest.extend(it.cloned());
            break;
        }
        if s == flag {
            match it.next() {
                Some(v) => value = Some(v.clone()),
                // A flag without its value: left for the argument parser to refuse.
                None => rest.push(a.clone()),
            }
        } else if let Some(v) = s.strip_prefix(&with_eq) {
            value = Some(OsStr::new(v).to_os_string());
        } else {
            rest.push(a.clone());
        }
    }
    (rest, value)
}

/// A pipe holding the origin and the token, its write end closed; its read end survives exec.
fn hand_over(token: &str, origin: TokenOrigin) -> io::Result<OwnedFd> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let tag = match origin {
        TokenOrigin::Environment => b'e',
        TokenOrigin::CommandLine => b'c',
    };
    let mut w = std::fs::File::from(write);
    w.write_all(&[tag])?;
    w.write_all(token.as_bytes())?;
    drop(w);
    Ok(read)
}

fn receive(fd: &OsStr) -> Result<SealedToken, SealError> {
    let bad = || SealError::Handover(io::Error::other("bad handover descriptor"));
    let fd: i32 = fd.to_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if fd < 3 {
        return Err(bad());
    }
    // SAFETY: the descriptor was left open across exec for this process alone, and is read and
    // closed here once.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_TOKEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(SealError::Handover)?;
    let (origin, token) = match bytes.split_first() {
        Some((b'e', t)) => (TokenOrigin::Environment, t),
        Some((b'c', t)) => (TokenOrigin::CommandLine, t),
        _ => return Err(bad()),
    };
    let token = String::from_utf8(token.to_vec()).map_err(|_| SealError::NotUtf8)?;
    Ok(SealedToken {
        token,
        origin,
        still_exposed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_flag_and_its_value_are_taken_out() {
        let (rest, v) = strip_flag(&os(&["r", "--url", "u", "--token", "t1", "-x"]), "--token");
        assert_eq!(rest, os(&["r", "--url", "u", "-x"]));
        assert_eq!(v, Some("t1".into()));
        let (rest, v) = strip_flag(&os(&["r", "--token=a", "--token", "b"]), "--token");
        assert_eq!(rest, os(&["r"]));
        assert_eq!(v, Some("b".into()), "the last one, as the parser takes");
        let (rest, v) = strip_flag(&os(&["r", "--", "--token", "x"]), "--token");
        assert_eq!(rest, os(&["r", "--", "--token", "x"]), "not after --");
        assert_eq!(v, None);
        let (rest, v) = strip_flag(&os(&["r", "--token"]), "--token");
        assert_eq!((rest, v), (os(&["r", "--token"]), None));
        let (rest, v) = strip_flag(&os(&["r", "--tokens", "x"]), "--token");
        assert_eq!((rest, v), (os(&["r", "--tokens", "x"]), None));
    }

    #[test]
    fn a_handover_carries_the_token_and_its_origin() {
        let read = hand_over("sekrit", TokenOrigin::CommandLine).unwrap();
        let fd = std::os::fd::IntoRawFd::into_raw_fd(read);
        let got = receive(OsStr::new(&fd.to_string())).unwrap();
        assert_eq!(got.token, "sekrit");
        assert_eq!(got.origin, TokenOrigin::CommandLine);
        assert!(matches!(
            receive(OsStr::new("1")),
            Err(SealError::Handover(_))
        ));
    }
}
