//! Quoting for the two languages a batch script speaks: bash (its body) and sbatch's own reader
//! of `#SBATCH` lines, which is not a shell.
//!
//! sbatch splits a directive line at unquoted white space, takes `"…"` and `'…'` as quotes, lets
//! a backslash escape the next character everywhere (inside quotes too, unlike a shell) and treats
//! an unquoted `#` as the start of a comment. So a directive value is written as is when it only
//! holds harmless characters, and otherwise inside double quotes with `\` and `"` escaped.
//!
//! Neither language can carry a newline safely on one line: callers reject values that hold one
//! (see `crate::script`).

use std::borrow::Cow;

/// Characters that mean nothing special to bash nor to sbatch's directive reader.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '-')
}

/// `s` as one bash word: as is when it needs no quoting, else in single quotes (a `'` inside is
/// written `'\''`). The empty string is `''`.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// `s` as one argument of an `#SBATCH` line: as is when it needs no quoting, else in double
/// quotes with `\` and `"` escaped by a backslash.
pub fn sbatch_quote(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const AWKWARD: &[&str] = &[
        "",
        "plain",
        "two words",
        "it's",
        "''",
        "'\\''",
        "\"double\"",
        "back\\slash",
        "$HOME",
        "${x:-y}",
        "$(touch /tmp/torc-slurm-quote-pwned)",
        "`id`",
        "a;b|c&d",
        "glob*?[x]",
        "~user",
        "#comment",
        "!history",
        "tab\there",
        "trailing\\",
        "ünïcødé ✓",
        "-n",
        "a=b c",
    ];

    #[test]
    fn plain_words_are_left_alone() {
        for s in [
            "abc",
            "http://127.0.0.1:8080/x",
            "a-b_c.d",
            "/abs/path",
            "x=y,z@h%j+1",
        ] {
            assert_eq!(shell_quote(s), s);
            assert_eq!(sbatch_quote(s), s);
        }
    }

    #[test]
    fn shell_quote_spellings() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn sbatch_quote_spellings() {
        assert_eq!(sbatch_quote(""), "\"\"");
        assert_eq!(sbatch_quote("a b"), "\"a b\"");
        assert_eq!(sbatch_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(sbatch_quote("a\\b"), "\"a\\\\b\"");
        assert_eq!(sbatch_quote("x#y"), "\"x#y\"");
        assert_eq!(sbatch_quote("it's"), "\"it's\"");
    }

    /// Bash itself reads every quoted word back as the original string.
    #[test]
    fn bash_reads_back_what_was_quoted() {
        let mut script = String::new();
        for s in AWKWARD {
            script.push_str("printf '%s\\0' ");
            script.push_str(&shell_quote(s));
            script.push('\n');
        }
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let words: Vec<&str> = std::str::from_utf8(&out.stdout)
            .expect("utf-8")
            .split_terminator('\0')
            .collect();
        assert_eq!(words, AWKWARD);
    }
}
