//! The `torc-server` binary: it listens where it says, serves, and on SIGTERM stops gracefully
//! with everything acknowledged on disk.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use torc_core::spec::SpecFormat;
use torc_http::{HttpClient, Server, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_then_stops_on_sigterm_keeping_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("server.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_torc-server"))
        .arg("--database")
        .arg(format!("sqlite:{}", db.display()))
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("torc-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = HttpClient::new(&url).unwrap();
    let spec = "name: kept\njobs:\n  - name: a\n    command: \"true\"\n";
    let id = client
        .create_workflow(spec, SpecFormat::Yaml)
        .await
        .unwrap()
        .id;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // A new server over the same file has the workflow.
    let mut config = ServerConfig::new(db.display().to_string());
    config.port = 0;
    let again = Server::start(config).await.unwrap();
    let client = HttpClient::new(&again.url()).unwrap();
    let w = client.workflow(id).await.unwrap();
    assert_eq!((w.name.as_str(), w.num_jobs), ("kept", 1));
    again.stop(true).await.unwrap();
}
