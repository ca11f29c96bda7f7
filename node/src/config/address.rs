//! The address table: which [`Distribution`] an address gets, decided by the
//! configured `[[address]]` entries (`prefix` or `pattern`), as qdrouterd's
//! parse tree decides it.
//!
//! # Matching rules (qdrouterd 1.19 semantics)
//!
//! - An address and a pattern are sequences of *tokens* separated by `.` or
//!   `/` (the two separators are interchangeable). Leading separators are
//!   ignored and one trailing separator is ignored, so `/closest.x/` has the
//!   tokens `closest`, `x`.
//! - In a pattern, `*` matches exactly one token and `#` matches zero or more
//!   tokens; any other token matches itself exactly (case-sensitive).
//! - A `prefix` is the pattern `prefix.#`: prefix `closest` matches `closest`,
//!   `closest.x` and `closest/x/y` but not `closestx` (token boundaries, not
//!   string prefixes).
//! - Patterns are normalised before use: any run of `*` and `#` tokens becomes
//!   its `*`s followed by a single `#` (`#.*` ≡ `*.#`, `#.#` ≡ `#`). Two entries
//!   with the same normalised pattern (for example prefix `a` and pattern
//!   `a/#`) are a configuration error.
//!
//! # Precedence (which entry wins when several match)
//!
//! Entries are compared token by token from the left; at the first position
//! where they differ, an exact token beats `*`, and `*` beats `#`. When two
//! `#` tokens are at the same position, the one that swallows *fewer* address
//! tokens wins (so `a.#.c` beats `a.#` for `a.b.c`). A pattern that ends
//! exactly at the end of the address beats one that still needs a `#` to
//! match nothing (`a` beats `a.#` for the address `a`). This is the order in
//! which qdrouterd's `parse_tree.c` visits its tree and takes the first hit;
//! it yields a single winner for every address, so no further tie rule is
//! needed. An address no entry matches gets the table's default distribution
//! (`balanced` unless `[router] default-distribution` says otherwise).
//!
//! # Cost
//!
//! The entries live in a trie over tokens. A lookup walks the address once
//! per `#` alternative and does not allocate; the router calls it once per
//! address when it creates the address's state, and caches the result there.

use std::fmt;

/// How deliveries to an address are forwarded: `bote-topology`'s type, the
/// one the address actors and the simulator use too.
pub use bote_topology::{Distribution, UnknownDistribution};

/// What an `[[address]]` entry matches: a `prefix` or a `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// Matches the prefix itself and anything below it on a token boundary
    /// (equivalent to the pattern `prefix.#`).
    Prefix(String),
    /// A token pattern with `*` (one token) and `#` (zero or more tokens).
    Pattern(String),
}

impl AddressKey {
    /// The text as configured.
    pub fn as_str(&self) -> &str {
        match self {
            AddressKey::Prefix(s) | AddressKey::Pattern(s) => s,
        }
    }

    /// `"prefix"` or `"pattern"`: the configuration key this came from.
    pub fn kind(&self) -> &'static str {
        match self {
            AddressKey::Prefix(_) => "prefix",
            AddressKey::Pattern(_) => "pattern",
        }
    }

    /// The normalised token pattern this key stands for, tokens joined with
    /// `.` (prefix `a/b` gives `a.b.#`; pattern `x/#/*` gives `x.*.#`).
    pub fn normalized_pattern(&self) -> Result<String, PatternError> {
        Ok(tokens_to_string(&self.tokens()?))
    }

    fn tokens(&self) -> Result<Vec<PatternToken>, PatternError> {
        let text = self.as_str();
        let trimmed = text.trim_matches(is_separator);
        if trimmed.is_empty() {
            return Err(PatternError::Empty);
        }
        if matches!(self, AddressKey::Prefix(_)) && trimmed.contains(['*', '#']) {
            return Err(PatternError::WildcardInPrefix);
        }
        let mut tokens = Vec::new();
        for token in trimmed.split(is_separator) {
            if token.is_empty() {
                return Err(PatternError::EmptyToken);
            }
            let parsed = match token {
                "*" => PatternToken::Star,
                "#" => PatternToken::Hash,
                _ if token.contains(['*', '#']) => {
                    return Err(PatternError::WildcardInToken(token.to_owned()));
                }
                _ => PatternToken::Exact(token.to_owned()),
            };
            tokens.push(parsed);
        }
        if let AddressKey::Prefix(_) = self {
            tokens.push(PatternToken::Hash);
        }
        Ok(normalize(tokens))
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} \"{}\"", self.kind(), self.as_str())
    }
}

/// Why a prefix or pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Nothing but separators.
    #[error("is empty (it has no tokens between its separators)")]
    Empty,
    /// Two separators in a row inside the pattern (`a..b`).
    #[error("has an empty token (two separators in a row)")]
    EmptyToken,
    /// A token mixes a wildcard with other characters (`a*`).
    #[error("has the token \"{0}\": `*` and `#` must stand alone as a whole token")]
    WildcardInToken(String),
    /// A prefix contains `*` or `#`.
    #[error("contains `*` or `#`: wildcards belong in a pattern, not a prefix")]
    WildcardInPrefix,
}

/// One configured `[[address]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressEntry {
    /// Optional name, for management and logs.
    pub name: Option<String>,
    /// The prefix or pattern the entry matches.
    pub key: AddressKey,
    /// The distribution matching addresses get.
    pub distribution: Distribution,
    /// The priority (0–9) every message to a matching address gets, in
    /// place of its own (qdrouterd's `priority`); `None`: the message's.
    pub priority: Option<u8>,
}

/// The entries cannot form a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressTableError {
    /// An entry's prefix or pattern is malformed.
    #[error("address entry #{index}: {key} {reason}", index = .index + 1)]
    InvalidPattern {
        /// Index of the entry in the list given to [`AddressTable::new`].
        index: usize,
        /// The offending key.
        key: AddressKey,
        /// What is wrong with it.
        reason: PatternError,
    },
    /// Two entries match exactly the same addresses.
    #[error(
        "address entry #{index}: {key} duplicates entry #{first} (both are the pattern \"{normalized}\")",
        index = .index + 1, first = .first + 1
    )]
    Duplicate {
        /// Index of the later entry.
        index: usize,
        /// Index of the earlier entry it duplicates.
        first: usize,
        /// The later entry's key.
        key: AddressKey,
        /// The normalised pattern both share.
        normalized: String,
    },
}

/// A match: the entry's index in [`AddressTable::entries`] and the entry.
pub type AddressMatch<'a> = (usize, &'a AddressEntry);

/// Maps an address to its distribution through the configured entries.
#[derive(Debug, Clone, Default)]
pub struct AddressTable {
    entries: Vec<AddressEntry>,
    root: Node,
    default_distribution: Distribution,
}

impl AddressTable {
    /// Builds the table; `default_distribution` is used for addresses no entry
    /// matches.
    pub fn new(
        entries: Vec<AddressEntry>,
        default_distribution: Distribution,
    ) -> Result<Self, AddressTableError> {
        let mut root = Node::default();
        let mut seen: Vec<(String, usize)> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let tokens =
                entry
                    .key
                    .tokens()
                    .map_err(|reason| AddressTableError::InvalidPattern {
                        index,
                        key: entry.key.clone(),
                        reason,
                    })?;
            let normalized = tokens_to_string(&tokens);
            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == normalized) {
                return Err(AddressTableError::Duplicate {
                    index,
                    first: *first,
                    key: entry.key.clone(),
                    normalized,
                });
            }
            root.insert(&tokens, index);
            seen.push((normalized, index));
        }
        Ok(AddressTable {
            entries,
            root,
            default_distribution,
        })
    }

    /// The distribution for `address`: the winning entry's, or the default.
    pub fn lookup(&self, address: &str) -> Distribution {
        self.matching(address)
            .map_or(self.default_distribution, |(_, entry)| entry.distribution)
    }

    /// The entry that decides `address`, if any (see the module doc for
    /// precedence).
    pub fn matching(&self, address: &str) -> Option<AddressMatch<'_>> {
        let index = self.root.at(Tokens::new(address))?;
        self.entries.get(index).map(|entry| (index, entry))
    }

    /// The entries in configuration order.
    pub fn entries(&self) -> &[AddressEntry] {
        &self.entries
    }

    /// The configured priority for `address`: the winning entry's, if it
    /// sets one.
    pub fn priority(&self, address: &str) -> Option<u8> {
        self.matching(address).and_then(|(_, entry)| entry.priority)
    }

    /// The distribution for addresses no entry matches.
    pub fn default_distribution(&self) -> Distribution {
        self.default_distribution
    }
}

fn is_separator(c: char) -> bool {
    c == '.' || c == '/'
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternToken {
    Exact(String),
    Star,
    Hash,
}

fn tokens_to_string(tokens: &[PatternToken]) -> String {
    let parts: Vec<&str> = tokens
        .iter()
        .map(|t| match t {
            PatternToken::Exact(s) => s.as_str(),
            PatternToken::Star => "*",
            PatternToken::Hash => "#",
        })
        .collect();
    parts.join(".")
}

/// Rewrites every run of wildcards as its stars followed by at most one hash.
fn normalize(tokens: Vec<PatternToken>) -> Vec<PatternToken> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut stars = 0usize;
    let mut hash = false;
    let flush = |out: &mut Vec<PatternToken>, stars: &mut usize, hash: &mut bool| {
        out.extend(std::iter::repeat_n(PatternToken::Star, *stars));
        if *hash {
            out.push(PatternToken::Hash);
        }
        *stars = 0;
        *hash = false;
    };
    for token in tokens {
        match token {
            PatternToken::Star => stars += 1,
            PatternToken::Hash => hash = true,
            exact @ PatternToken::Exact(_) => {
                flush(&mut out, &mut stars, &mut hash);
                out.push(exact);
            }
        }
    }
    flush(&mut out, &mut stars, &mut hash);
    out
}

/// The tokens of an address still to be matched (cheap to clone: it is a
/// position in the string).
#[derive(Clone)]
struct Tokens<'a> {
    rest: Option<&'a str>,
}

impl<'a> Tokens<'a> {
    fn new(address: &'a str) -> Self {
        let trimmed = address.trim_start_matches(is_separator);
        Tokens {
            rest: (!trimmed.is_empty()).then_some(trimmed),
        }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_none()
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.find(is_separator) {
            Some(at) => {
                let (token, after) = rest.split_at(at);
                // `after` starts with the one-byte separator; a single
                // trailing separator ends the address.
                let after = &after[1..];
                self.rest = (!after.is_empty()).then_some(after);
                Some(token)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    /// Exact-token children, sorted by token for binary search.
    children: Vec<(Box<str>, Node)>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    /// The entry whose pattern ends at this node.
    entry: Option<usize>,
}

impl Node {
    fn insert(&mut self, tokens: &[PatternToken], entry: usize) {
        let Some((first, rest)) = tokens.split_first() else {
            self.entry = Some(entry);
            return;
        };
        let child = match first {
            PatternToken::Star => self.star.get_or_insert_with(Box::default).as_mut(),
            PatternToken::Hash => self.hash.get_or_insert_with(Box::default).as_mut(),
            PatternToken::Exact(token) => {
                let at = match self
                    .children
                    .binary_search_by(|(t, _)| t.as_ref().cmp(token.as_str()))
                {
                    Ok(at) => at,
                    Err(at) => {
                        self.children
                            .insert(at, (token.as_str().into(), Node::default()));
                        at
                    }
                };
                &mut self.children[at].1
            }
        };
        child.insert(rest, entry);
    }

    fn child(&self, token: &str) -> Option<&Node> {
        self.children
            .binary_search_by(|(t, _)| t.as_ref().cmp(token))
            .ok()
            .map(|at| &self.children[at].1)
    }

    /// This node has matched everything before `rest`; find the best entry
    /// at or below it.
    fn at(&self, rest: Tokens<'_>) -> Option<usize> {
        if rest.is_empty()
            && let Some(entry) = self.entry
        {
            return Some(entry);
        }
        self.below(rest)
    }

    /// Try the subtrees in precedence order: exact, `*`, then `#` swallowing
    /// as few tokens as possible.
    fn below(&self, rest: Tokens<'_>) -> Option<usize> {
        let mut after = rest.clone();
        if let Some(token) = after.next() {
            if let Some(found) = self.child(token).and_then(|c| c.at(after.clone())) {
                return Some(found);
            }
            if let Some(found) = self.star.as_deref().and_then(|s| s.at(after.clone())) {
                return Some(found);
            }
        }
        let hash = self.hash.as_deref()?;
        let mut swallowed = rest;
        loop {
            if swallowed.is_empty() {
                return hash.at(swallowed);
            }
            if let Some(found) = hash.below(swallowed.clone()) {
                return Some(found);
            }
            swallowed.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> AddressKey {
        AddressKey::Pattern(p.to_owned())
    }

    #[test]
    fn normalisation_moves_stars_before_hash_and_collapses_hashes() {
        assert_eq!(pattern("a.#.*").normalized_pattern().unwrap(), "a.*.#");
        assert_eq!(pattern("a/#/#/b").normalized_pattern().unwrap(), "a.#.b");
        assert_eq!(pattern("#.*.#.*").normalized_pattern().unwrap(), "*.*.#");
        assert_eq!(
            AddressKey::Prefix("/a/b/".into())
                .normalized_pattern()
                .unwrap(),
            "a.b.#"
        );
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        assert_eq!(pattern("./").normalized_pattern(), Err(PatternError::Empty));
        assert_eq!(
            pattern("a..b").normalized_pattern(),
            Err(PatternError::EmptyToken)
        );
        assert_eq!(
            pattern("a.b*").normalized_pattern(),
            Err(PatternError::WildcardInToken("b*".into()))
        );
        assert_eq!(
            AddressKey::Prefix("a.*".into()).normalized_pattern(),
            Err(PatternError::WildcardInPrefix)
        );
    }

    #[test]
    fn address_tokens_ignore_leading_separators_and_one_trailing_separator() {
        let tokens: Vec<&str> = Tokens::new("//a.b/c/").collect();
        assert_eq!(tokens, ["a", "b", "c"]);
        let tokens: Vec<&str> = Tokens::new("a..").collect();
        assert_eq!(tokens, ["a", ""]);
        assert_eq!(Tokens::new("./").count(), 0);
    }

    #[test]
    fn distribution_parses_its_configuration_spelling() {
        for d in Distribution::ALL {
            assert_eq!(d.as_str().parse::<Distribution>(), Ok(d));
        }
        assert!("fastest".parse::<Distribution>().is_err());
    }
}
