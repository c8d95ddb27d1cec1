//! Command-line definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// torc: run workflows of shell-command jobs with dependencies, resources and retries.
///
/// Start with `torc run SPEC`: it validates the spec, stores the workflow in an SQLite file
/// under the output directory and runs every job on this machine, no server needed. With
/// --url (or TORC_API_URL), every command works against a torc server instead.
#[derive(Debug, Parser)]
#[command(name = "torc", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Directory for job output (job_stdio/) and, by default, the database.
    #[arg(
        long,
        global = true,
        default_value = "torc_output",
        env = "TORC_OUTPUT_DIR"
    )]
    pub output_dir: PathBuf,
    /// SQLite database file [default: OUTPUT_DIR/torc.db].
    #[arg(long, global = true, env = "TORC_DB", conflicts_with = "url")]
    pub db: Option<PathBuf>,
    /// A torc server (e.g. http://127.0.0.1:8080) to work with instead of the local database.
    #[arg(long, global = true, env = "TORC_API_URL")]
    pub url: Option<String>,
    /// The bearer token for a server that requires one (prefer the environment variable: a
    /// command line is visible to other users of the machine).
    #[arg(long, global = true, env = "TORC_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Global {
    /// A client of the server at `url`, with the token if one is given.
    pub fn client(&self, url: &str) -> anyhow::Result<torc_http::HttpClient> {
        let client = torc_http::HttpClient::new(url)?;
        Ok(match &self.token {
            Some(token) => client.with_token(token)?,
            None => client,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| self.output_dir.join("torc.db"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow on this machine: a spec file (creates the workflow) or the id of a
    /// stored workflow (resumes it: completed jobs are not run again).
    Run(RunArgs),
    /// Create, validate and list workflows.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// Inspect jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Inspect job results (one per attempt).
    #[command(subcommand)]
    Results(ResultsCommand),
    /// Follow a workflow that runs elsewhere, as `torc run` shows its own.
    ///
    /// A progress bar (counts by state, jobs/s, ETA; plain lines when stderr is not a
    /// terminal) and every failed attempt as it is recorded, with the last lines of its stderr
    /// when the output files are reachable from here (--output-dir). Reads the server with
    /// --url, else the local database. Exits when the workflow is over (at once if it already
    /// is): 0 when every job completed, 1 when any failed, was canceled or terminated.
    Watch(WatchArgs),
    /// A terminal UI: workflows, a workflow's jobs by state (with filters), a job's detail,
    /// dependencies and the tail of its log; refreshed every second.
    ///
    /// Keys: arrows or j/k move, enter opens, esc goes back; f cycles a state filter, / types
    /// a name filter; c cancels the workflow, r resets its failed jobs (R every job), s starts
    /// a runner for it (`torc run ID` on this machine, in the background, its output in
    /// OUTPUT_DIR/tui_runner_wfID.log); o shows a job's stdout instead of stderr; q quits.
    Tui,
    /// The event log of a workflow.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Draw pictures of a workflow's runs.
    #[command(subcommand)]
    Plot(PlotCommand),
    /// Manage a server's bearer tokens (needs --url and an admin's token).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Submit a workflow to a server and carry out its actions from here: Slurm allocations
    /// (`schedule_nodes`, through sbatch), local runners (`scheduler_type: local`) and
    /// `run_commands`. Creates the workflow when given a spec file; prints `workflow N`.
    Submit(SubmitArgs),
    /// Slurm: the batch script an allocation gets.
    #[command(subcommand)]
    Slurm(SlurmCommand),
    /// Give jobs that ran out of memory or time more of it, and run them again.
    ///
    /// Reads the results of the workflow's current run. A job whose last attempt was killed
    /// for exceeding its memory gets its memory × --memory-factor; one stopped for time (its
    /// timeout, or its allocation's end) gets its runtime and timeout × --runtime-factor. Only
    /// those jobs change: a resource requirement they share with other jobs is copied for them.
    /// Then the failed, canceled and terminated jobs and their downstream are reset (a new run)
    /// and, on the local database, run on this machine as `torc run ID` would; with --url they
    /// are left to the server's runners. Exits 0 when the workflow ends complete, 1 when jobs
    /// failed again, and 0 with a note when nothing needed more memory or time.
    Recover(RecoverArgs),
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The workflow's id.
    pub workflow_id: i64,
    /// Memory × this for jobs killed for memory (at least 1).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.5)]
    pub memory_factor: f64,
    /// Runtime and timeout × this for jobs stopped for time (at least 1).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.5)]
    pub runtime_factor: f64,
    /// Change and reset, but do not run the jobs here.
    #[arg(long)]
    pub no_run: bool,
    /// Do not show progress while the jobs run, only the summary.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub workflow_id: i64,
    /// Plain lines even on a terminal.
    #[arg(long)]
    pub lines: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print a workflow's events, oldest first (with --follow, then each new one as it is
    /// recorded, until the workflow is over or interrupted).
    List(EventsListArgs),
}

#[derive(Debug, Args)]
pub struct EventsListArgs {
    pub workflow_id: i64,
    /// Keep printing new events as they are recorded; stops when the workflow is no longer
    /// active and nothing more came.
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N events before following.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A spec file (creates the workflow) or the id of a workflow on the server.
    pub target: String,
    /// Keep carrying out actions as they trigger (on_jobs_ready, on_jobs_complete, ...) until
    /// the workflow ends; without it, only those triggered by now (on_workflow_start).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: seconds between looks for newly triggered actions.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub poll_secs: f64,
    /// The torc-runner that allocations and local runners start [default: the one beside
    /// this torc].
    #[arg(long, value_name = "PATH")]
    pub runner_bin: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// Print the batch script of one allocation of a spec's scheduler.
    Script(SlurmScriptArgs),
    /// Write `slurm_schedulers` and `schedule_nodes` actions into a spec from its jobs'
    /// resource requirements and this cluster's partitions (read with `sinfo`): one scheduler
    /// per requirement and stage, started at workflow start or when its jobs are ready.
    Generate(SlurmGenerateArgs),
    /// List the allocations (Slurm jobs) recorded for a workflow: scheduler, Slurm job id,
    /// state, times.
    Allocations {
        /// The workflow id.
        id: i64,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SlurmGenerateArgs {
    /// The spec file (YAML, JSON, JSON5 or KDL).
    pub spec: PathBuf,
    /// The Slurm account to charge (`sbatch --account`).
    #[arg(long)]
    pub account: String,
    /// Put every scheduler on this partition (checked to fit) instead of choosing one.
    #[arg(long)]
    pub partition: Option<String>,
    /// Write the new spec here (.json for JSON, otherwise YAML) [default: stdout, YAML].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SlurmScriptArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// The `slurm_schedulers` entry.
    #[arg(long)]
    pub scheduler: String,
    /// The workflow id the runner serves [default: 0, to be filled in].
    #[arg(long)]
    pub workflow: Option<i64>,
    /// One runner per node (through srun).
    #[arg(long)]
    pub one_worker_per_node: bool,
    /// The torc-runner the script starts [default: the one beside this torc].
    #[arg(long, value_name = "PATH")]
    pub runner_bin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A spec file (.yaml, .yml, .json, .json5, .kdl) or a workflow id.
    pub spec_or_id: String,
    /// Run at most N jobs at once, ignoring their resource requirements.
    #[arg(long, value_name = "N", conflicts_with_all = ["num_cpus", "memory", "num_gpus"])]
    pub max_parallel_jobs: Option<u32>,
    /// CPUs to use [default: detected].
    #[arg(long, value_name = "N")]
    pub num_cpus: Option<u32>,
    /// Memory to use, e.g. 16g [default: detected].
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// GPUs to use [default: detected].
    #[arg(long, value_name = "N")]
    pub num_gpus: Option<u32>,
    /// Seconds a job that supports termination gets between its termination signal and
    /// SIGKILL, at a shutdown (Ctrl-C) or past its timeout [default: the workflow's
    /// execution_config.sigterm_lead_seconds, 30 unless set].
    #[arg(long, value_name = "SECONDS")]
    pub grace_period: Option<u64>,
    /// Do not show progress, only the summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Sync the database to disk at checkpoints only, not at every commit (SQLite's
    /// synchronous=NORMAL): faster on slow disks, but if the machine (not just this process)
    /// goes down, the last jobs' results may be lost and those jobs run again on `torc run ID`.
    #[arg(long)]
    pub relaxed_durability: bool,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Validate a spec and store the workflow (or, with --dry-run, only validate and count).
    Create {
        spec: PathBuf,
        /// Validate and print the expanded job count; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// List stored workflows.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a workflow's job counts by state.
    Status {
        id: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a workflow: nothing more starts; running jobs are terminated by their runners.
    Cancel {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Start a new run of a workflow: of every job, or with --failed-only of the failed,
    /// canceled and terminated jobs and everything downstream of them.
    Reset {
        id: i64,
        #[arg(long)]
        failed_only: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete a workflow and everything recorded about it (asks first, unless --yes).
    Delete {
        id: i64,
        /// Do not ask.
        #[arg(long, short)]
        yes: bool,
    },
    /// Write a workflow as one JSON document: definition, spec, every job's state and
    /// attempt, every result and event (`torc workflows export 3 > wf.json`).
    Export {
        id: i64,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Create a new workflow from a document of `workflows export` (`-`: stdin), in the states
    /// it was exported in; `torc run NEW_ID` then carries on where it was.
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Draw a workflow's dependency graph (DOT, Mermaid or SVG).
    ///
    /// Of a spec file (no database needed) or of a stored workflow (nodes coloured by job
    /// state). Parameter sweeps are collapsed: jobs whose names and commands differ only in their
    /// numbers, and that depend on and feed the same groups, are drawn as one node labelled
    /// with the first and last job and the count, once there are more than --collapse of them.
    /// An edge between collapsed nodes says `1:1` (instance by instance), `all` (every job on
    /// every job) or how many dependencies it stands for.
    Graph(GraphArgs),
    /// Cap how many of a workflow's jobs may be pending or running at once (`none`: no cap).
    /// Takes effect at the next claim; jobs already running are left alone.
    SetMaxConcurrentJobs {
        id: i64,
        /// A number of jobs, at least 1, or `none`.
        #[arg(value_parser = parse_cap)]
        max: Cap,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// A spec file (.yaml, .yml, .json, .json5) or the id of a stored workflow.
    pub spec_or_id: String,
    /// Output format [default: from the extension of -o (.dot, .gv, .mmd, .svg), else dot].
    /// svg runs Graphviz's `dot`, which must be installed.
    #[arg(long, value_enum)]
    pub format: Option<GraphFormat>,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Collapse a group of similar jobs into one node when it has more than N jobs.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub collapse: usize,
    /// Draw every job, collapsing nothing.
    #[arg(long, conflicts_with = "collapse")]
    pub all_jobs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT text.
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab markdown).
    Mermaid,
    /// SVG, drawn by Graphviz's `dot`.
    Svg,
}

/// A cap on jobs in flight, `None` for none.
#[derive(Debug, Clone, Copy)]
pub struct Cap(pub Option<u32>);

fn parse_cap(s: &str) -> Result<Cap, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Cap(None));
    }
    match s.parse::<u32>() {
        Ok(0) => Err("must be at least 1 (or `none` for no cap)".into()),
        Ok(n) => Ok(Cap(Some(n))),
        Err(_) => Err(format!("expected a number of jobs or `none`, got {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List a workflow's jobs [default: the latest workflow].
    List {
        workflow_id: Option<i64>,
        /// Only jobs in this state (ready, running, completed, failed, ...).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show one job: definition, state, dependencies both ways, results.
    ///
    /// The dependencies are what the job waits for and what waits for it; every attempt's
    /// result is listed with where its output files are.
    Show(JobShowArgs),
    /// Print a job's output (stdout, or --stderr) of one attempt.
    ///
    /// Reads the file the runner wrote under OUTPUT_DIR/job_stdio/. Runners on other machines
    /// wrote theirs under their own output directory: pass it with --output-dir when it is
    /// reachable from here (a shared file system); otherwise the error says where it is.
    Logs(JobLogsArgs),
}

#[derive(Debug, Args)]
pub struct JobShowArgs {
    pub workflow_id: i64,
    /// A job id, or a job name.
    pub job: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobLogsArgs {
    pub workflow_id: i64,
    /// A job id, or a job name.
    pub job: String,
    /// This attempt [default: the one running now, else the latest].
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
    /// Of this run (runs start over at attempt 1 after a reset) [default: the latest run with
    /// the attempt].
    #[arg(long, value_name = "N")]
    pub run: Option<u32>,
    /// The stderr file instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing what the attempt writes until it is over (waits for a job that has not
    /// started yet).
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlotCommand {
    /// Draw a run's timeline: every attempt on the runner slot that ran it (SVG or PNG).
    ///
    /// One bar per attempt, coloured by outcome (completed, failed, terminated), against
    /// seconds since the run's first start. Slots are derived from the results' start and end times, per runner: each attempt takes
    /// the lowest-numbered slot free when it started. Labels need a TrueType font: TORC_FONT,
    /// else a system one (DejaVu Sans, Liberation Sans, ...).
    Timeline(TimelineArgs),
    /// Draw CPU and memory over time, per job attempt and per runner node (SVG or PNG).
    ///
    /// From the time-series samples runners take when the spec asks for them:
    /// `resource_monitor: {sample_interval_seconds: N, jobs: {enabled: true, granularity:
    /// time_series}, compute_node: {enabled: true, granularity: time_series}}`. CPU is in
    /// percent of one CPU (200: two busy); a node's memory is what is in use on it.
    Resources(ResourcesArgs),
}

#[derive(Debug, Args)]
pub struct ResourcesArgs {
    pub workflow_id: i64,
    /// The picture to write: FILE.svg or FILE.png.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Only this job (an id or a name), with its node over the same time.
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// Width in pixels (the height is two thirds of it).
    #[arg(long, value_name = "PIXELS", default_value_t = 1200, value_parser = clap::value_parser!(u32).range(300..=20_000))]
    pub width: u32,
}

#[derive(Debug, Args)]
pub struct TimelineArgs {
    pub workflow_id: i64,
    /// The picture to write: FILE.svg or FILE.png.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Of this run [default: the workflow's current run].
    #[arg(long, value_name = "N")]
    pub run: Option<u32>,
    /// Width in pixels (the height follows from the number of slots).
    #[arg(long, value_name = "PIXELS", default_value_t = 1200, value_parser = clap::value_parser!(u32).range(300..=20_000))]
    pub width: u32,
}

#[derive(Debug, Subcommand)]
pub enum ResultsCommand {
    /// List a workflow's results [default: the latest workflow].
    List {
        workflow_id: Option<i64>,
        /// Only results of this job id.
        #[arg(long)]
        job: Option<u32>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token for USER and print it (once: the server keeps only its hash). Without a
    /// scope it acts as USER; with one it is a runner token that may only claim, report and
    /// send heartbeats, for one workflow, one user's workflows or a group's.
    Create {
        /// The user the token is for.
        #[arg(long)]
        user: String,
        /// A name to recognize the token by [default: USER-RANDOM].
        #[arg(long)]
        name: Option<String>,
        /// Runner token for this workflow only.
        #[arg(long, value_name = "ID", conflicts_with_all = ["group", "for_user"])]
        workflow: Option<i64>,
        /// Shared runner token for the workflows of this group's members.
        #[arg(long, value_name = "GROUP", conflicts_with = "for_user")]
        group: Option<String>,
        /// Shared runner token for the workflows of this user.
        #[arg(long, value_name = "USER")]
        for_user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the server's tokens: names, users and scopes (never the tokens).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token made with `tokens create`; it stops working at once.
    Revoke { name: String },
}
