//! Where a problem is ([`Loc`]), the problems found so far and the budgets spent ([`Errors`]),
//! and "did you mean".

use super::budget::{Budget, Budgets, Meter};

use super::SpecError;
use std::fmt;

/// A place in the spec, built as a chain of borrowed segments so that making one costs nothing
/// until it is displayed: `jobs[3] ("b_{i}").depends_on[0]`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Loc<'a> {
    Root,
    Key(&'a Loc<'a>, &'a str),
    Index(&'a Loc<'a>, usize),
    /// An entry of a named list, shown with its (unexpanded) name when it has one.
    Entry(&'a Loc<'a>, usize, Option<&'a str>),
}

impl<'a> Loc<'a> {
    pub fn key(&'a self, key: &'a str) -> Loc<'a> {
        Loc::Key(self, key)
    }

    pub fn index(&'a self, index: usize) -> Loc<'a> {
        Loc::Index(self, index)
    }

    pub fn entry(&'a self, index: usize, name: Option<&'a str>) -> Loc<'a> {
        Loc::Entry(self, index, name)
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Root => Ok(()),
            Loc::Key(parent, key) => {
                parent.write(f)?;
                if !matches!(parent, Loc::Root) {
                    f.write_str(".")?;
                }
                f.write_str(key)
            }
            Loc::Index(parent, i) => {
                parent.write(f)?;
                write!(f, "[{i}]")
            }
            Loc::Entry(parent, i, name) => {
                parent.write(f)?;
                write!(f, "[{i}]")?;
                match name {
                    Some(n) => write!(f, " ({n:?})"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Root => f.write_str("top level"),
            other => other.write(f),
        }
    }
}

/// The most problems kept; past it they are only counted, so that a million bad instances do
/// not make a million messages.
pub(super) const MAX_ERRORS: usize = 200;

/// Problems found so far, and what the spec has spent of its budgets (a budget refused is a
/// problem, and every pass that spends one already carries this).
#[derive(Debug, Default)]
pub(super) struct Errors {
    list: Vec<SpecError>,
    dropped: usize,
    pub meter: Meter,
}

impl Errors {
    pub fn with_budgets(budgets: Budgets) -> Errors {
        Errors {
            meter: Meter::new(budgets),
            ..Errors::default()
        }
    }

    /// Spends `amount` of `budget`; if that would exceed it, reports the refusal at `location`
    /// (once per budget, with `detail()` after the budget's name) and returns false.
    pub fn spend(
        &mut self,
        location: impl fmt::Display,
        budget: Budget,
        amount: u64,
        detail: impl FnOnce() -> String,
    ) -> bool {
        match self.meter.spend(budget, amount) {
            Ok(()) => true,
            Err(first) => {
                if first {
                    // Kept even past the cap: it is why the spec is refused.
                    let message = budget.message(&self.meter.budgets, &detail());
                    self.list.push(SpecError {
                        location: location.to_string(),
                        message,
                    });
                }
                false
            }
        }
    }

    pub fn push(&mut self, location: impl fmt::Display, message: impl Into<String>) {
        if self.is_full() {
            self.dropped += 1;
        } else {
            self.list.push(SpecError {
                location: location.to_string(),
                message: message.into(),
            });
        }
    }

    /// Whether further problems are only counted (callers may skip costly messages).
    pub fn is_full(&self) -> bool {
        self.list.len() >= MAX_ERRORS
    }

    /// [`did_you_mean`] among `count` candidates, unless the suggestion budgets say to skip it
    /// (a long word, many candidates, or many suggestions already).
    pub fn suggest<'c>(
        &mut self,
        word: &str,
        count: usize,
        candidates: impl IntoIterator<Item = &'c str>,
    ) -> String {
        if self.is_full() || !self.meter.may_suggest(word, count) {
            return String::new();
        }
        did_you_mean(word, candidates)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn into_vec(mut self) -> Vec<SpecError> {
        if self.dropped > 0 {
            self.list.push(SpecError {
                location: "top level".to_string(),
                message: format!(
                    "{} more problem{} not shown",
                    self.dropped,
                    if self.dropped == 1 { "" } else { "s" }
                ),
            });
        }
        self.list
    }
}

/// Words longer than this (in characters) get no suggestion: the edit distance costs the
/// product of the lengths (the default of [`Budgets::suggestion_word_len`], for the fixed lists
/// of keys and settings that are not metered).
pub(super) const SUGGEST_MAX_WORD: usize = 64;

/// The candidate closest to `word`, with whether it is close enough to be a likely typo. `None`
/// for a word over [`SUGGEST_MAX_WORD`] characters. A candidate whose length alone puts it
/// further than the best so far is not compared.
pub(super) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<(&'c str, bool)> {
    let len = word.chars().count();
    if len > SUGGEST_MAX_WORD {
        return None;
    }
    let mut best: Option<(&str, usize)> = None;
    for c in candidates {
        let c_len = c.chars().count();
        if best.is_some_and(|(_, bd)| c_len.abs_diff(len) >= bd) {
            continue;
        }
        let d = if c.starts_with(word) || word.starts_with(c) {
            c_len.abs_diff(len)
        } else {
            strsim::damerau_levenshtein(word, c)
        };
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some((c, d));
        }
    }
    best.map(|(c, d)| {
        let limit = (word.chars().count().max(c.chars().count()) / 3).max(2);
        (c, d <= limit || c.starts_with(word) || word.starts_with(c))
    })
}

/// `"; did you mean `x`?"` when a candidate is close, else empty.
pub(super) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> String {
    match closest(word, candidates) {
        Some((c, true)) => format!("; did you mean `{c}`?"),
        _ => String::new(),
    }
}

/// The message for an unknown key: always names the closest known key.
pub(super) fn unknown_key_message(key: &str, known: &[&str]) -> String {
    match closest(key, known.iter().copied()) {
        Some((c, true)) => format!("unknown key `{key}`; did you mean `{c}`?"),
        Some((c, false)) => format!("unknown key `{key}` (the closest known key is `{c}`)"),
        None => format!("unknown key `{key}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_display() {
        let root = Loc::Root;
        assert_eq!(root.to_string(), "top level");
        let jobs = root.key("jobs");
        let job = jobs.entry(3, Some("b_{i}"));
        let deps = job.key("depends_on");
        assert_eq!(
            deps.index(0).to_string(),
            r#"jobs[3] ("b_{i}").depends_on[0]"#
        );
        let files = root.key("files");
        assert_eq!(
            files.entry(1, None).key("path").to_string(),
            "files[1].path"
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            unknown_key_message("depend_on", &["depends_on", "command"]),
            "unknown key `depend_on`; did you mean `depends_on`?"
        );
        assert_eq!(
            unknown_key_message("zzzzzzzzzz", &["name", "command"]),
            "unknown key `zzzzzzzzzz` (the closest known key is `name`)"
        );
        assert_eq!(
            did_you_mean("a_1", ["a_2", "zzzz"]),
            "; did you mean `a_2`?"
        );
        assert_eq!(did_you_mean("x", std::iter::empty()), "");
    }

    #[test]
    fn errors_are_capped_and_counted() {
        let mut errs = Errors::default();
        for i in 0..MAX_ERRORS + 5 {
            errs.push(Loc::Root, format!("problem {i}"));
        }
        let v = errs.into_vec();
        assert_eq!(v.len(), MAX_ERRORS + 1);
        assert_eq!(v.last().unwrap().message, "5 more problems not shown");
    }
}
