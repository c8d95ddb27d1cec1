//! Job output: each stream a job writes reaches its file through a pipe, and the file is made
//! at the stream's first byte.
//!
//! A job that writes nothing leaves no file. That spares an inode per stream and job: on shared
//! HPC file systems inodes are under quota, and a million jobs would otherwise leave two million
//! empty files; on ext4 without a journal, creating a file right after many were deleted scans
//! the freed inodes, which made creating the `.o`/`.e` files a tenth of the machine's CPU on a
//! workload that deletes its own intermediate files.
//!
//! The copying runs on a thread of its own (`torc-output`), so a slow output file system stalls
//! only the jobs whose pipes fill, never the runner's claims and reports. When a job's leader
//! exits, the runner copies what its pipes still hold before it reports the job ([`Stream::drain`]):
//! everything the job wrote is in its file when its completion is sent. Processes the job left
//! running keep their output flowing until they close it or the runner ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::warn;

/// Bytes copied per read: what a default pipe holds.
const CHUNK: usize = 64 * 1024;

/// How long a job's pipes wait before the output thread watches them (see [`Relays::watch`]).
pub(crate) const WATCH_AFTER: Duration = Duration::from_millis(2);

/// Reads per turn: 1 MiB, the most a pipe can be made to hold without privileges, so one turn
/// empties a pipe whose writers have gone; a writer that never pauses cannot hold the sink (and
/// with it the runner, draining at an exit) for longer than that.
const READS_PER_TURN: usize = 16;

/// Where a turn of copying left the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// Every writer closed it and it is empty.
    Closed,
    /// Empty for now.
    Empty,
    /// The turn ended with bytes still coming.
    More,
}

/// The thread that copies job output into files; dropping it stops the copying (after the
/// run, when every job's exit has been drained).
pub(crate) struct Relays {
    handle: tokio::runtime::Handle,
    pending: Mutex<Waiting>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Relays {
    pub(crate) fn start() -> io::Result<Relays> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("torc-output".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Relays {
            handle,
            pending: Mutex::default(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A pipe whose write end is for the job's stdout or stderr (or both), and whose contents
    /// go to `path`: created at the first byte (truncated, or appended to with `append`).
    /// Nothing copies it until it is given to [`Relays::watch`] (or drained).
    pub(crate) fn stream(&self, path: &Path, append: bool) -> io::Result<(OwnedFd, Stream)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just made and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Only the runner's end is non-blocking: the job's writes block while its pipe is full.
        // SAFETY: fcntl on a descriptor this process owns; it only changes its flags.
        unsafe {
            let fd = read.as_raw_fd();
            if libc::fcntl(
                fd,
                libc::F_SETFL,
                libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let sink = Arc::new(Mutex::new(Sink {
            fd: read,
            path: path.to_path_buf(),
            append,
            file: None,
            eof: false,
            discard: false,
            fault: None,
        }));
        Ok((write, Stream(sink)))
    }

    /// Has `streams` (a job's, made by [`Relays::stream`]) copied on the output thread from
    /// [`WATCH_AFTER`] on: the event loop hands what waits to the thread in one go
    /// ([`Relays::flush`]). A job that is over by then was drained at its exit and never costs
    /// the thread a wake-up; one that writes more than its pipes hold waits that long at most.
    pub(crate) fn watch(&self, streams: &[Stream]) {
        if streams.is_empty() {
            return;
        }
        let mut pending = lock(&self.pending);
        pending
            .sinks
            .extend(streams.iter().map(|s| Arc::clone(&s.0)));
        pending.since.get_or_insert_with(Instant::now);
    }

    /// When the streams waiting are due on the output thread, if any wait.
    pub(crate) fn due(&self) -> Option<Instant> {
        lock(&self.pending).since.map(|since| since + WATCH_AFTER)
    }

    /// Hands the waiting streams to the output thread once the oldest is due (all of them, in
    /// one task: one wake-up), leaving out those drained to their end already.
    pub(crate) fn flush(&self, now: Instant) {
        let sinks = {
            let mut pending = lock(&self.pending);
            if pending.since.is_none_or(|since| now < since + WATCH_AFTER) {
                return;
            }
            pending.since = None;
            std::mem::take(&mut pending.sinks)
        };
        let open: Vec<_> = sinks.into_iter().filter(|s| !lock(s).eof).collect();
        if open.is_empty() {
            return;
        }
        self.handle.spawn(async move {
            for sink in open {
                tokio::spawn(pump(sink));
            }
        });
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Streams given to [`Relays::watch`] and not handed to the thread yet, and since when the
/// oldest has waited.
#[derive(Default)]
struct Waiting {
    sinks: Vec<Arc<Mutex<Sink>>>,
    since: Option<Instant>,
}

/// The runner's handle on one stream of a job.
pub(crate) struct Stream(Arc<Mutex<Sink>>);

impl Stream {
    /// Copies what the pipe holds now into the file (one turn: a pipe's worth). After the job's
    /// leader exited, this is everything it wrote that was not copied yet.
    pub(crate) fn drain(&self) {
        lock(&self.0).drain();
    }

    /// Drops whatever comes later (the job's files were removed on its success).
    pub(crate) fn discard(&self) {
        let mut sink = lock(&self.0);
        sink.discard = true;
        sink.file = None;
    }

    /// Why some of the output could not be written, if it could not.
    pub(crate) fn fault(&self) -> Option<String> {
        lock(&self.0).fault.clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while copying leaves a sink as consistent as the bytes it had copied, and the
    // waiting list as it was.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Sink {
    /// The pipe's read end, non-blocking.
    fd: OwnedFd,
    path: PathBuf,
    append: bool,
    file: Option<File>,
    /// Every writer has closed the pipe.
    eof: bool,
    discard: bool,
    fault: Option<String>,
}

impl Sink {
    /// Copies until the pipe is empty or closed, for at most [`READS_PER_TURN`] reads.
    fn drain(&mut self) -> Left {
        let mut buf = [0u8; CHUNK];
        for _ in 0..READS_PER_TURN {
            if self.eof {
                return Left::Closed;
            }
            // SAFETY: read into a buffer of the length given, from a descriptor this sink owns.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), CHUNK) };
            match n {
                0 => {
                    self.eof = true;
                    self.file = None;
                }
                n if n > 0 => self.write(&buf[..n as usize]),
                _ => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => return Left::Empty,
                        io::ErrorKind::Interrupted => {}
                        _ => {
                            self.failed(format!("cannot read the job's output: {e}"));
                            self.eof = true;
                        }
                    }
                }
            }
        }
        if self.eof {
            Left::Closed
        } else {
            Left::More
        }
    }

    fn write(&mut self, data: &[u8]) {
        if self.discard || self.fault.is_some() {
            return;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                let opened = if self.append {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)
                } else {
                    File::create(&self.path)
                };
                match opened {
                    Ok(file) => self.file.insert(file),
                    Err(e) => {
                        let why = crate::process::output_cause(&e);
                        self.failed(format!(
                            "cannot create its output file {}: {why}",
                            self.path.display()
                        ));
                        return;
                    }
                }
            }
        };
        if let Err(e) = file.write_all(data) {
            let why = crate::process::output_cause(&e);
            self.failed(format!(
                "cannot write its output file {}: {why}",
                self.path.display()
            ));
        }
    }

    /// Records the first fault; what follows is read and dropped, so the job never blocks on
    /// a pipe nobody empties.
    fn failed(&mut self, message: String) {
        warn!("{message}");
        self.file = None;
        self.fault.get_or_insert(message);
    }
}

/// The pipe's read end as the reactor sees it: it holds the sink, which owns the descriptor, so
/// the descriptor stays open as long as it is registered.
struct ReadEnd {
    sink: Arc<Mutex<Sink>>,
    fd: RawFd,
}

impl AsRawFd for ReadEnd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

/// Copies the pipe's contents whenever it is readable, until every writer closed it.
async fn pump(sink: Arc<Mutex<Sink>>) {
    let fd = lock(&sink).fd.as_raw_fd();
    let end = ReadEnd { sink, fd };
    // SAFETY: `end` owns a reference to the sink that owns the open descriptor `fd`, which the
    // sink never closes or replaces while it lives; `as_raw_fd` always returns that `fd`.
    let ready = match unsafe { AsyncFd::register_with_interest(end, Interest::READABLE) } {
        Ok(ready) => ready,
        Err(e) => {
            let (end, cause) = e.into_parts();
            // Then only the drain at the job's exit reads it: a job that writes more than its
            // pipe holds waits until it is stopped. Registration fails only without memory.
            lock(&end.sink).failed(format!("cannot watch the job's output pipe: {cause}"));
            return;
        }
    };
    loop {
        let Ok(mut guard) = ready.readable().await else {
            return;
        };
        let left = lock(&guard.get_inner().sink).drain();
        match left {
            Left::Closed => return,
            Left::Empty => guard.clear_ready(),
            // Still readable: the next turn comes after the other pipes have had theirs.
            Left::More => {
                drop(guard);
                tokio::task::yield_now().await;
            }
        }
    }
}
