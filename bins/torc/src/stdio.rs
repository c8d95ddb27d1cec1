//! Job output files as the runner writes them: `<output_dir>/job_stdio/job_wf<W>_j<J>_r<R>_a<A>.o`
//! (stdout) and `.e` (stderr), one pair per attempt; one `.log` with both under the `combined`
//! stdio mode, one of the two or none under the others.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use torc_core::model::StdioMode;
use torc_core::{JobId, WorkflowId};

/// Which of a job's two output files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The directory that holds the output files under `output_dir`.
pub fn dir(output_dir: &Path) -> PathBuf {
    output_dir.join("job_stdio")
}

/// One attempt's output file in `stdio_dir`.
pub fn file(
    stdio_dir: &Path,
    workflow: WorkflowId,
    job: JobId,
    run_id: u32,
    attempt_id: u32,
    stream: Stream,
) -> PathBuf {
    let ext = match stream {
        Stream::Stdout => "o",
        Stream::Stderr => "e",
    };
    stdio_dir.join(format!(
        "job_wf{workflow}_j{job}_r{run_id}_a{attempt_id}.{ext}"
    ))
}

/// Where one stream of an attempt was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// In its own file (which may not be here).
    Own(PathBuf),
    /// With the other stream, in the attempt's `.log`.
    Combined(PathBuf),
    /// Nowhere: the job's stdio mode discards it.
    Discarded(StdioMode),
}

impl Kept {
    pub fn path(&self) -> Option<&Path> {
        match self {
            Kept::Own(p) | Kept::Combined(p) => Some(p),
            Kept::Discarded(_) => None,
        }
    }
}

/// Where `stream` of an attempt is, by the job's stdio `mode`; with the mode unknown (over a
/// server's API), by which file exists: its own, else the combined `.log`.
pub fn locate(own: PathBuf, stream: Stream, mode: Option<StdioMode>) -> Kept {
    let log = own.with_extension("log");
    match (mode, stream) {
        (Some(StdioMode::Combined), _) => Kept::Combined(log),
        (Some(m @ StdioMode::None), _)
        | (Some(m @ StdioMode::NoStdout), Stream::Stdout)
        | (Some(m @ StdioMode::NoStderr), Stream::Stderr) => Kept::Discarded(m),
        (Some(_), _) => Kept::Own(own),
        (None, _) if !own.exists() && log.exists() => Kept::Combined(log),
        (None, _) => Kept::Own(own),
    }
}

/// The last `n` lines of a file, reading at most its last 64 KiB; `None` if it cannot be read.
pub fn tail(path: &Path, n: usize) -> Option<Vec<String>> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        lines.remove(0); // the first line read was cut in the middle
    }
    let skip = lines.len().saturating_sub(n);
    Some(lines[skip..].iter().map(|l| l.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_documented_layout() {
        let d = dir(Path::new("/out"));
        assert_eq!(
            file(&d, WorkflowId(3), JobId(7), 1, 2, Stream::Stdout),
            PathBuf::from("/out/job_stdio/job_wf3_j7_r1_a2.o")
        );
        assert_eq!(
            file(&d, WorkflowId(3), JobId(7), 1, 2, Stream::Stderr),
            PathBuf::from("/out/job_stdio/job_wf3_j7_r1_a2.e")
        );
    }

    #[test]
    fn streams_are_found_by_mode_or_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("job_wf1_j1_r1_a1.e");
        let log = dir.path().join("job_wf1_j1_r1_a1.log");
        let err = Stream::Stderr;
        assert_eq!(
            locate(own.clone(), err, Some(StdioMode::Combined)),
            Kept::Combined(log.clone())
        );
        assert_eq!(
            locate(own.clone(), err, Some(StdioMode::NoStderr)),
            Kept::Discarded(StdioMode::NoStderr)
        );
        assert_eq!(
            locate(own.clone(), Stream::Stdout, Some(StdioMode::NoStderr)),
            Kept::Own(own.clone())
        );
        assert_eq!(
            locate(own.clone(), err, Some(StdioMode::None)),
            Kept::Discarded(StdioMode::None)
        );
        assert_eq!(locate(own.clone(), err, None), Kept::Own(own.clone()));
        std::fs::write(&log, "both\n").unwrap();
        assert_eq!(locate(own.clone(), err, None), Kept::Combined(log));
        std::fs::write(&own, "err\n").unwrap();
        assert_eq!(locate(own.clone(), err, None), Kept::Own(own));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&p, 2).unwrap(), ["c", "d"]);
        assert_eq!(tail(&p, 10).unwrap(), ["a", "b", "c", "d"]);
        assert!(tail(&dir.path().join("missing"), 2).is_none());
        let long = "x".repeat(70 * 1024) + "\nlast\n";
        std::fs::write(&p, long).unwrap();
        assert_eq!(tail(&p, 5).unwrap(), ["last"]);
    }
}
