//! Expansion of raw entries into the model: parameters, placeholders, references, dependencies.

use super::budget::Budget;
use super::compile::{render_each, JobTemplates};
use super::cost::{admit, job_len, job_text_len, shown_count, value_len};
use super::diag::{Errors, Loc};
use super::params::{ParamSet, ParamValue};
use super::read::{RawJob, RawSpec, LIST_KEYS};
use super::resolve::{add_data_dependencies, find_cycle, NameIndex, RegexMatch};
use super::settings::resolve_actions;
use super::template::Template;
use crate::ids::JobId;
use crate::model::{FileDef, JobDef, UserDataDef, WorkflowDef};
use std::collections::{BTreeMap, HashMap};

/// How many instance names a problem shared by many instances shows.
const SHOWN_INSTANCES: usize = 3;

/// Turns the raw spec into the model; problems go to `errs`.
pub(super) fn expand(mut raw: RawSpec<'_>, errs: &mut Errors) -> WorkflowDef {
    let root = Loc::Root;
    let rr_index = index_entries(
        "resource_requirements",
        "resource requirement",
        raw.resource_requirements
            .iter()
            .map(|(i, r)| (*i, r.name.as_str())),
        errs,
    );
    let fh_index = index_entries(
        "failure_handlers",
        "failure handler",
        raw.failure_handlers
            .iter()
            .map(|(i, h)| (*i, h.name.as_str())),
        errs,
    );

    let files_loc = root.key("files");
    let mut file_names = Vec::new();
    let mut file_paths = Vec::new();
    let mut file_extra = Vec::new();
    let mut file_entry = Vec::new();
    for f in &raw.files {
        let loc = files_loc.entry(f.index, Some(f.name));
        let text_len = f.name.len() + f.path.len() + f.identifier.map_or(0, str::len);
        if !admit(errs, &loc, "files", f.params.as_ref(), text_len as u64) {
            continue;
        }
        let mut texts = vec![("name", f.name), ("path", f.path)];
        if let Some(id) = f.identifier {
            texts.push(("identifier", id));
        }
        render_each(f.params.as_ref(), &texts, &loc, errs, |r| {
            file_names.push(std::mem::take(&mut r[0]));
            file_paths.push(std::mem::take(&mut r[1]));
            file_extra.push((r.get_mut(2).map(std::mem::take), f.st_mtime));
            file_entry.push(f.index);
        });
    }
    let ud_loc = root.key("user_data");
    let mut ud_names = Vec::new();
    let mut ud_defs = Vec::new();
    let mut ud_entry = Vec::new();
    for u in &raw.user_data {
        let loc = ud_loc.entry(u.index, Some(u.name));
        let text_len = u.name.len() as u64 + u.data.map_or(0, value_len);
        if !admit(errs, &loc, "user data", u.params.as_ref(), text_len) {
            continue;
        }
        render_each(u.params.as_ref(), &[("name", u.name)], &loc, errs, |r| {
            ud_names.push(std::mem::take(&mut r[0]));
            ud_defs.push(UserDataDef {
                name: String::new(),
                data: u.data.cloned(),
                is_ephemeral: u.is_ephemeral,
            });
            ud_entry.push(u.index);
        });
    }
    let (files, dups) = NameIndex::new(&file_names);
    report_duplicates(
        "files",
        "file",
        &dups,
        &file_entry,
        &raw.files.iter().map(|f| (f.index, f.name)).collect(),
        &file_names,
        errs,
    );
    let (user_data, dups) = NameIndex::new(&ud_names);
    report_duplicates(
        "user_data",
        "user data",
        &dups,
        &ud_entry,
        &raw.user_data.iter().map(|u| (u.index, u.name)).collect(),
        &ud_names,
        errs,
    );

    // Pass A: every job's name, so that references can be resolved in any order.
    let jobs_loc = root.key("jobs");
    let mut job_names: Vec<String> = Vec::new();
    let mut job_entry: Vec<u32> = Vec::new();
    let mut ranges: Vec<Option<(usize, usize)>> = Vec::with_capacity(raw.jobs.len());
    let env_len: usize = raw.env.iter().map(|(k, v)| k.len() + v.len()).sum();
    for (e, job) in raw.jobs.iter().enumerate() {
        let loc = jobs_loc.entry(job.index, Some(job.name));
        let count = job.params.as_ref().map_or(1, ParamSet::count);
        let limit = errs.meter.budgets.jobs;
        let before = limit - errs.meter.left(Budget::Jobs);
        if !errs.spend(loc, Budget::Jobs, count, || {
            format!(
                "the workflow expands to more than {limit} jobs ({} from this entry after \
                 {before} before it)",
                shown_count(count)
            )
        }) || !admit(
            errs,
            &loc,
            "jobs",
            job.params.as_ref(),
            job_text_len(job, env_len),
        ) {
            ranges.push(None);
            continue;
        }
        let start = job_names.len();
        job_names.reserve(count as usize);
        let ok = render_each(
            job.params.as_ref(),
            &[("name", job.name)],
            &loc,
            errs,
            |r| {
                job_names.push(std::mem::take(&mut r[0]));
            },
        );
        if ok {
            job_entry.resize(job_names.len(), e as u32);
            ranges.push(Some((start, job_names.len())));
        } else {
            job_names.truncate(start);
            ranges.push(None);
        }
    }
    let (jobs_index, dups) = NameIndex::new(&job_names);
    // One problem per entry and entry it repeats, however many instances repeat it.
    let mut dup_groups: Vec<((u32, u32), Vec<u32>)> = Vec::new();
    for &(dup, first) in &dups {
        let key = (job_entry[dup as usize], job_entry[first as usize]);
        match dup_groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(dup),
            None => dup_groups.push((key, vec![dup])),
        }
    }
    for ((e, f), instances) in dup_groups {
        let entry = &raw.jobs[e as usize];
        let first_entry = &raw.jobs[f as usize];
        let loc = jobs_loc.entry(entry.index, Some(entry.name));
        let mut message = format!(
            "duplicate job name `{}` (jobs[{}] ({:?}) already defines it)",
            job_names[instances[0] as usize], first_entry.index, first_entry.name
        );
        if instances.len() > 1 {
            let names: Vec<&str> = instances
                .iter()
                .map(|&i| job_names[i as usize].as_str())
                .collect();
            message.push_str(&instances_note(&names, instances.len()));
        }
        errs.push(loc.key("name"), message);
    }

    // Pass B: everything else, instance by instance.
    if errs.meter.any_exceeded() {
        return WorkflowDef::default();
    }
    let raw_actions = std::mem::take(&mut raw.settings.actions);
    let slurm_names: Option<Vec<&str>> = raw
        .settings
        .slurm_schedulers
        .as_ref()
        .map(|v| v.iter().map(|s| s.name.as_str()).collect());
    let mut ctx = Ctx {
        errs,
        jobs: jobs_index,
        files,
        file_paths: &file_paths,
        user_data,
        rr_index: &rr_index,
        fh_index: &fh_index,
        slurm: slurm_names.as_deref(),
        env: &raw.env,
        groups: Vec::new(),
        current: (0, false),
        regex_edges: 0,
    };
    let mut jobs: Vec<JobDef> = Vec::with_capacity(job_names.len());
    for (job, range) in raw.jobs.iter().zip(&ranges) {
        let Some((start, end)) = *range else { continue };
        let loc = jobs_loc.entry(job.index, Some(job.name));
        let names: &[String] = job.params.as_ref().map_or(&[], |p| &p.names);
        let Some(templates) = JobTemplates::compile(job, names, &loc, ctx.errs) else {
            jobs.extend((start..end).map(|_| JobDef::new("", "")));
            continue;
        };
        let mut index = start;
        // Admitted in pass A: its template length times its instances. What is rendered beyond
        // that (long parameter values, file paths written in) is spent as it is made.
        let mut admitted = (end - start) as u64 * job_text_len(job, env_len);
        let mut rendered = 0u64;
        let mut build = |combo: &[&ParamValue]| {
            if ctx.errs.meter.any_exceeded() {
                jobs.push(JobDef::new("", ""));
                index += 1;
                return;
            }
            let def = ctx.build_job(job, &templates, names, combo, index as u32, &loc);
            if let Some(d) = &def {
                rendered += job_len(d);
                if rendered > admitted {
                    let (n, extra) = (index + 1 - start, rendered - admitted);
                    ctx.errs.spend(loc, Budget::RenderedBytes, extra, || {
                        format!("the first {n} instances of this entry render {rendered} bytes")
                    });
                    admitted = rendered;
                }
            }
            jobs.push(def.unwrap_or_else(|| JobDef::new("", "")));
            index += 1;
        };
        match &job.params {
            Some(p) => p.for_each_combo(&mut build),
            None => build(&[]),
        }
        ctx.flush_groups();
    }
    let actions = resolve_actions(raw_actions, &mut ctx.jobs, ctx.errs);
    drop(ctx);
    let settings = raw.settings;
    if errs.meter.any_exceeded() {
        return WorkflowDef::default();
    }

    // Pass C: implicit dependencies through data, then sort and deduplicate.
    if !add_data_dependencies(&mut jobs, file_names.len(), ud_names.len(), errs) {
        return WorkflowDef::default();
    }
    for job in &mut jobs {
        job.depends_on.sort_unstable();
        job.depends_on.dedup();
    }

    // Pass D: cycles.
    if jobs.len() == job_names.len() {
        if let Some(cycle) = find_cycle(jobs.len(), &|j| &jobs[j].depends_on) {
            let first = &raw.jobs[job_entry[cycle[0] as usize] as usize];
            const SHOWN: usize = 20;
            let mut text: Vec<&str> = cycle
                .iter()
                .take(SHOWN)
                .map(|&j| job_names[j as usize].as_str())
                .collect();
            if cycle.len() > SHOWN {
                text.push("…");
                text.push(&job_names[cycle[0] as usize]);
            }
            errs.push(
                jobs_loc.entry(first.index, Some(first.name)),
                format!(
                    "dependency cycle: {} (each job must finish before the next)",
                    text.join(" -> ")
                ),
            );
        }
    }

    for (job, name) in jobs.iter_mut().zip(job_names) {
        job.name = name;
    }
    for (def, name) in ud_defs.iter_mut().zip(ud_names) {
        def.name = name;
    }
    WorkflowDef {
        name: raw.name,
        description: raw.description,
        user: raw.user,
        project: raw.project,
        metadata: raw.metadata,
        jobs_sort_method: raw.jobs_sort_method,
        max_concurrent_jobs: raw.max_concurrent_jobs,
        execution: settings.execution,
        resource_monitor: settings.resource_monitor,
        slurm_schedulers: settings.slurm_schedulers.unwrap_or_default(),
        slurm_defaults: settings.slurm_defaults,
        actions,
        compute_node: settings.compute_node,
        resource_requirements: raw
            .resource_requirements
            .into_iter()
            .map(|(_, r)| r)
            .collect(),
        failure_handlers: raw.failure_handlers.into_iter().map(|(_, h)| h).collect(),
        files: file_names
            .into_iter()
            .zip(file_paths)
            .zip(file_extra)
            .map(|((name, path), (identifier, st_mtime))| FileDef {
                name,
                path,
                identifier,
                st_mtime,
            })
            .collect(),
        user_data: ud_defs,
        jobs,
    }
}

/// ` (N instances have this problem: `a`, `b`, `c`, …)`.
fn instances_note(names: &[&str], count: usize) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(SHOWN_INSTANCES)
        .map(|n| format!("`{n}`"))
        .collect();
    format!(
        " ({count} instances have this problem: {}{})",
        shown.join(", "),
        if count > SHOWN_INSTANCES { ", …" } else { "" }
    )
}

/// Maps the names of a list's entries to their positions, reporting duplicates.
fn index_entries<'r>(
    list: &'static str,
    what: &str,
    entries: impl Iterator<Item = (usize, &'r str)>,
    errs: &mut Errors,
) -> HashMap<&'r str, u32> {
    let root = Loc::Root;
    let list_loc = root.key(list);
    let mut map: HashMap<&str, u32> = HashMap::new();
    let mut first_entry: HashMap<&str, usize> = HashMap::new();
    for (pos, (entry, name)) in entries.enumerate() {
        if let Some(first) = first_entry.get(name) {
            errs.push(
                list_loc.entry(entry, Some(name)).key("name"),
                format!("duplicate {what} name `{name}` ({list}[{first}] already defines it)"),
            );
        } else {
            first_entry.insert(name, entry);
            map.insert(name, pos as u32);
        }
    }
    map
}

fn report_duplicates(
    list: &'static str,
    what: &str,
    dups: &[(u32, u32)],
    entry_of: &[usize],
    entries: &HashMap<usize, &str>,
    names: &[String],
    errs: &mut Errors,
) {
    let root = Loc::Root;
    let list_loc = root.key(list);
    for &(dup, first) in dups {
        let entry = entry_of[dup as usize];
        let first_entry = entry_of[first as usize];
        errs.push(
            list_loc
                .entry(entry, entries.get(&entry).copied())
                .key("name"),
            format!(
                "duplicate {what} name `{}` ({list}[{first_entry}] already defines it)",
                names[dup as usize]
            ),
        );
    }
}

/// What pass B needs to resolve one job instance.
struct Ctx<'c, 'n> {
    errs: &'c mut Errors,
    jobs: NameIndex<'n>,
    files: NameIndex<'n>,
    file_paths: &'n [String],
    user_data: NameIndex<'n>,
    rr_index: &'c HashMap<&'c str, u32>,
    fh_index: &'c HashMap<&'c str, u32>,
    slurm: Option<&'c [&'c str]>,
    /// The workflow's `env`, under each job's own.
    env: &'c BTreeMap<String, String>,
    /// Problems of the current parameterized entry, one per place, with the instances that
    /// have them.
    groups: Vec<Group>,
    /// The job instance being built, and whether its entry is parameterized.
    current: (u32, bool),
    /// Edges of the current instance already spent (regex matches, spent before they are
    /// added).
    regex_edges: u64,
}

/// One problem of a parameterized entry, shared by `count` of its instances.
struct Group {
    location: String,
    /// As the first instance that has it says it.
    message: String,
    count: usize,
    /// The first few instances that have it.
    instances: Vec<u32>,
    last_instance: u32,
}

/// Which name set a list or placeholder refers to.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Job,
    File,
    UserData,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Job => "job",
            Kind::File => "file",
            Kind::UserData => "user data",
        }
    }
}

impl<'n> Ctx<'_, 'n> {
    /// Reports a problem of the current instance. The problems of a parameterized entry are
    /// gathered by where they are, and reported once each by [`Ctx::flush_groups`].
    fn report(&mut self, loc: impl std::fmt::Display, message: String) {
        let (instance, parameterized) = self.current;
        if !parameterized {
            self.errs.push(loc, message);
            return;
        }
        let location = loc.to_string();
        // The k-th problem at a place of one instance joins the k-th of the other instances.
        match self
            .groups
            .iter_mut()
            .find(|g| g.location == location && g.last_instance != instance)
        {
            Some(g) => {
                g.count += 1;
                g.last_instance = instance;
                if g.instances.len() < SHOWN_INSTANCES {
                    g.instances.push(instance);
                }
            }
            None => self.groups.push(Group {
                location,
                message,
                count: 1,
                instances: vec![instance],
                last_instance: instance,
            }),
        }
    }

    /// Whether a problem of the current instance at `location` joins one already gathered
    /// (whose message is the one shown).
    fn joins_group(&self, location: &str) -> bool {
        let (instance, parameterized) = self.current;
        parameterized
            && self
                .groups
                .iter()
                .any(|g| g.location == location && g.last_instance != instance)
    }

    /// Reports the gathered problems of the entry just built.
    fn flush_groups(&mut self) {
        for g in std::mem::take(&mut self.groups) {
            let mut message = g.message;
            if g.count > 1 {
                let names: Vec<&str> = g.instances.iter().map(|&i| self.jobs.name(i)).collect();
                message.push_str(&instances_note(&names, g.count));
            }
            self.errs.push(g.location, message);
        }
    }

    fn index(&mut self, kind: Kind) -> &mut NameIndex<'n> {
        match kind {
            Kind::Job => &mut self.jobs,
            Kind::File => &mut self.files,
            Kind::UserData => &mut self.user_data,
        }
    }

    fn suggestion(&mut self, kind: Kind, name: &str) -> String {
        let index = match kind {
            Kind::Job => &self.jobs,
            Kind::File => &self.files,
            Kind::UserData => &self.user_data,
        };
        self.errs.suggest(name, index.len(), index.names())
    }

    /// Resolves one name of `kind`; reports it if unknown.
    fn lookup(&mut self, kind: Kind, name: &str, loc: &Loc<'_>) -> Option<u32> {
        if let Some(i) = self.index(kind).get(name) {
            return Some(i);
        }
        let location = loc.to_string();
        if self.joins_group(&location) {
            // Said as the first instance that has it says it: no message to make.
            self.report(location, String::new());
            return None;
        }
        let hint = if self.errs.is_full() {
            String::new()
        } else {
            self.suggestion(kind, name)
        };
        let context = self.context();
        self.report(
            location,
            format!("unknown {} `{name}`{context}{hint}", kind.noun()),
        );
        None
    }

    /// Resolves one regex over the names of `kind`; reports it if invalid or matching nothing.
    fn lookup_regex(&mut self, kind: Kind, pattern: &str, loc: &Loc<'_>, out: &mut Vec<u32>) {
        let index = match kind {
            Kind::Job => &mut self.jobs,
            Kind::File => &mut self.files,
            Kind::UserData => &mut self.user_data,
        };
        let (outcome, first_time) = index.resolve_regex(pattern, self.errs, loc);
        match &*outcome {
            RegexMatch::Invalid(e) if first_time => {
                self.report(loc, format!("invalid regex `{pattern}`: {e}"));
            }
            RegexMatch::Matches(m) if m.is_empty() && first_time => {
                self.report(loc, format!("regex `{pattern}` matches no {}", kind.noun()));
            }
            RegexMatch::Matches(m) => {
                let n = m.len() as u64;
                if self.errs.spend(loc, Budget::DependencyEdges, n, || {
                    format!("regex `{pattern}` matches {n} names, one edge each")
                }) {
                    self.regex_edges += n;
                    out.extend_from_slice(m);
                }
            }
            RegexMatch::Invalid(_) | RegexMatch::OverBudget => {}
        }
    }

    fn build_job(
        &mut self,
        job: &RawJob<'_>,
        t: &JobTemplates,
        names: &[String],
        combo: &[&ParamValue],
        index: u32,
        loc: &Loc<'_>,
    ) -> Option<JobDef> {
        self.current = (index, job.params.is_some());
        self.regex_edges = 0;
        let render = |this: &mut Self, t: &Template, escape: bool, at: &Loc<'_>| {
            t.render(names, combo, escape)
                .map_err(|e| this.report(at, e.to_string()))
                .ok()
        };
        let mut def = JobDef::new(String::new(), String::new());
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut ud_inputs = Vec::new();
        let mut ud_outputs = Vec::new();

        let command_loc = loc.key("command");
        let command = render(self, &t.command, false, &command_loc)?;
        def.command = self.substitute_data(
            command,
            &command_loc,
            [&mut inputs, &mut outputs, &mut ud_inputs, &mut ud_outputs],
        );
        if let Some(s) = &t.invocation_script {
            let script_loc = loc.key("invocation_script");
            let script = render(self, s, false, &script_loc)?;
            def.invocation_script = Some(self.substitute_data(
                script,
                &script_loc,
                [&mut inputs, &mut outputs, &mut ud_inputs, &mut ud_outputs],
            ));
        }

        let mut deps: Vec<u32> = Vec::new();
        for (l, (key, templates)) in LIST_KEYS.iter().zip(&t.lists).enumerate() {
            let list_loc = loc.key(key);
            let is_regex = l % 2 == 1;
            let (kind, out) = match l / 2 {
                0 => (Kind::Job, &mut deps),
                1 => (Kind::File, &mut inputs),
                2 => (Kind::File, &mut outputs),
                3 => (Kind::UserData, &mut ud_inputs),
                _ => (Kind::UserData, &mut ud_outputs),
            };
            for (i, template) in templates.iter().enumerate() {
                let at = list_loc.index(i);
                let Some(text) = render(self, template, is_regex, &at) else {
                    continue;
                };
                if is_regex {
                    self.lookup_regex(kind, &text, &at, out);
                } else if let Some(found) = self.lookup(kind, &text, &at) {
                    if kind == Kind::Job && found == index {
                        self.report(at, format!("job `{text}` depends on itself"));
                    } else {
                        out.push(found);
                    }
                }
            }
        }
        let edges = [&deps, &inputs, &outputs, &ud_inputs, &ud_outputs]
            .iter()
            .map(|v| v.len() as u64)
            .sum::<u64>()
            .saturating_sub(self.regex_edges);
        if !self.errs.spend(loc, Budget::DependencyEdges, edges, || {
            format!("job `{}` adds {edges} more", self.jobs.name(index))
        }) {
            return None;
        }
        deps.retain(|&d| d != index);
        def.depends_on = deps
            .into_iter()
            .map(|d| JobId::from_index(d as usize))
            .collect();
        for v in [&mut inputs, &mut outputs, &mut ud_inputs, &mut ud_outputs] {
            v.sort_unstable();
            v.dedup();
        }
        def.input_files = inputs;
        def.output_files = outputs;
        def.input_user_data = ud_inputs;
        def.output_user_data = ud_outputs;

        if let Some(rt) = &t.resource_requirements {
            let at = loc.key("resource_requirements");
            let name = render(self, rt, false, &at)?;
            match self.rr_index.get(name.as_str()) {
                Some(&i) => def.resource_requirement = Some(i),
                None => {
                    let hint = self.errs.suggest(
                        &name,
                        self.rr_index.len(),
                        self.rr_index.keys().copied(),
                    );
                    let context = self.context();
                    self.report(
                        at,
                        format!("unknown resource requirement `{name}`{context}{hint}"),
                    );
                }
            }
        }
        if let Some(ft) = &t.failure_handler {
            let at = loc.key("failure_handler");
            let name = render(self, ft, false, &at)?;
            match self.fh_index.get(name.as_str()) {
                Some(&i) => def.failure_handler = Some(i),
                None => {
                    let hint = self.errs.suggest(
                        &name,
                        self.fh_index.len(),
                        self.fh_index.keys().copied(),
                    );
                    let context = self.context();
                    self.report(
                        at,
                        format!("unknown failure handler `{name}`{context}{hint}"),
                    );
                }
            }
        }
        if let Some(st) = &t.scheduler {
            let at = loc.key("scheduler");
            let name = render(self, st, false, &at)?;
            if let Some(known) = self.slurm {
                if !known.contains(&name.as_str()) {
                    let hint = self.errs.suggest(&name, known.len(), known.iter().copied());
                    let context = self.context();
                    self.report(
                        at,
                        format!("unknown slurm scheduler `{name}`{context}{hint}"),
                    );
                }
            }
            def.scheduler = Some(name);
        }
        def.cancel_on_blocking_job_failure = job.cancel_on_blocking_job_failure;
        def.supports_termination = job.supports_termination;
        def.priority = job.priority;
        let tags_loc = loc.key("tags");
        for (i, tt) in t.tags.iter().enumerate() {
            let tag = render(self, tt, false, &tags_loc.index(i))?;
            if !def.tags.contains(&tag) {
                def.tags.push(tag);
            }
        }
        def.env = self.env.clone();
        let env_loc = loc.key("env");
        for (k, et) in &t.env {
            let value = render(self, et, false, &env_loc.key(k))?;
            def.env.insert(k.clone(), value);
        }
        def.timeout = job.timeout;
        def.stdio = job.stdio;
        Some(def)
    }

    /// ` (in job `x`)` for problems of a parameterized job's instances, else empty.
    fn context(&self) -> String {
        match self.current {
            (index, true) => format!(" (in job `{}`)", self.jobs.name(index)),
            _ => String::new(),
        }
    }

    /// Replaces `${files.input.NAME}` and `${files.output.NAME}` with the file's path and
    /// `${user_data.input.NAME}` / `${user_data.output.NAME}` with the user data's name,
    /// recording each relation in `rel` (file inputs, file outputs, data inputs, data outputs).
    /// Other `${...}` (shell variables) are left alone, and so are invalid placeholders (after
    /// being reported).
    fn substitute_data(&mut self, text: String, loc: &Loc<'_>, rel: [&mut Vec<u32>; 4]) -> String {
        if !text.contains("${") {
            return text;
        }
        let [file_in, file_out, ud_in, ud_out] = rel;
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let (kind, tail) = if let Some(t) = after.strip_prefix("files.") {
                (Kind::File, t)
            } else if let Some(t) = after.strip_prefix("user_data.") {
                (Kind::UserData, t)
            } else {
                out.push_str("${");
                rest = after;
                continue;
            };
            let Some(close) = tail.find('}') else {
                self.report(loc, format!("unclosed placeholder `{}`", &rest[start..]));
                out.push_str(&rest[start..]);
                return out;
            };
            let prefix = if kind == Kind::File {
                "files"
            } else {
                "user_data"
            };
            let body = &tail[..close];
            let whole = format!("${{{prefix}.{body}}}");
            let (direction, name) = body.split_once('.').unwrap_or((body, ""));
            let input = match direction {
                "input" => true,
                "output" => false,
                _ => {
                    self.report(
                        loc,
                        format!("invalid placeholder `{whole}`: expected `${{{prefix}.input.NAME}}` or `${{{prefix}.output.NAME}}`"),
                    );
                    out.push_str(&whole);
                    rest = &tail[close + 1..];
                    continue;
                }
            };
            match self.lookup(kind, name, loc) {
                Some(i) => {
                    match (kind, input) {
                        (Kind::File, true) => file_in.push(i),
                        (Kind::File, false) => file_out.push(i),
                        (_, true) => ud_in.push(i),
                        (_, false) => ud_out.push(i),
                    }
                    match kind {
                        Kind::File => out.push_str(&self.file_paths[i as usize]),
                        _ => out.push_str(self.user_data.name(i)),
                    }
                }
                None => out.push_str(&whole),
            }
            rest = &tail[close + 1..];
        }
        out.push_str(rest);
        out
    }
}
