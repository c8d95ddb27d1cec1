//! Compiling an entry's strings into templates over its parameters, and rendering them.

use super::diag::{Errors, Loc};
use super::params::ParamSet;
use super::read::{RawJob, LIST_KEYS};
use super::template::Template;

/// Renders `texts` for every combination of `params` (once if there are none) and hands each
/// rendering to `f`; the caller has held the count of combinations to the budgets. Returns
/// false, with errors, if a template is invalid or an instance cannot be rendered (in which
/// case `f` may have been called for some instances).
pub(super) fn render_each(
    params: Option<&ParamSet>,
    texts: &[(&'static str, &str)],
    loc: &Loc<'_>,
    errs: &mut Errors,
    mut f: impl FnMut(&mut [String]),
) -> bool {
    let Some(params) = params else {
        let mut out: Vec<String> = texts.iter().map(|(_, t)| t.to_string()).collect();
        f(&mut out);
        return true;
    };
    let mut templates = Vec::with_capacity(texts.len());
    for (key, text) in texts {
        match Template::compile(text, &params.names) {
            Ok(t) => templates.push(t),
            Err(e) => {
                errs.push(loc.key(key), e.to_string());
                return false;
            }
        }
    }
    let mut ok = true;
    let mut out: Vec<String> = vec![String::new(); texts.len()];
    params.for_each_combo(|combo| {
        if !ok {
            return;
        }
        for ((slot, t), (key, _)) in out.iter_mut().zip(&templates).zip(texts) {
            slot.clear();
            if let Err(e) = t.render_into(&params.names, combo, false, slot) {
                errs.push(loc.key(key), e.to_string());
                ok = false;
                return;
            }
        }
        f(&mut out);
    });
    ok
}

/// A job entry's fields compiled against its parameter names.
pub(super) struct JobTemplates {
    pub command: Template,
    pub invocation_script: Option<Template>,
    pub lists: Vec<Vec<Template>>,
    pub resource_requirements: Option<Template>,
    pub failure_handler: Option<Template>,
    pub scheduler: Option<Template>,
    pub tags: Vec<Template>,
    pub env: Vec<(String, Template)>,
}

impl JobTemplates {
    pub fn compile(
        job: &RawJob<'_>,
        names: &[String],
        loc: &Loc<'_>,
        errs: &mut Errors,
    ) -> Option<JobTemplates> {
        let mut ok = true;
        let mut one =
            |key: &str, text: &str, errs: &mut Errors| match Template::compile(text, names) {
                Ok(t) => Some(t),
                Err(e) => {
                    errs.push(loc.key(key), e.to_string());
                    ok = false;
                    None
                }
            };
        let command = one("command", job.command, errs);
        let invocation_script = job
            .invocation_script
            .and_then(|s| one("invocation_script", s, errs));
        let resource_requirements = job
            .resource_requirements
            .and_then(|s| one("resource_requirements", s, errs));
        let failure_handler = job
            .failure_handler
            .and_then(|s| one("failure_handler", s, errs));
        let scheduler = job.scheduler.and_then(|s| one("scheduler", s, errs));
        let mut lists = Vec::with_capacity(LIST_KEYS.len() + 1);
        for (key, items) in LIST_KEYS.iter().zip(&job.lists) {
            let list_loc = loc.key(key);
            let mut compiled = Vec::with_capacity(items.len());
            for (i, text) in items.iter().enumerate() {
                match Template::compile(text, names) {
                    Ok(t) => compiled.push(t),
                    Err(e) => {
                        errs.push(list_loc.index(i), e.to_string());
                        ok = false;
                    }
                }
            }
            lists.push(compiled);
        }
        let tags_loc = loc.key("tags");
        let mut tags = Vec::with_capacity(job.tags.len());
        for (i, text) in job.tags.iter().enumerate() {
            match Template::compile(text, names) {
                Ok(t) => tags.push(t),
                Err(e) => {
                    errs.push(tags_loc.index(i), e.to_string());
                    ok = false;
                }
            }
        }
        let env_loc = loc.key("env");
        let mut env = Vec::with_capacity(job.env.len());
        for (k, text) in &job.env {
            match Template::compile(text, names) {
                Ok(t) => env.push((k.clone(), t)),
                Err(e) => {
                    errs.push(env_loc.key(k), e.to_string());
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        Some(JobTemplates {
            command: command?,
            invocation_script,
            lists,
            resource_requirements,
            failure_handler,
            scheduler,
            tags,
            env,
        })
    }
}
