//! Budgets: how much work and memory a spec may make the loader spend, checked before the
//! work is done, so that a small hostile spec (YAML aliases that expand a billion times,
//! parameters whose product is astronomical, a regex per instance over a million names) is
//! refused quickly instead of hanging or exhausting the caller. Each refusal is a
//! [`SpecError`](super::SpecError) whose message names the budget and its size:
//! `spec exceeds the budget for dependency edges (200000000): ...`.
//!
//! The defaults let real specs through with room to spare: the largest workflows torc is
//! built for have 10 million jobs (the `jobs` budget, as before budgets existed), each with
//! a few dependencies, a command of a few hundred bytes and some files. Each default is
//! about twenty times what such a workflow needs, or the size past which the work would take
//! minutes or gigabytes:
//!
//! | budget | default | why |
//! |---|---|---|
//! | `yaml_alias_nodes` | 1,000,000 | nodes YAML aliases replay beyond one per byte of text; anchors serve shared defaults (`<<: *d` in each job), parameters serve repetition |
//! | `jobs` | 10,000,000 | jobs after expansion: the size torc is built for |
//! | `instances` | 20,000,000 | jobs, files and user data after expansion, together: a job and a file each for 10 million |
//! | `parameter_values` | 20,000,000 | values all parameter ranges (`1:1000`) make, together, before any is combined |
//! | `dependency_edges` | 200,000,000 | dependencies and file and data relations (20 per job of 10 million; 800 MB of ids) |
//! | `rendered_bytes` | 4 GiB | text made by templates and variables (a 400-byte command for each of 10 million jobs) |
//! | `regex_work` | 1,000,000,000 | names tested by regexes, each distinct regex once: a thousand unnarrowed regexes over a million names, tens of seconds |
//! | `suggestion_word_len` | 64 | "did you mean" is only looked for for words of at most this many characters... |
//! | `suggestion_candidates` | 10,000 | ...among at most this many names... |
//! | `suggestions` | 200 | ...and at most this many times per spec (as many problems as are spelled out) |
//!
//! The first seven refuse the spec; the last three only leave the suggestion out. Counts are
//! checked before allocating: a range's size before its values are made, the product of an
//! entry's parameter sizes (with checked arithmetic) before its instances, an entry's template
//! length times its instances before rendering (and what is rendered is counted as it is, so
//! that long parameter values cannot slip past the estimate), a regex's candidates before the
//! scan, and a job's matches and the writers of the data it reads before the edges are added.

/// How much a spec may cost to load; see the module documentation for the defaults and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budgets {
    /// YAML nodes that aliases may replay, beyond one per byte of the text.
    pub yaml_alias_nodes: u64,
    /// Jobs after expansion.
    pub jobs: u64,
    /// Jobs, files and user data after expansion, together.
    pub instances: u64,
    /// Values made by parameter ranges (`start:end:step`), all parameters together.
    pub parameter_values: u64,
    /// Dependencies between jobs (named, matched by regexes and implied by data) and the
    /// relations of jobs to the files and user data they read and write.
    pub dependency_edges: u64,
    /// Bytes of text made by substituting variables and rendering templates.
    pub rendered_bytes: u64,
    /// Names tested against regexes (each distinct regex is tested once per candidate name).
    pub regex_work: u64,
    /// The longest word (in characters) a "did you mean" is looked for.
    pub suggestion_word_len: usize,
    /// The most names a "did you mean" is looked for among.
    pub suggestion_candidates: usize,
    /// The most "did you mean" searches per spec.
    pub suggestions: usize,
}

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            yaml_alias_nodes: 1_000_000,
            jobs: 10_000_000,
            instances: 20_000_000,
            parameter_values: 20_000_000,
            dependency_edges: 200_000_000,
            rendered_bytes: 4 << 30,
            regex_work: 1_000_000_000,
            suggestion_word_len: super::diag::SUGGEST_MAX_WORD,
            suggestion_candidates: 10_000,
            suggestions: 200,
        }
    }
}

/// One of the budgets that refuse a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Budget {
    YamlAliasNodes,
    Jobs,
    Instances,
    ParameterValues,
    DependencyEdges,
    RenderedBytes,
    RegexWork,
}

const COUNT: usize = 7;

impl Budget {
    /// What the budget counts, as its refusal names it.
    pub fn what(self) -> &'static str {
        match self {
            Budget::YamlAliasNodes => "YAML nodes replayed by aliases",
            Budget::Jobs => "jobs",
            Budget::Instances => "expanded jobs, files and user data",
            Budget::ParameterValues => "parameter values",
            Budget::DependencyEdges => "dependency edges",
            Budget::RenderedBytes => "rendered bytes",
            Budget::RegexWork => "regex work (names tested against regexes)",
        }
    }

    pub fn limit(self, b: &Budgets) -> u64 {
        match self {
            Budget::YamlAliasNodes => b.yaml_alias_nodes,
            Budget::Jobs => b.jobs,
            Budget::Instances => b.instances,
            Budget::ParameterValues => b.parameter_values,
            Budget::DependencyEdges => b.dependency_edges,
            Budget::RenderedBytes => b.rendered_bytes,
            Budget::RegexWork => b.regex_work,
        }
    }

    /// The refusal: `spec exceeds the budget for jobs (10000000): {detail}`.
    pub fn message(self, b: &Budgets, detail: &str) -> String {
        format!(
            "spec exceeds the budget for {} ({}): {detail}",
            self.what(),
            self.limit(b)
        )
    }
}

/// What a spec has spent of each budget so far.
#[derive(Debug, Default)]
pub(super) struct Meter {
    pub budgets: Budgets,
    used: [u64; COUNT],
    /// Whether a budget was refused (each is reported once, and work that needs it stops).
    exceeded: [bool; COUNT],
    suggestions: usize,
}

impl Meter {
    pub fn new(budgets: Budgets) -> Meter {
        Meter {
            budgets,
            ..Meter::default()
        }
    }

    /// Spends `amount` of `budget` if that stays within it. On refusal nothing is spent and
    /// the budget is marked exceeded; `Err(true)` the first time, so that it is reported once.
    pub fn spend(&mut self, budget: Budget, amount: u64) -> Result<(), bool> {
        let i = budget as usize;
        if self.exceeded[i] {
            return Err(false);
        }
        match self.used[i].checked_add(amount) {
            Some(total) if total <= budget.limit(&self.budgets) => {
                self.used[i] = total;
                Ok(())
            }
            _ => {
                self.exceeded[i] = true;
                Err(true)
            }
        }
    }

    /// How much of `budget` is left.
    pub fn left(&self, budget: Budget) -> u64 {
        budget
            .limit(&self.budgets)
            .saturating_sub(self.used[budget as usize])
    }

    pub fn exceeded(&self, budget: Budget) -> bool {
        self.exceeded[budget as usize]
    }

    /// Whether any budget was refused (later work may then be skipped: the spec is refused).
    pub fn any_exceeded(&self) -> bool {
        self.exceeded.iter().any(|&e| e)
    }

    /// Whether a "did you mean" may be looked for `word` among `candidates` names; counts it.
    pub fn may_suggest(&mut self, word: &str, candidates: usize) -> bool {
        let b = &self.budgets;
        if self.suggestions >= b.suggestions
            || candidates > b.suggestion_candidates
            || word.chars().nth(b.suggestion_word_len).is_some()
        {
            return false;
        }
        self.suggestions += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_stops_at_the_budget_and_reports_once() {
        let mut m = Meter::new(Budgets {
            jobs: 10,
            ..Budgets::default()
        });
        assert_eq!(m.spend(Budget::Jobs, 4), Ok(()));
        assert_eq!(m.spend(Budget::Jobs, 6), Ok(()));
        assert_eq!(m.left(Budget::Jobs), 0);
        assert_eq!(m.spend(Budget::Jobs, 1), Err(true));
        assert_eq!(m.spend(Budget::Jobs, 0), Err(false));
        assert!(m.exceeded(Budget::Jobs) && m.any_exceeded());
        assert_eq!(m.spend(Budget::Instances, u64::MAX), Err(true));
        assert_eq!(
            Budget::Jobs.message(&m.budgets, "x"),
            "spec exceeds the budget for jobs (10): x"
        );
    }

    #[test]
    fn suggestions_are_skipped_for_long_words_many_candidates_or_too_often() {
        let mut m = Meter::new(Budgets {
            suggestions: 2,
            ..Budgets::default()
        });
        assert!(!m.may_suggest(&"x".repeat(65), 1));
        assert!(m.may_suggest(&"x".repeat(64), 1));
        assert!(!m.may_suggest("x", 10_001));
        assert!(m.may_suggest("x", 10_000));
        assert!(!m.may_suggest("x", 1));
    }
}
