//! Error reporting for the configuration: turns a TOML syntax error, a serde
//! decoding error or a validation failure into a [`Diagnostic`] that names the
//! file, the 1-based line and column, the section and the key.
//!
//! The typed structs are decoded with serde (`deny_unknown_fields`), whose
//! errors carry a byte span but only a bare message. The same text is also
//! parsed into toml's spanned document ([`DeTable`]); walking it finds which
//! key a span belongs to, and, the other way, where a key named by a
//! validation rule sits in the file.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A configuration problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct Diagnostic {
    /// The file name as given to the loader (`bote.toml`, `<embedded default>`).
    pub file: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value.
    pub column: usize,
    /// The section, e.g. `[router]` or `[[listener]] #2`; `None` at top level.
    pub section: Option<String>,
    /// The offending key, when there is one (`link-capacity`).
    pub key: Option<String>,
    /// What is wrong, without the location prefix.
    pub message: String,
}

/// One step of a path from the document root to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSeg {
    Key(String),
    Index(usize),
}

/// A path such as `listener[1].link-capacity`.
pub(crate) type Path = Vec<PathSeg>;

pub(crate) fn key(k: &str) -> PathSeg {
    PathSeg::Key(k.to_owned())
}

/// Where the problem is and what it is, before it is placed in the file.
pub(crate) struct Problem {
    pub path: Path,
    pub message: String,
}

impl Problem {
    pub fn new(path: Path, message: impl Into<String>) -> Self {
        Problem {
            path,
            message: message.into(),
        }
    }
}

/// The 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// The section and the key a path names: `listener[1].port` is the key
/// `port` in `[[listener]] #2`.
fn describe(path: &[PathSeg]) -> (Option<String>, Option<String>) {
    let (section, rest) = match path {
        [] => (None, path),
        [PathSeg::Key(_)] => (None, path),
        [PathSeg::Key(table), PathSeg::Index(i), rest @ ..] => {
            (Some(format!("[[{table}]] #{}", i + 1)), rest)
        }
        [PathSeg::Key(table), rest @ ..] => (Some(format!("[{table}]")), rest),
        [PathSeg::Index(_), ..] => (None, path),
    };
    let mut key = String::new();
    for seg in rest {
        match seg {
            PathSeg::Key(k) => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
            PathSeg::Index(i) => key.push_str(&format!("[{i}]")),
        }
    }
    (section, (!key.is_empty()).then_some(key))
}

fn in_section(section: &Option<String>) -> String {
    match section {
        Some(s) => format!("in {s}"),
        None => "at the top level".to_owned(),
    }
}

/// The deepest path whose key span equals `span` (the error is about the
/// key) or whose value span contains it (the error is about the value).
fn locate(root: &DeTable<'_>, span: &Range<usize>) -> (Path, bool) {
    fn visit_table(
        table: &DeTable<'_>,
        span: &Range<usize>,
        path: &mut Path,
        best: &mut (Path, bool),
    ) {
        for (k, v) in table.iter() {
            path.push(PathSeg::Key(k.get_ref().to_string()));
            if k.span() == *span {
                *best = (path.clone(), true);
            } else {
                if contains(&v.span(), span) && path.len() >= best.0.len() {
                    *best = (path.clone(), false);
                }
                visit_value(v, span, path, best);
            }
            path.pop();
        }
    }
    fn visit_value(
        value: &Spanned<DeValue<'_>>,
        span: &Range<usize>,
        path: &mut Path,
        best: &mut (Path, bool),
    ) {
        match value.get_ref() {
            DeValue::Table(t) => visit_table(t, span, path, best),
            DeValue::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(PathSeg::Index(i));
                    if contains(&v.span(), span) && path.len() >= best.0.len() {
                        *best = (path.clone(), false);
                    }
                    visit_value(v, span, path, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
        outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
    }
    let mut best = (Vec::new(), false);
    visit_table(root, span, &mut Vec::new(), &mut best);
    best
}

/// The value `seg` names inside `value` (inside the document `root` when
/// `value` is `None`), if the file has it.
fn child<'a, 'de>(
    root: &'a DeTable<'de>,
    value: Option<&'a Spanned<DeValue<'de>>>,
    seg: &PathSeg,
) -> Option<&'a Spanned<DeValue<'de>>> {
    match (seg, value.map(Spanned::get_ref)) {
        (PathSeg::Key(k), None) => root.get(k.as_str()),
        (PathSeg::Key(k), Some(DeValue::Table(t))) => t.get(k.as_str()),
        (PathSeg::Index(i), Some(DeValue::Array(a))) => a.get(*i),
        _ => None,
    }
}

/// The span of the value at `path`, or of the nearest ancestor present in
/// the file (a defaulted key points at its section's header).
fn span_of(root: &DeTable<'_>, path: &[PathSeg]) -> Option<Range<usize>> {
    let mut found = None;
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in path {
        let Some(next) = child(root, value, seg) else {
            break;
        };
        let span = next.span();
        if span.start < span.end || found.is_none() {
            found = Some(span);
        }
        value = Some(next);
    }
    found
}

/// `a`, `b`, `c` -> "a, b or c".
fn or_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The names quoted in backticks in a serde message, without the
/// camelCase aliases (they are accepted but not advertised).
fn backticked(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| {
            !n.chars().any(|c| c.is_ascii_uppercase()) || n.chars().all(|c| !c.is_lowercase())
        })
        .collect()
}

/// serde's name for an expected type, in the words of a TOML user.
fn expected_type(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        _ if expected.starts_with("struct ") => "a table".to_owned(),
        _ => expected.to_owned(),
    }
}

/// `integer `70000`` -> `70000`.
fn found_value(found: &str) -> &str {
    match found.split_once(" `") {
        Some((_, value)) => value.strip_suffix('`').unwrap_or(value),
        None => found,
    }
}

/// Rewrites a serde message about the key at `path` into Bote's words.
fn rewrite(
    serde_message: &str,
    path: &[PathSeg],
    at_key: bool,
) -> (Option<String>, Option<String>, String) {
    let (section, key) = if at_key {
        describe(&path[..path.len().saturating_sub(1)])
    } else {
        describe(path)
    };
    let subject = |key: &Option<String>| match (key, &section) {
        (Some(k), Some(s)) => format!("{k} in {s}"),
        (Some(k), None) => k.clone(),
        (None, Some(s)) => s.clone(),
        (None, None) => "configuration".to_owned(),
    };

    if let Some(rest) = serde_message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let names = backticked(expected);
        let hint = if names.is_empty() {
            String::new()
        } else {
            format!(" (expected one of: {})", names.join(", "))
        };
        let message = format!("unknown key \"{name}\" {}{hint}", in_section(&section));
        return (section, Some(name.to_owned()), message);
    }
    if let Some(rest) = serde_message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let message = format!("missing required key \"{name}\" {}", in_section(&section));
        return (section, Some(name.to_owned()), message);
    }
    if let Some(rest) = serde_message.strip_prefix("duplicate field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        let message = format!(
            "key \"{name}\" is given twice {} (perhaps once in kebab-case and once in camelCase)",
            in_section(&section)
        );
        return (section, Some(name.to_owned()), message);
    }
    if let Some(rest) = serde_message.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let names = backticked(expected);
        let message = format!(
            "{}: unknown value \"{value}\" (expected {})",
            subject(&key),
            or_list(&names)
        );
        return (section, key, message);
    }
    if let Some(rest) = serde_message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let message = format!(
            "{}: expected {}, found {found}",
            subject(&key),
            expected_type(expected)
        );
        return (section, key, message);
    }
    if let Some(rest) = serde_message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let message = format!(
            "{}: invalid value {} (expected {})",
            subject(&key),
            found_value(found),
            expected_type(expected)
        );
        return (section, key, message);
    }
    let message = format!("{}: {serde_message}", subject(&key));
    (section, key, message)
}

/// Builds the diagnostic for a toml syntax error or serde decoding error.
pub(crate) fn from_toml_error(
    file: &str,
    text: &str,
    doc: Option<&DeTable<'_>>,
    error: &toml::de::Error,
) -> Diagnostic {
    let span = error.span().unwrap_or(0..0);
    let (line, column) = line_column(text, span.start);
    let message = error.message().trim().to_owned();
    let Some(doc) = doc else {
        return Diagnostic {
            file: file.to_owned(),
            line,
            column,
            section: None,
            key: None,
            message: format!("TOML syntax error: {message}"),
        };
    };
    let (path, at_key) = locate(doc, &span);
    let (section, key, message) = rewrite(&message, &path, at_key);
    // serde blames a duplicated key on its table; point at the second spelling.
    let (line, column) = match (&key, message.contains("is given twice")) {
        (Some(name), true) => {
            later_spelling(doc, &path, name).map_or((line, column), |at| line_column(text, at))
        }
        _ => (line, column),
    };
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        section,
        key,
        message,
    }
}

/// `linkCapacity` -> `link-capacity`.
fn kebab(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The offset of the last of the keys in the table at `path` that spell
/// `name` (in kebab-case or as a camelCase alias).
fn later_spelling(doc: &DeTable<'_>, path: &[PathSeg], name: &str) -> Option<usize> {
    let mut table = doc;
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for seg in path {
        value = Some(child(table, value, seg)?);
    }
    if let Some(v) = value {
        table = v.get_ref().as_table()?;
    }
    table
        .iter()
        .filter(|(k, _)| kebab(k.get_ref()) == name)
        .map(|(k, _)| k.span().start)
        .max()
}

/// Builds the diagnostic for a validation problem at a path.
pub(crate) fn from_problem(
    file: &str,
    text: &str,
    doc: &DeTable<'_>,
    problem: Problem,
) -> Diagnostic {
    let span = span_of(doc, &problem.path).unwrap_or(0..0);
    let (line, column) = line_column(text, span.start);
    let (section, key) = describe(&problem.path);
    let subject = match (&key, &section) {
        (Some(k), Some(s)) => format!("{k} in {s}: "),
        (Some(k), None) => format!("{k}: "),
        (None, Some(s)) => format!("{s}: "),
        (None, None) => String::new(),
    };
    Diagnostic {
        file: file.to_owned(),
        line,
        column,
        section,
        key,
        message: format!("{subject}{}", problem.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        // `=` on line 2 is after `bé ` (3 characters, 4 bytes).
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn paths_name_array_tables_one_based() {
        let path = vec![key("listener"), PathSeg::Index(1), key("port")];
        assert_eq!(
            describe(&path),
            (Some("[[listener]] #2".to_owned()), Some("port".to_owned()))
        );
        assert_eq!(
            describe(&[key("router"), key("id")]),
            (Some("[router]".to_owned()), Some("id".to_owned()))
        );
        assert_eq!(describe(&[key("bogus")]), (None, Some("bogus".to_owned())));
    }

    #[test]
    fn expected_lists_hide_camel_case_aliases_but_keep_upper_case_values() {
        assert_eq!(
            backticked("expected one of `host`, `linkCapacity`, `link-capacity`"),
            ["host", "link-capacity"]
        );
        assert_eq!(
            backticked("expected `ANONYMOUS` or `PLAIN`"),
            ["ANONYMOUS", "PLAIN"]
        );
        assert_eq!(or_list(&["a", "b", "c"]), "a, b or c");
    }
}
