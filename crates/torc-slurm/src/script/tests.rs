//! Snapshots of rendered scripts, and the values a script must refuse.

use super::*;

fn launch() -> RunnerLaunch {
    RunnerLaunch {
        runner_bin: PathBuf::from("/opt/torc/bin/torc-runner"),
        api_url: "http://127.0.0.1:8080/torc-service/v1".into(),
        workflow_id: WorkflowId(7),
        start_one_worker_per_node: false,
        output_dir: PathBuf::from("/scratch/me/torc_output"),
        extra_args: vec![],
    }
}

fn render(sched: &SchedulerParams, defaults: &[(&str, &str)], launch: &RunnerLaunch) -> String {
    let defaults: BTreeMap<String, String> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    BatchScript::new(sched, &defaults, launch)
        .unwrap()
        .text()
        .to_string()
}

#[test]
fn minimal_scheduler() {
    let script = render(&SchedulerParams::new("short"), &[], &launch());
    assert_eq!(
        script,
        r#"#!/bin/bash
#SBATCH --job-name=torc_wf7_short
#SBATCH --nodes=1
#SBATCH --time=01:00:00
#SBATCH --output=/scratch/me/torc_output/slurm/slurm_%j.out
#SBATCH --error=/scratch/me/torc_output/slurm/slurm_%j.err

# A torc allocation: the runner serves the jobs of this workflow's scheduler and
# exits when no job for it can come.
exec /opt/torc/bin/torc-runner --url http://127.0.0.1:8080/torc-service/v1 --workflow 7 --scheduler short --output-dir /scratch/me/torc_output
"#
    );
}

#[test]
fn every_option_and_one_runner_per_node() {
    let sched = SchedulerParams {
        name: "gpu_big".into(),
        account: Some("proj1".into()),
        partition: Some("gpu".into()),
        nodes: 4,
        walltime: "2-00:00:00".into(),
        mem: Some("180G".into()),
        gres: Some("gpu:4".into()),
        qos: Some("high".into()),
        ntasks_per_node: Some(1),
        tmp: Some("100G".into()),
        extra: Some("--exclusive --constraint=h100".into()),
    };
    let mut launch = launch();
    launch.start_one_worker_per_node = true;
    launch.extra_args = vec!["--idle-timeout".into(), "600".into()];
    let script = render(
        &sched,
        &[
            ("account", "ignored_the_scheduler_has_one"),
            ("mail_type", "END"),
            ("--mail-user", "me@example.org"),
            ("requeue", ""),
            ("time", "9:00:00"),
            ("output", "/elsewhere"),
        ],
        &launch,
    );
    assert_eq!(
        script,
        r#"#!/bin/bash
#SBATCH --job-name=torc_wf7_gpu_big
#SBATCH --account=proj1
#SBATCH --partition=gpu
#SBATCH --nodes=4
#SBATCH --time=2-00:00:00
#SBATCH --mem=180G
#SBATCH --gres=gpu:4
#SBATCH --qos=high
#SBATCH --ntasks-per-node=1
#SBATCH --tmp=100G
#SBATCH --output=/scratch/me/torc_output/slurm/slurm_%j.out
#SBATCH --error=/scratch/me/torc_output/slurm/slurm_%j.err
#SBATCH --mail-user=me@example.org
#SBATCH --mail-type=END
#SBATCH --requeue
#SBATCH --exclusive --constraint=h100

# A torc allocation: the runner serves the jobs of this workflow's scheduler and
# exits when no job for it can come.
exec srun --ntasks-per-node=1 --nodes="$SLURM_JOB_NUM_NODES" --overlap /opt/torc/bin/torc-runner --url http://127.0.0.1:8080/torc-service/v1 --workflow 7 --scheduler gpu_big --output-dir /scratch/me/torc_output --idle-timeout 600
"#
    );
}

#[test]
fn defaults_fill_in_what_the_scheduler_leaves_out() {
    let script = render(
        &SchedulerParams::new("s"),
        &[("account", "from_defaults"), ("partition", "debug")],
        &launch(),
    );
    assert!(script.contains("#SBATCH --account=from_defaults\n#SBATCH --partition=debug\n"));
}

#[test]
fn awkward_values_are_quoted() {
    let mut sched = SchedulerParams::new("it's a \"name\" #1");
    sched.account = Some("a b".into());
    let mut launch = launch();
    launch.runner_bin = PathBuf::from("/opt/my torc/torc-runner");
    launch.api_url = "http://127.0.0.1:1/x?a=1&b=$(id)".into();
    launch.output_dir = PathBuf::from("/tmp/out dir/100%");
    launch.extra_args = vec!["it's".into(), "".into()];
    let script = render(&sched, &[("comment", "x#y \\ z")], &launch);
    assert_eq!(
        script,
        r##"#!/bin/bash
#SBATCH --job-name="torc_wf7_it's a \"name\" #1"
#SBATCH --account="a b"
#SBATCH --nodes=1
#SBATCH --time=01:00:00
#SBATCH --output="/tmp/out dir/100%%/slurm/slurm_%j.out"
#SBATCH --error="/tmp/out dir/100%%/slurm/slurm_%j.err"
#SBATCH --comment="x#y \\ z"

# A torc allocation: the runner serves the jobs of this workflow's scheduler and
# exits when no job for it can come.
exec '/opt/my torc/torc-runner' --url 'http://127.0.0.1:1/x?a=1&b=$(id)' --workflow 7 --scheduler 'it'\''s a "name" #1' --output-dir '/tmp/out dir/100%' 'it'\''s' ''
"##
    );
}

#[test]
fn line_breaks_are_refused_everywhere() {
    let defaults = BTreeMap::new();
    let bad = "x\n#SBATCH --partition=evil";
    let mut cases: Vec<(SchedulerParams, RunnerLaunch)> = Vec::new();
    let edits: Vec<fn(&mut SchedulerParams, &mut RunnerLaunch, &str)> = vec![
        |s, _, v| s.name = v.into(),
        |s, _, v| s.account = Some(v.into()),
        |s, _, v| s.partition = Some(v.into()),
        |s, _, v| s.walltime = v.into(),
        |s, _, v| s.mem = Some(v.into()),
        |s, _, v| s.gres = Some(v.into()),
        |s, _, v| s.qos = Some(v.into()),
        |s, _, v| s.tmp = Some(v.into()),
        |s, _, v| s.extra = Some(v.into()),
        |_, l, v| l.api_url = v.into(),
        |_, l, v| l.runner_bin = PathBuf::from(format!("/{v}")),
        |_, l, v| l.output_dir = PathBuf::from(v),
        |_, l, v| l.extra_args = vec![v.into()],
    ];
    for edit in &edits {
        for v in [bad, "a\rb", "a\0b"] {
            let (mut s, mut l) = (SchedulerParams::new("s"), launch());
            edit(&mut s, &mut l, v);
            cases.push((s, l));
        }
    }
    for (s, l) in &cases {
        let err = BatchScript::new(s, &defaults, l).unwrap_err();
        assert!(matches!(err, ScriptError::BadChar { .. }), "{err}");
    }
    let defaults = BTreeMap::from([("comment".to_string(), bad.to_string())]);
    let err = BatchScript::new(&SchedulerParams::new("s"), &defaults, &launch()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "slurm_defaults: comment `x\n#SBATCH --partition=evil` holds a line break or NUL, which \
         cannot go into a batch script"
    );
}

#[test]
fn invalid_schedulers_and_launches() {
    let none = BTreeMap::new();
    let err = |s: &SchedulerParams, l: &RunnerLaunch, d: &BTreeMap<String, String>| {
        BatchScript::new(s, d, l).unwrap_err()
    };
    let mut s = SchedulerParams::new("s");
    s.nodes = 0;
    assert_eq!(
        err(&s, &launch(), &none).to_string(),
        "scheduler `s`: nodes must be at least 1"
    );
    let mut s = SchedulerParams::new("s");
    s.ntasks_per_node = Some(0);
    assert!(matches!(
        err(&s, &launch(), &none),
        ScriptError::ZeroTasks { .. }
    ));
    for walltime in ["1h", "", "1:2:3:4"] {
        let mut s = SchedulerParams::new("s");
        s.walltime = walltime.into();
        assert!(matches!(
            err(&s, &launch(), &none),
            ScriptError::Walltime { .. }
        ));
    }
    for walltime in ["0", "infinite", "00:00:00"] {
        let mut s = SchedulerParams::new("s");
        s.walltime = walltime.into();
        assert!(matches!(
            err(&s, &launch(), &none),
            ScriptError::UnlimitedWalltime { .. }
        ));
    }
    let mut l = launch();
    l.runner_bin = PathBuf::from("target/debug/torc-runner");
    assert_eq!(
        err(&SchedulerParams::new("s"), &l, &none).to_string(),
        "the runner binary must be an absolute path, not `target/debug/torc-runner`"
    );
    let mut l = launch();
    l.output_dir = PathBuf::from("/a\\b");
    assert!(matches!(
        err(&SchedulerParams::new("s"), &l, &none),
        ScriptError::BackslashInOutputDir { .. }
    ));
    for key in ["-x", "Account", "a b", "", "--", "x=y", "9lives"] {
        let d = BTreeMap::from([(key.to_string(), "v".to_string())]);
        assert_eq!(
            err(&SchedulerParams::new("s"), &launch(), &d),
            ScriptError::DefaultKey { key: key.into() },
            "{key:?}"
        );
    }
}

#[test]
fn writes_the_script_and_slurm_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = launch();
    l.output_dir = dir.path().join("out");
    let script = BatchScript::new(&SchedulerParams::new("s"), &BTreeMap::new(), &l).unwrap();
    assert_eq!(script.job_name(), "torc_wf7_s");
    let path = dir.path().join("s.sh");
    script.write(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), script.text());
    assert!(dir.path().join("out/slurm").is_dir());
    assert_eq!(script.slurm_output_dir(), dir.path().join("out/slurm"));
}
