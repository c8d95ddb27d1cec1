//! The spec reader: the first byte picks the syntax, the rest is the text. Parsing, validation
//! and expansion must answer every input with a workflow or with errors, never a panic; a spec
//! that loads then goes through the check the server makes before storing it. The budgets are
//! a thousandth of the defaults, so that mutations reach them (and their refusals) at once
//! rather than spending seconds on a legal million-job expansion; what loads must be within
//! them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torc_core::spec::{self, Budgets, SpecFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let format = match pick % 4 {
        0 => SpecFormat::Yaml,
        1 => SpecFormat::Json,
        2 => SpecFormat::Json5,
        _ => SpecFormat::Kdl,
    };
    // The server refuses text that is not UTF-8; mutations that break it are kept in play.
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();
    let defaults = Budgets::default();
    let budgets = Budgets {
        yaml_alias_nodes: defaults.yaml_alias_nodes / 1000,
        jobs: defaults.jobs / 1000,
        instances: defaults.instances / 1000,
        parameter_values: defaults.parameter_values / 1000,
        dependency_edges: defaults.dependency_edges / 1000,
        rendered_bytes: defaults.rendered_bytes / 1000,
        regex_work: defaults.regex_work / 1000,
        ..defaults
    };
    match spec::load_with_budgets(text, format, None, &budgets) {
        Ok(expanded) => {
            let def = &expanded.def;
            assert!(
                def.jobs.len() as u64 <= budgets.jobs,
                "over the jobs budget"
            );
            let instances = def.jobs.len() + def.files.len() + def.user_data.len();
            assert!(
                instances as u64 <= budgets.instances,
                "over the instances budget"
            );
            let edges: usize = def
                .jobs
                .iter()
                .map(|j| {
                    j.depends_on.len()
                        + j.input_files.len()
                        + j.output_files.len()
                        + j.input_user_data.len()
                        + j.output_user_data.len()
                })
                .sum();
            assert!(
                edges as u64 <= budgets.dependency_edges,
                "over the edges budget"
            );
            let _ = torc_http::server::input::spec(text, def);
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a failed load reports no problem");
            let _ = errors.to_string();
        }
    }
});
