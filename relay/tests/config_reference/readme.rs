//! The keys the README's configuration reference documents.
//!
//! The table is the one under the header `| Key | Default | Meaning |`. Its first column
//! names keys in backticks; several keys in one row are separate backtick spans
//! (`` `a` / `b` ``) or one span with braces (`` `sink.{sns,sqs}.region` ``).

use std::collections::BTreeSet;

const HEADER: &str = "| Key | Default | Meaning |";

/// The documented keys, each with the table line that documents it.
pub fn documented_keys(readme: &str) -> Vec<(String, usize)> {
    let mut lines = readme.lines().enumerate();
    lines
        .by_ref()
        .find(|(_, l)| l.trim() == HEADER)
        .unwrap_or_else(|| panic!("README.md has no table headed {HEADER:?}"));
    let mut keys = Vec::new();
    // The separator row, then the rows up to the first line that is not a row.
    for (n, line) in lines.skip(1).take_while(|(_, l)| l.starts_with('|')) {
        let first = line.split('|').nth(1).unwrap_or_default();
        let spans: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        assert!(
            !spans.is_empty(),
            "README.md:{}: no key in {first:?}",
            n + 1
        );
        for span in spans {
            keys.extend(expand(span).into_iter().map(|k| (k, n + 1)));
        }
    }
    keys
}

pub fn key_set(documented: &[(String, usize)]) -> BTreeSet<String> {
    documented.iter().map(|(k, _)| k.clone()).collect()
}

/// `a.{b,c}.d` → `a.b.d`, `a.c.d` (nested braces are not needed by the table).
fn expand(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let close = open
        + pattern[open..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed brace in {pattern:?}"));
    let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
    pattern[open + 1..close]
        .split(',')
        .flat_map(|alt| expand(&format!("{head}{}{tail}", alt.trim())))
        .collect()
}

#[test]
fn braces_expand_to_every_alternative() {
    assert_eq!(
        expand("sink.{sns,sqs}.x_{a, b}"),
        [
            "sink.sns.x_a",
            "sink.sns.x_b",
            "sink.sqs.x_a",
            "sink.sqs.x_b"
        ]
    );
}
