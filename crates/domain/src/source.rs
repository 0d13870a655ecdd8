//! Grant sources (SPEC §2): how a source string is classified, and the keys
//! that requests are compared with.
//!
//! A source is classified once, when a grant is made, and bound to the
//! provider of its connection: table names are folded and queries are
//! canonicalised then, so that deciding a request compares prepared keys.

use std::panic::{AssertUnwindSafe, catch_unwind};

use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::provider::Provider;

/// The longest source, in bytes of UTF-8.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// What a source grants, as classified by §2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `*`: every source of the connection, including future ones.
    All,
    /// A dotted name ending in a wildcard, e.g. `project.dataset.*`.
    Pattern,
    /// One table or tileset, e.g. `project.dataset.table`.
    Table,
    /// One SQL statement.
    Query,
}

impl SourceKind {
    /// The kind's name on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceKind::All => "all",
            SourceKind::Pattern => "pattern",
            SourceKind::Table => "table",
            SourceKind::Query => "query",
        }
    }
}

/// Why a string cannot be a grant's source (V6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("the source is empty")]
    Empty,
    #[error("the source is {len} bytes long; at most {MAX_SOURCE_BYTES} are allowed")]
    TooLong { len: usize },
    #[error("a pattern needs at least two complete segments before the wildcard, as in project.dataset.*")]
    PatternTooBroad,
    #[error("{0}")]
    InvalidPattern(&'static str),
    #[error("a query source must be a single SQL statement")]
    MultipleStatements,
    #[error("the source contains a control character (only tab, line feed and carriage return are allowed)")]
    InvalidCharacter,
}

impl SourceError {
    /// A stable machine code for the error.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            SourceError::Empty => "source_empty",
            SourceError::TooLong { .. } => "source_too_long",
            SourceError::PatternTooBroad => "pattern_too_broad",
            SourceError::InvalidPattern(_) => "pattern_invalid",
            SourceError::MultipleStatements => "multiple_statements",
            SourceError::InvalidCharacter => "source_invalid_character",
        }
    }
}

/// One segment of a dotted name. `quoted` segments compare exactly; the
/// others fold as the provider does. Quotes are not part of `text`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Segment {
    text: String,
    quoted: bool,
    /// Whether a `*` in `text` is a wildcard. It is not inside explicit
    /// per-segment quotes, where it is an ordinary character of a name.
    wild: bool,
}

fn is_unquoted_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '-')
}

/// Splits a dotted name into segments, or `None` when `text` is not one.
///
/// Accepted forms: segments of `[A-Za-z0-9_$-]` (and `*`, for patterns),
/// segments quoted with `"…"` (a doubled `""` stands for one quote) or with
/// backticks, joined by dots; or a whole name in one pair of backticks, as
/// BigQuery writes `` `project.dataset.table` ``.
fn lex_dotted(text: &str) -> Option<Vec<Segment>> {
    if let Some(inner) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`'))
        && !inner.contains('`')
    {
        return inner
            .split('.')
            .map(|part| {
                let ok = !part.is_empty() && !part.chars().any(char::is_control);
                ok.then(|| Segment { text: part.to_owned(), quoted: true, wild: true })
            })
            .collect();
    }

    let mut segments = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let segment = match chars.next()? {
            '"' => {
                let mut name = String::new();
                loop {
                    match chars.next()? {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        '"' => break,
                        c if c.is_control() => return None,
                        c => name.push(c),
                    }
                }
                Segment { text: name, quoted: true, wild: false }
            }
            '`' => {
                let mut name = String::new();
                loop {
                    match chars.next()? {
                        '`' => break,
                        c if c.is_control() => return None,
                        c => name.push(c),
                    }
                }
                Segment { text: name, quoted: true, wild: false }
            }
            c if is_unquoted_char(c) || c == '*' => {
                let mut name = String::from(c);
                while let Some(&next) = chars.peek() {
                    if is_unquoted_char(next) || next == '*' {
                        name.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                Segment { text: name, quoted: false, wild: true }
            }
            _ => return None,
        };
        if segment.text.is_empty() {
            return None;
        }
        segments.push(segment);
        match chars.next() {
            None => return Some(segments),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

/// Folds a segment for comparison under `provider`.
fn fold(segment: &Segment, provider: Provider) -> String {
    if segment.quoted { segment.text.clone() } else { provider.fold_unquoted(&segment.text).into_owned() }
}

/// A table or tileset name folded for comparison under one provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TableKey(Vec<String>);

impl TableKey {
    /// Parses a requested table name (no wildcards) and folds it, or `None`
    /// when `text` is not a table name of 1 to 4 segments.
    pub(crate) fn parse(text: &str, provider: Provider) -> Option<Self> {
        let segments = lex_dotted(text.trim())?;
        if segments.len() > MAX_SEGMENTS || segments.iter().any(|s| s.wild && s.text.contains('*')) {
            return None;
        }
        Some(Self(segments.iter().map(|s| fold(s, provider)).collect()))
    }
}

/// The most segments a table name has (`catalog.schema.table` plus one for
/// warehouses that nest deeper, such as Databricks' Unity Catalog paths).
const MAX_SEGMENTS: usize = 4;

/// A pattern folded for comparison: tables with exactly one more segment
/// than `prefix`, whose leading segments equal `prefix` and whose last one
/// starts with `stem`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PatternKey {
    prefix: Vec<String>,
    stem: String,
}

impl PatternKey {
    pub(crate) fn matches(&self, table: &TableKey) -> bool {
        match table.0.split_last() {
            Some((last, leading)) => leading == self.prefix.as_slice() && last.starts_with(&self.stem),
            None => false,
        }
    }
}

/// A query in a form where formatting no longer matters.
///
/// The two variants never compare equal to each other: a query the dialect
/// parsed cannot match one that it could not.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CanonicalQuery {
    /// The statement as `sqlparser` prints it back.
    Parsed(String),
    /// The text with comments removed and whitespace runs collapsed.
    Text(String),
}

/// Why a query cannot be canonicalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryError {
    Empty,
    MultipleStatements,
}

impl CanonicalQuery {
    /// Canonicalises `sql` with the dialect of `provider`.
    ///
    /// Identifiers, literals and parameter placeholders are kept as written;
    /// whitespace, comments and keyword case are not. A statement the
    /// dialect cannot parse falls back to [`normalize_text`].
    pub(crate) fn new(sql: &str, provider: Provider) -> Result<Self, QueryError> {
        Self::from_tokens(sql, tokenize(sql, provider), provider)
    }

    /// Canonicalises `sql`, already tokenized (`None`: it could not be).
    pub(crate) fn from_tokens(
        sql: &str,
        tokens: Option<Vec<TokenWithSpan>>,
        provider: Provider,
    ) -> Result<Self, QueryError> {
        // sqlparser is fuzzed upstream and bounds its recursion, but a panic
        // in a third-party parser must not take a request down with it: a
        // query it cannot handle is treated like one it cannot parse.
        let parsed = tokens.and_then(|tokens| {
            catch_unwind(AssertUnwindSafe(|| {
                Parser::new(provider.dialect()).with_tokens_with_locations(tokens).parse_statements()
            }))
            .ok()
        });
        match parsed {
            Some(Ok(statements)) => match statements.as_slice() {
                [] => Err(QueryError::Empty),
                [statement] => Ok(Self::Parsed(statement.to_string())),
                _ => Err(QueryError::MultipleStatements),
            },
            Some(Err(_)) | None => {
                let text = normalize_text(sql);
                if text.is_empty() { Err(QueryError::Empty) } else { Ok(Self::Text(text)) }
            }
        }
    }
}

/// A query's tokens as the dialect reads them, without whitespace and
/// comments, each followed by a unit separator (U+001F). Two texts with the
/// same key parse to the same statement, so a request whose key equals a
/// grant's matches it without being parsed: the cheap path for a query that
/// differs from its grant only by layout and comments. Case is kept, since
/// a keyword cannot be told from an identifier without parsing.
///
/// The separator cannot be confused with a token's own text: outside
/// quotes no token holds a control character, and a grant's source holds
/// none at all (V6), so only a request's key can contain one inside a token,
/// and such a key equals no grant's.
pub(crate) fn token_key(tokens: &[TokenWithSpan]) -> Option<String> {
    use std::fmt::Write;
    let mut key = String::with_capacity(tokens.len() * 8);
    for token in tokens.iter().map(|t| &t.token).filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF)) {
        write!(key, "{token}\u{1f}").ok()?;
    }
    (!key.is_empty()).then_some(key)
}

/// The dialect's tokens of `sql`, or `None` when it cannot tokenize it.
/// Tokenizing once serves both the token key and, when that finds nothing,
/// the parse.
pub(crate) fn tokenize(sql: &str, provider: Provider) -> Option<Vec<TokenWithSpan>> {
    catch_unwind(AssertUnwindSafe(|| Tokenizer::new(provider.dialect(), sql).tokenize_with_location())).ok()?.ok()
}

/// The canonical form a query is compared by under `provider`'s dialect:
/// the statement as `sqlparser` prints it back, or, for a statement the
/// dialect cannot parse, the normalised text prefixed with `text:`. `None`
/// for an empty source or several statements. For tools and benchmarks
/// that need the comparison key itself.
#[must_use]
pub fn canonical_form(sql: &str, provider: Provider) -> Option<String> {
    match CanonicalQuery::new(sql, provider).ok()? {
        CanonicalQuery::Parsed(text) => Some(text),
        CanonicalQuery::Text(text) => Some(format!("text:{text}")),
    }
}

/// Removes SQL comments and collapses runs of whitespace into one space,
/// leaving quoted text (`'…'`, `"…"`, `` `…` ``) untouched.
///
/// A comment becomes a space rather than nothing, because in SQL it
/// separates tokens: `a/**/b` is `a b`, not `ab`.
#[must_use]
pub fn normalize_text(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut pending_space = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for next in chars.by_ref() {
                    if next == '\n' {
                        break;
                    }
                }
                pending_space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = '\0';
                for next in chars.by_ref() {
                    if previous == '*' && next == '/' {
                        break;
                    }
                    previous = next;
                }
                pending_space = true;
            }
            c if c.is_whitespace() => pending_space = true,
            '\'' | '"' | '`' => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
                // Copy up to and including the closing quote; an unclosed
                // quote runs to the end. A doubled quote closes and reopens,
                // which copies it unchanged.
                for next in chars.by_ref() {
                    out.push(next);
                    if next == c {
                        break;
                    }
                }
            }
            c => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
    }
    out
}

/// The comparison keys of a bound source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Matcher {
    All,
    Pattern(PatternKey),
    Table(TableKey),
    /// The canonical form, and the token key when the dialect tokenizes it.
    Query(CanonicalQuery, Option<String>),
}

/// A grant's source, classified and bound to its connection's provider.
///
/// Invariant: `text` is the trimmed source as written, at most
/// [`MAX_SOURCE_BYTES`] bytes, and `matcher` is its classification under §2
/// with names folded and queries canonicalised for the provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    text: String,
    matcher: Matcher,
}

/// The provider-independent shape of a source.
enum Shape {
    All,
    Pattern { prefix: Vec<Segment>, stem: Segment },
    Table(Vec<Segment>),
    Query,
}

fn classify(raw: &str) -> Result<(&str, Shape), SourceError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(SourceError::Empty);
    }
    if text.len() > MAX_SOURCE_BYTES {
        return Err(SourceError::TooLong { len: text.len() });
    }
    // NUL and other control characters have no place in a name or a query,
    // and no store keeps NUL in text.
    if text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(SourceError::InvalidCharacter);
    }
    if text == "*" {
        return Ok((text, Shape::All));
    }
    let Some(mut segments) = lex_dotted(text) else {
        return Ok((text, Shape::Query));
    };
    let starred = |s: &Segment| s.wild && s.text.contains('*');
    if !segments.iter().any(starred) {
        return Ok((text, if segments.len() <= MAX_SEGMENTS { Shape::Table(segments) } else { Shape::Query }));
    }
    let Some(mut last) = segments.pop() else {
        return Ok((text, Shape::Query));
    };
    let stem_len = last.text.len() - 1;
    if segments.iter().any(starred) || last.text.find('*') != Some(stem_len) {
        return Err(SourceError::InvalidPattern("a pattern may have a single `*`, at the end of its last segment"));
    }
    if segments.len() < 2 {
        return Err(SourceError::PatternTooBroad);
    }
    if segments.len() + 1 > MAX_SEGMENTS {
        return Err(SourceError::InvalidPattern("a pattern may have at most four segments"));
    }
    last.text.truncate(stem_len);
    Ok((text, Shape::Pattern { prefix: segments, stem: last }))
}

impl Source {
    /// Classifies `raw` without binding it to a provider: the checks of V6
    /// that hold whatever the connection is.
    ///
    /// # Errors
    /// [`SourceError`] for an empty, oversized or malformed-pattern source.
    pub fn classify(raw: &str) -> Result<SourceKind, SourceError> {
        classify(raw).map(|(_, shape)| match shape {
            Shape::All => SourceKind::All,
            Shape::Pattern { .. } => SourceKind::Pattern,
            Shape::Table(_) => SourceKind::Table,
            Shape::Query => SourceKind::Query,
        })
    }

    /// Classifies `raw` (trimmed) and binds it to `provider`.
    ///
    /// # Errors
    /// [`SourceError`] as for [`Source::classify`], and
    /// [`SourceError::MultipleStatements`] for a query of several statements.
    pub fn new(raw: &str, provider: Provider) -> Result<Self, SourceError> {
        let (text, shape) = classify(raw)?;
        let matcher = match shape {
            Shape::All => Matcher::All,
            Shape::Pattern { prefix, stem } => Matcher::Pattern(PatternKey {
                prefix: prefix.iter().map(|s| fold(s, provider)).collect(),
                stem: fold(&stem, provider),
            }),
            Shape::Table(segments) => Matcher::Table(TableKey(segments.iter().map(|s| fold(s, provider)).collect())),
            Shape::Query => {
                let tokens = tokenize(text, provider);
                let key = tokens.as_deref().and_then(token_key);
                let canonical = CanonicalQuery::from_tokens(text, tokens, provider).map_err(|e| match e {
                    QueryError::Empty => SourceError::Empty,
                    QueryError::MultipleStatements => SourceError::MultipleStatements,
                })?;
                Matcher::Query(canonical, key)
            }
        };
        Ok(Self { text: text.to_owned(), matcher })
    }

    /// The source as written (trimmed).
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the source grants.
    #[must_use]
    pub fn kind(&self) -> SourceKind {
        match self.matcher {
            Matcher::All => SourceKind::All,
            Matcher::Pattern(_) => SourceKind::Pattern,
            Matcher::Table(_) => SourceKind::Table,
            Matcher::Query(..) => SourceKind::Query,
        }
    }

    /// For a query source, whether the provider's dialect could parse it
    /// (when it could not, requests are compared by normalised text).
    #[must_use]
    pub fn query_parsed(&self) -> Option<bool> {
        match &self.matcher {
            Matcher::Query(CanonicalQuery::Parsed(_), _) => Some(true),
            Matcher::Query(CanonicalQuery::Text(_), _) => Some(false),
            _ => None,
        }
    }

    pub(crate) fn matcher(&self) -> &Matcher {
        &self.matcher
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Provider::*;

    #[test]
    fn classification_follows_spec_order() {
        use SourceKind as K;
        let cases: &[(&str, Result<K, &str>)] = &[
            ("*", Ok(K::All)),
            ("  *  ", Ok(K::All)),
            ("project.dataset.*", Ok(K::Pattern)),
            ("carto.shared.CARTO_*", Ok(K::Pattern)),
            ("`project.dataset.tab*`", Ok(K::Pattern)),
            ("\"My Db\".public.t*", Ok(K::Pattern)),
            ("a.b.c.*", Ok(K::Pattern)),
            ("project.*", Err("pattern_too_broad")),
            ("abc*", Err("pattern_too_broad")),
            ("`project.*`", Err("pattern_too_broad")),
            ("a.b.c.d.*", Err("pattern_invalid")),
            ("a.*.c", Err("pattern_invalid")),
            ("*.b.c", Err("pattern_invalid")),
            ("a.b.c**", Err("pattern_invalid")),
            ("a.b.*c", Err("pattern_invalid")),
            ("table", Ok(K::Table)),
            ("my-project.dataset.table", Ok(K::Table)),
            ("a.b.c.d", Ok(K::Table)),
            ("`my-project.dataset.table`", Ok(K::Table)),
            ("\"Quoted\".\"with \"\"quote\"\"\"", Ok(K::Table)),
            ("`my project`.`data set`.t", Ok(K::Table)),
            ("\"star*in\".quotes.t", Ok(K::Table)),
            ("$x.y_1", Ok(K::Table)),
            ("a.b.c.d.e", Ok(K::Query)),
            ("SELECT * FROM t", Ok(K::Query)),
            ("select 1", Ok(K::Query)),
            ("a..b", Ok(K::Query)),
            ("", Err("source_empty")),
            ("SELECT 1\0", Err("source_invalid_character")),
            ("p.d.\u{1b}[31m", Err("source_invalid_character")),
            ("SELECT 1\r\n\tFROM t", Ok(K::Query)),
            ("   \n\t", Err("source_empty")),
        ];
        for (raw, expected) in cases {
            let got = Source::classify(raw).map_err(|e| e.code());
            assert_eq!(&got, expected, "{raw:?}");
        }
    }

    #[test]
    fn sources_over_64_kib_are_rejected() {
        let at_limit = format!("SELECT '{}'", "x".repeat(MAX_SOURCE_BYTES - 9));
        assert_eq!(at_limit.len(), MAX_SOURCE_BYTES);
        assert_eq!(Source::classify(&at_limit), Ok(SourceKind::Query));
        let over = format!("{at_limit} ");
        assert_eq!(Source::classify(&over), Ok(SourceKind::Query), "trailing space is trimmed");
        let over = format!("SELECT '{}'", "x".repeat(MAX_SOURCE_BYTES - 8));
        assert_eq!(Source::classify(&over), Err(SourceError::TooLong { len: MAX_SOURCE_BYTES + 1 }));
    }

    fn table_matches(grant: &str, request: &str, provider: Provider) -> bool {
        let source = Source::new(grant, provider).unwrap();
        let Some(key) = TableKey::parse(request, provider) else {
            return false;
        };
        match source.matcher() {
            Matcher::Table(granted) => *granted == key,
            Matcher::Pattern(pattern) => pattern.matches(&key),
            other => panic!("not a name: {other:?}"),
        }
    }

    #[test]
    fn table_names_fold_per_provider() {
        let cases: &[(&str, &str, Provider, bool)] = &[
            // PostgreSQL and Redshift fold unquoted names to lower case.
            ("public.Cities", "PUBLIC.cities", Postgres, true),
            ("public.cities", "public.\"cities\"", Postgres, true),
            ("public.\"Cities\"", "public.cities", Postgres, false),
            ("public.\"Cities\"", "public.\"Cities\"", Postgres, true),
            ("public.\"cities\"", "public.CITIES", Postgres, true),
            ("s.Orders", "S.ORDERS", Redshift, true),
            // Snowflake folds to upper case.
            ("db.schema.orders", "DB.SCHEMA.ORDERS", Snowflake, true),
            ("db.schema.orders", "db.schema.\"ORDERS\"", Snowflake, true),
            ("db.schema.orders", "db.schema.\"orders\"", Snowflake, false),
            ("db.schema.\"orders\"", "db.schema.\"orders\"", Snowflake, true),
            // BigQuery, CARTO DW and Databricks compare exactly.
            ("p.d.Table", "p.d.table", Bigquery, false),
            ("p.d.Table", "p.d.Table", Bigquery, true),
            ("my-project.dataset.table", "`my-project.dataset.table`", Bigquery, true),
            ("`my-project.dataset.table`", "my-project.dataset.table", CartoDw, true),
            ("`my-project`.dataset.`table`", "my-project.dataset.table", CartoDw, true),
            ("c.s.T", "c.s.t", Databricks, false),
            // A different number of segments is a different table.
            ("dataset.table", "project.dataset.table", Bigquery, false),
            // Wildcards in a request are not names.
            ("p.d.t", "p.d.*", Bigquery, false),
        ];
        for (grant, request, provider, expected) in cases {
            assert_eq!(table_matches(grant, request, *provider), *expected, "{grant} vs {request} on {provider}");
        }
    }

    #[test]
    fn patterns_match_one_more_segment_by_prefix() {
        let cases: &[(&str, &str, Provider, bool)] = &[
            ("project.dataset.*", "project.dataset.anything", Bigquery, true),
            ("project.dataset.*", "project.dataset", Bigquery, false),
            ("project.dataset.*", "project.dataset.t.extra", Bigquery, false),
            ("project.dataset.*", "project.other.t", Bigquery, false),
            ("project.dataset.*", "`project.dataset.t`", Bigquery, true),
            ("carto.shared.CARTO_*", "carto.shared.CARTO_roads", Bigquery, true),
            ("carto.shared.CARTO_*", "carto.shared.carto_roads", Bigquery, false),
            ("carto.shared.CARTO_*", "carto.shared.carto_roads", Snowflake, true),
            ("carto.shared.CARTO_*", "CARTO.SHARED.CARTOX", Snowflake, false),
            ("db.Public.geo_*", "db.public.GEO_lines", Postgres, true),
        ];
        for (grant, request, provider, expected) in cases {
            assert_eq!(table_matches(grant, request, *provider), *expected, "{grant} vs {request} on {provider}");
        }
    }

    fn canonical(sql: &str, provider: Provider) -> CanonicalQuery {
        CanonicalQuery::new(sql, provider).unwrap()
    }

    #[test]
    fn queries_compare_by_canonical_form() {
        let same: &[(&str, &str, Provider)] = &[
            ("SELECT a FROM t WHERE x = 1", "select  a\n from t -- why\n where x=1", Postgres),
            ("SELECT * FROM `p.d.t` WHERE id = @id", "/* c */ select *\nFROM `p.d.t` where id=@id;", Bigquery),
            ("SELECT * FROM t WHERE a = $1", "SELECT *   FROM t WHERE a = $1", Postgres),
            ("SELECT * FROM t WHERE a = :a", "select * from t where a = :a", Snowflake),
            ("SELECT * FROM t WHERE a = ?", "select * from t\twhere a = ?", Databricks),
        ];
        for (a, b, provider) in same {
            assert_eq!(canonical(a, *provider), canonical(b, *provider), "{a:?} vs {b:?}");
        }
        let different: &[(&str, &str, Provider)] = &[
            ("SELECT a FROM t", "SELECT b FROM t", Postgres),
            ("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = 2", Postgres),
            ("SELECT a FROM t WHERE x = 'a'", "SELECT a FROM t WHERE x = 'A'", Postgres),
            ("SELECT * FROM t WHERE id = @id", "SELECT * FROM t WHERE id = @other", Bigquery),
            ("SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = $2", Postgres),
            ("SELECT * FROM t", "SELECT * FROM t WHERE true", Postgres),
            ("SELECT * FROM t", "SELECT * FROM t; DROP TABLE t", Postgres),
        ];
        for (a, b, provider) in different {
            assert_ne!(CanonicalQuery::new(a, *provider), CanonicalQuery::new(b, *provider), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn unparseable_queries_fall_back_to_normalised_text() {
        let odd = "FROBNICATE the   widgets -- trailing\n  /* note */ NOW";
        assert_eq!(canonical(odd, Postgres), CanonicalQuery::Text("FROBNICATE the widgets NOW".into()));
        assert_eq!(canonical(odd, Postgres), canonical("FROBNICATE the widgets NOW", Postgres));
        assert_ne!(canonical(odd, Postgres), canonical("frobnicate the widgets now", Postgres));
        let source = Source::new(odd, Postgres).unwrap();
        assert_eq!(source.kind(), SourceKind::Query);
        assert_eq!(source.query_parsed(), Some(false));
    }

    #[test]
    fn text_normalisation_keeps_quoted_text() {
        let cases = [
            ("a  \n b", "a b"),
            ("  a  ", "a"),
            ("x = 'two  spaces -- not a comment'", "x = 'two  spaces -- not a comment'"),
            ("\"odd  name\"  /* c */ y", "\"odd  name\" y"),
            ("a/**/b", "a b"),
            ("a -- c", "a"),
            ("'it''s'  x", "'it''s' x"),
            ("'unclosed  ", "'unclosed  "),
            ("/* unclosed", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn queries_must_be_one_statement() {
        assert_eq!(Source::new("SELECT 1; SELECT 2", Postgres), Err(SourceError::MultipleStatements));
        assert_eq!(Source::new("-- only a comment", Postgres), Err(SourceError::Empty));
        assert!(Source::new("SELECT 1;", Postgres).is_ok());
    }
}
