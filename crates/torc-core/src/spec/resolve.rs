//! Name lookups that stay fast at a million names: a hash map for exact names and anchored
//! literal regexes, a sorted list narrowed by a regex's literal prefix for the rest, a cache per
//! distinct regex; and cycle detection over the dependency graph.

use super::budget::Budget;
use super::diag::{Errors, Loc};
use crate::ids::JobId;
use crate::model::JobDef;
use std::collections::HashMap;
use std::rc::Rc;

/// The outcome of resolving one regex over a set of names.
#[derive(Debug)]
pub(super) enum RegexMatch {
    /// Indexes of the matching names, ascending.
    Matches(Rc<[u32]>),
    Invalid(String),
    /// Testing it against its candidates would exceed the regex work budget (reported).
    OverBudget,
}

/// Names to their indexes, with regex resolution.
pub(super) struct NameIndex<'n> {
    names: &'n [String],
    map: HashMap<&'n str, u32>,
    /// `(name, index)` sorted by name; built on the first regex that needs a scan.
    sorted: Option<Vec<(&'n str, u32)>>,
    cache: HashMap<String, Rc<RegexMatch>>,
}

impl<'n> NameIndex<'n> {
    /// Indexes `names`; a name seen twice keeps its first index, and each later index is
    /// returned as `(index, first_index)` so that the caller can report it.
    pub fn new(names: &'n [String]) -> (NameIndex<'n>, Vec<(u32, u32)>) {
        let mut map = HashMap::with_capacity(names.len());
        let mut duplicates = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let i = i as u32;
            if let Some(first) = map.insert(name.as_str(), i) {
                map.insert(name.as_str(), first);
                duplicates.push((i, first));
            }
        }
        let index = NameIndex {
            names,
            map,
            sorted: None,
            cache: HashMap::new(),
        };
        (index, duplicates)
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }

    pub fn name(&self, index: u32) -> &'n str {
        &self.names[index as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &'n str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// The names matching `pattern` (cached by pattern text). The `bool` is true the first
    /// time this pattern is seen, so that a problem with it is reported once. The names a
    /// pattern is tested against are spent from the regex work budget before it is tested
    /// (refused at `loc`).
    pub fn resolve_regex(
        &mut self,
        pattern: &str,
        errs: &mut Errors,
        loc: &Loc<'_>,
    ) -> (Rc<RegexMatch>, bool) {
        if let Some(hit) = self.cache.get(pattern) {
            return (hit.clone(), false);
        }
        let outcome = Rc::new(self.compute(pattern, errs, loc));
        self.cache.insert(pattern.to_string(), outcome.clone());
        (outcome, true)
    }

    fn compute(&mut self, pattern: &str, errs: &mut Errors, loc: &Loc<'_>) -> RegexMatch {
        // A plain anchored literal is a valid regex by construction: a lookup, no compile.
        if let Some(literal) = anchored_literal(pattern) {
            let hit: Vec<u32> = self.get(&literal).into_iter().collect();
            return RegexMatch::Matches(hit.into());
        }
        let re = match regex::RegexBuilder::new(pattern)
            .size_limit(1 << 22)
            .build()
        {
            Ok(re) => re,
            Err(e) => return RegexMatch::Invalid(e.to_string()),
        };
        let prefix = literal_prefix(pattern);
        let names = self.names;
        let mut spend = |candidates: usize| {
            let n = candidates as u64;
            errs.spend(loc, Budget::RegexWork, n, || {
                format!("regex `{pattern}` would be tested against {n} more names")
            })
        };
        let mut hits: Vec<u32> = if prefix.is_empty() {
            if !spend(names.len()) {
                return RegexMatch::OverBudget;
            }
            names
                .iter()
                .enumerate()
                .filter(|(_, n)| re.is_match(n))
                .map(|(i, _)| i as u32)
                .collect()
        } else {
            let sorted = self.sorted.get_or_insert_with(|| {
                let mut v: Vec<(&str, u32)> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.as_str(), i as u32))
                    .collect();
                v.sort_unstable();
                v
            });
            let start = sorted.partition_point(|(n, _)| *n < prefix.as_str());
            // Names with the prefix are together in the sorted list.
            let len = sorted[start..].partition_point(|(n, _)| n.starts_with(prefix.as_str()));
            if !spend(len) {
                return RegexMatch::OverBudget;
            }
            sorted[start..start + len]
                .iter()
                .filter(|(n, _)| re.is_match(n))
                .map(|(_, i)| *i)
                .collect()
        };
        hits.sort_unstable();
        hits.dedup();
        RegexMatch::Matches(hits.into())
    }
}

const META: &[char] = &[
    '\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

/// The one character an escape like `\.` stands for, if it is a plain escaped punctuation mark.
fn escaped_literal(c: char) -> Option<char> {
    // `\<` and `\>` are word boundaries, not characters.
    (c.is_ascii_punctuation() && c != '<' && c != '>').then_some(c)
}

/// The name a pattern like `^a_12$` or `^x_0\.5$` matches exactly, if it is such a pattern.
pub(super) fn anchored_literal(pattern: &str) -> Option<String> {
    let inner = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(escaped_literal(chars.next()?)?);
        } else if META.contains(&c) {
            return None;
        } else {
            out.push(c);
        }
    }
    // `\$` at the very end was consumed as an escape, so the anchor was not really there.
    if inner.ends_with('\\') {
        return None;
    }
    Some(out)
}

/// A literal every match must start with: the plain characters after a leading `^`, minus a
/// last one made optional by a quantifier. Empty when there is none or when a top-level `|`
/// could let a match start otherwise.
pub(super) fn literal_prefix(pattern: &str) -> String {
    let Some(body) = pattern.strip_prefix('^') else {
        return String::new();
    };
    if has_top_level_alternation(body) {
        return String::new();
    }
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        let lit = if c == '\\' {
            match chars.next().and_then(escaped_literal) {
                Some(l) => l,
                None => break,
            }
        } else if META.contains(&c) {
            break;
        } else {
            c
        };
        if matches!(chars.peek(), Some('?' | '*' | '{')) {
            break;
        }
        if chars.peek() == Some(&'+') {
            // `x+` starts with `x`, unless another quantifier makes it optional: `x+??`,
            // `x+*`, `x+{0,1}` (a `?` right after `+` only makes it lazy).
            let mut after = chars.clone();
            after.next();
            if after.peek() == Some(&'?') {
                after.next();
            }
            if matches!(after.peek(), Some('?' | '*' | '{' | '+')) {
                break;
            }
        }
        out.push(lit);
    }
    out
}

fn has_top_level_alternation(pattern: &str) -> bool {
    let mut depth = 0i32;
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => depth -= 1,
            '|' if !in_class && depth <= 0 => return true,
            _ => {}
        }
    }
    false
}

/// One dependency cycle among `n` jobs, as job indexes in run order (each must finish before
/// the next; the first is repeated at the end), if there is any. `deps(j)` are the jobs `j`
/// waits for.
pub(super) fn find_cycle<'d>(n: usize, deps: &dyn Fn(usize) -> &'d [JobId]) -> Option<Vec<u32>> {
    // Kahn's algorithm: strip jobs whose dependencies are all stripped.
    let mut remaining: Vec<u32> = (0..n).map(|j| deps(j).len() as u32).collect();
    let mut offsets = vec![0usize; n + 1];
    for j in 0..n {
        for p in deps(j) {
            offsets[p.index() + 1] += 1;
        }
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut children = vec![0u32; offsets[n]];
    let mut fill = offsets.clone();
    for j in 0..n {
        for p in deps(j) {
            children[fill[p.index()]] = j as u32;
            fill[p.index()] += 1;
        }
    }
    let mut stack: Vec<u32> = (0..n as u32)
        .filter(|&j| remaining[j as usize] == 0)
        .collect();
    let mut done = 0usize;
    while let Some(j) = stack.pop() {
        done += 1;
        for &c in &children[offsets[j as usize]..offsets[j as usize + 1]] {
            remaining[c as usize] -= 1;
            if remaining[c as usize] == 0 {
                stack.push(c);
            }
        }
    }
    if done == n {
        return None;
    }
    // Every job left waits for at least one job left: walk such edges until a job repeats.
    let start = (0..n).find(|&j| remaining[j] > 0)? as u32;
    let mut position: HashMap<u32, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut current = start;
    loop {
        if let Some(&at) = position.get(&current) {
            let mut cycle: Vec<u32> = path[at..].to_vec();
            // `path` follows "waits for" edges; reverse it into run order.
            cycle.reverse();
            cycle.push(cycle[0]);
            return Some(cycle);
        }
        position.insert(current, path.len());
        path.push(current);
        current = deps(current as usize)
            .iter()
            .find(|p| remaining[p.index()] > 0)?
            .index() as u32;
    }
}

/// A job that reads a file or user data waits for every job that writes it (never itself).
/// The edges are counted and spent before any is added; false (reported) if refused.
pub(super) fn add_data_dependencies(
    jobs: &mut [JobDef],
    n_files: usize,
    n_user_data: usize,
    errs: &mut Errors,
) -> bool {
    let mut file_writers: Vec<Vec<u32>> = vec![Vec::new(); n_files];
    let mut ud_writers: Vec<Vec<u32>> = vec![Vec::new(); n_user_data];
    for (j, job) in jobs.iter().enumerate() {
        for &f in &job.output_files {
            file_writers[f as usize].push(j as u32);
        }
        for &u in &job.output_user_data {
            ud_writers[u as usize].push(j as u32);
        }
    }
    let mut edges = 0u64;
    for job in jobs.iter() {
        let from_files = job
            .input_files
            .iter()
            .map(|&f| file_writers[f as usize].len());
        let from_data = job
            .input_user_data
            .iter()
            .map(|&u| ud_writers[u as usize].len());
        edges = from_files
            .chain(from_data)
            .fold(edges, |sum, n| sum.saturating_add(n as u64));
    }
    let root = Loc::Root;
    if !errs.spend(root.key("jobs"), Budget::DependencyEdges, edges, || {
        format!("jobs that read files and user data wait for their {edges} writers")
    }) {
        return false;
    }
    for (j, job) in jobs.iter_mut().enumerate() {
        let writers = job
            .input_files
            .iter()
            .flat_map(|&f| &file_writers[f as usize])
            .chain(
                job.input_user_data
                    .iter()
                    .flat_map(|&u| &ud_writers[u as usize]),
            );
        let extra: Vec<JobId> = writers
            .filter(|&&w| w as usize != j)
            .map(|&w| JobId::from_index(w as usize))
            .collect();
        job.depends_on.extend(extra);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn literals_and_prefixes() {
        assert_eq!(anchored_literal("^a_12$").as_deref(), Some("a_12"));
        assert_eq!(anchored_literal("^x_0\\.5$").as_deref(), Some("x_0.5"));
        assert_eq!(anchored_literal("^a.12$"), None);
        assert_eq!(anchored_literal("a_12$"), None);
        assert_eq!(anchored_literal("^a\\$"), None);
        assert_eq!(anchored_literal("^a\\d$"), None);
        assert_eq!(literal_prefix("^c_[0-9]+$"), "c_");
        assert_eq!(literal_prefix("^stage1_"), "stage1_");
        assert_eq!(literal_prefix("^ab?c"), "a");
        assert_eq!(literal_prefix("^ab*"), "a");
        assert_eq!(literal_prefix("^ab{2}"), "a");
        assert_eq!(literal_prefix("^ab+"), "ab");
        assert_eq!(literal_prefix("^ab+?c"), "ab");
        assert_eq!(literal_prefix("^ab+??"), "a");
        assert_eq!(literal_prefix("^ab+*"), "a");
        assert_eq!(literal_prefix("^a|b"), "");
        assert_eq!(literal_prefix("^a(b|c)"), "a");
        assert_eq!(literal_prefix("^a[|]"), "a");
        assert_eq!(literal_prefix("c_"), "");
        assert_eq!(literal_prefix("^(?i)abc"), "");
    }

    proptest::proptest! {
        #[test]
        fn literal_shortcuts_agree_with_the_regex_engine(
            body in "[a-c_.*+?()|\\[\\]{}^$<>\\\\ -]{0,8}",
            others in proptest::collection::vec("[a-c_.*+?<> -]{0,6}", 0..6),
        ) {
            let pattern = format!("^{body}$");
            if let Some(literal) = anchored_literal(&pattern) {
                let re = regex::Regex::new(&pattern).expect("a literal compiles");
                proptest::prop_assert!(re.is_match(&literal));
                for o in &others {
                    proptest::prop_assert_eq!(re.is_match(o), *o == literal);
                }
            }
            if let Ok(re) = regex::Regex::new(&pattern) {
                let prefix = literal_prefix(&pattern);
                for o in others.iter().chain(std::iter::once(&body)) {
                    if re.is_match(o) {
                        proptest::prop_assert!(o.starts_with(&prefix), "{} {}", o, prefix);
                    }
                }
            }
        }
    }

    #[test]
    fn regexes_resolve_with_and_without_prefix() {
        let n = names(&["c_1", "b_1", "c_2", "c_x", "cc_1", "a"]);
        let (mut idx, dups) = NameIndex::new(&n);
        assert!(dups.is_empty());
        let mut errs = Errors::default();
        let mut get =
            |idx: &mut NameIndex, p: &str| match &*idx.resolve_regex(p, &mut errs, &Loc::Root).0 {
                RegexMatch::Matches(m) => m.to_vec(),
                other => panic!("{other:?}"),
            };
        assert_eq!(get(&mut idx, "^c_[0-9]+$"), [0, 2]);
        assert_eq!(get(&mut idx, "_1"), [0, 1, 4]);
        assert_eq!(get(&mut idx, "^c_2$"), [2]);
        assert_eq!(get(&mut idx, "^zz"), Vec::<u32>::new());
        assert_eq!(get(&mut idx, "^c_|^a$"), [0, 2, 3, 5]);
        let mut errs = Errors::default();
        let root = Loc::Root;
        assert!(matches!(
            *idx.resolve_regex("(", &mut errs, &root).0,
            RegexMatch::Invalid(_)
        ));
        assert!(!idx.resolve_regex("(", &mut errs, &root).1);
    }

    #[test]
    fn duplicates_are_reported() {
        let n = names(&["a", "b", "a"]);
        let (idx, dups) = NameIndex::new(&n);
        assert_eq!(dups, [(2, 0)]);
        assert_eq!(idx.get("a"), Some(0));
    }

    fn ids(v: &[u32]) -> Vec<JobId> {
        v.iter().map(|&i| JobId::from_index(i as usize)).collect()
    }

    #[test]
    fn cycles() {
        let acyclic = [ids(&[]), ids(&[0]), ids(&[1])];
        assert_eq!(find_cycle(3, &|j| &acyclic[j]), None);
        let deps = [ids(&[2]), ids(&[0]), ids(&[1]), ids(&[0])];
        let c = find_cycle(4, &|j| &deps[j]).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c.first(), c.last());
        for w in c.windows(2) {
            // w[1] waits for w[0]
            assert!(deps[w[1] as usize].contains(&JobId::from_index(w[0] as usize)));
        }
        let selfish = [ids(&[0])];
        assert_eq!(find_cycle(1, &|j| &selfish[j]), Some(vec![0, 0]));
    }
}
