//! The `torc` command line. Wiring only: argument parsing, logging, and calls into the
//! library crates; see `run.rs` (runs) and `inspect.rs` (validation, listings, cancel, reset).

mod cli;
mod events;
mod graph;
mod inspect;
mod jobinfo;
mod out;
mod progress;
mod recover;
mod resources;
mod run;
mod slurmcli;
mod source;
mod stdio;
mod submit;
mod table;
mod tables;
mod timeline;
mod transfer;
mod tui;
mod watch;

use clap::Parser;
use cli::{
    Cli, Command, EventsCommand, JobsCommand, PlotCommand, ResultsCommand, SlurmCommand,
    TokensCommand, WorkflowsCommand,
};
use inspect::Change;
use out::errln;
use std::process::ExitCode;

/// An error that exits with a given code (2 for bad input) after printing its message.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if matches!(cli.command, Command::Run(_)) {
        // Jobs run from this process: before any thread starts, the token leaves its
        // environment and command line (the program executes itself again without them).
        match torc_runner::secret::seal_token("--token", "TORC_API_TOKEN") {
            Ok(Some(sealed)) => cli.global.token = Some(sealed.token),
            Ok(None) => {}
            Err(e) => {
                errln!("error: --token or TORC_API_TOKEN: {e}");
                return ExitCode::from(2);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(out::stderr_colours())
        .init();
    let result = match &cli.command {
        Command::Run(args) => run::run(&cli.global, args),
        Command::Workflows(WorkflowsCommand::Create {
            spec,
            dry_run,
            json,
        }) => inspect::create(&cli.global, spec, *dry_run, *json),
        Command::Workflows(WorkflowsCommand::List { json }) => {
            inspect::list_workflows(&cli.global, *json)
        }
        Command::Workflows(WorkflowsCommand::Status { id, json }) => {
            inspect::status(&cli.global, *id, *json)
        }
        Command::Workflows(WorkflowsCommand::Cancel { id, json }) => {
            inspect::change(&cli.global, *id, Change::Cancel, *json)
        }
        Command::Workflows(WorkflowsCommand::Reset {
            id,
            failed_only,
            json,
        }) => {
            let failed_only = *failed_only;
            inspect::change(&cli.global, *id, Change::Reset { failed_only }, *json)
        }
        Command::Workflows(WorkflowsCommand::Delete { id, yes }) => {
            transfer::delete(&cli.global, *id, *yes)
        }
        Command::Workflows(WorkflowsCommand::Export { id, output }) => {
            transfer::export(&cli.global, *id, output.as_deref())
        }
        Command::Workflows(WorkflowsCommand::Import { file, json }) => {
            transfer::import(&cli.global, file, *json)
        }
        Command::Workflows(WorkflowsCommand::Graph(args)) => graph::graph(&cli.global, args),
        Command::Workflows(WorkflowsCommand::SetMaxConcurrentJobs { id, max, json }) => {
            inspect::change(&cli.global, *id, Change::MaxConcurrentJobs(max.0), *json)
        }
        Command::Jobs(JobsCommand::List {
            workflow_id,
            status,
            offset,
            limit,
            json,
        }) => inspect::list_jobs(
            &cli.global,
            *workflow_id,
            status.as_deref(),
            (*offset, *limit),
            *json,
        ),
        Command::Jobs(JobsCommand::Show(args)) => jobinfo::show(&cli.global, args),
        Command::Jobs(JobsCommand::Logs(args)) => jobinfo::logs(&cli.global, args),
        Command::Results(ResultsCommand::List {
            workflow_id,
            job,
            offset,
            limit,
            json,
        }) => inspect::list_results(&cli.global, *workflow_id, *job, (*offset, *limit), *json),
        Command::Watch(args) => watch::watch(&cli.global, args),
        Command::Tui => tui::tui(&cli.global),
        Command::Events(EventsCommand::List(args)) => events::list(&cli.global, args),
        Command::Plot(PlotCommand::Timeline(args)) => timeline::timeline(&cli.global, args),
        Command::Plot(PlotCommand::Resources(args)) => resources::resources(&cli.global, args),
        Command::Tokens(TokensCommand::Create {
            user,
            name,
            workflow,
            group,
            for_user,
            json,
        }) => {
            let scope = (workflow.is_some() || group.is_some() || for_user.is_some()).then(|| {
                torc_http::TokenScopeSpec {
                    workflow: *workflow,
                    user: for_user.clone(),
                    group: group.clone(),
                }
            });
            inspect::create_token(&cli.global, user, name.as_deref(), scope, *json)
        }
        Command::Submit(args) => submit::submit(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Recover(args) => recover::recover(&cli.global, args),
        Command::Slurm(SlurmCommand::Script(args)) => {
            submit::slurm_script(&cli.global, args).map(|()| ExitCode::SUCCESS)
        }
        Command::Slurm(SlurmCommand::Generate(args)) => slurmcli::generate(args),
        Command::Slurm(SlurmCommand::Allocations { id, json }) => {
            slurmcli::allocations(&cli.global, *id, *json)
        }
        Command::Tokens(TokensCommand::List { json }) => inspect::list_tokens(&cli.global, *json),
        Command::Tokens(TokensCommand::Revoke { name }) => inspect::revoke_token(&cli.global, name),
    };
    match result {
        Ok(code) => code,
        // Whoever read our output stopped reading (`torc jobs list | head -n1`): not an error.
        Err(e) if out::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(exit) => {
                errln!("error: {exit}");
                ExitCode::from(exit.code)
            }
            None => {
                errln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
