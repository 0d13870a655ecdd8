//! Grant sources (SPEC §2): how a source string is classified, and the keys
//! that requests are compared with.
//!
//! A source is classified once, when a grant is made, and bound to the
//! provider of its connection: table names are folded and queries are read
//! into their keys ([`crate::sql`]) then, so that deciding a request
//! compares prepared keys.

use std::panic::{AssertUnwindSafe, catch_unwind};

use sqlparser::parser::Parser;

use crate::provider::Provider;
use crate::sql::{self, QueryKey, QueryRefusal};

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
    #[error(
        "the source contains a control character or a Unicode line separator (only tab, line feed and a carriage \
         return before a line feed are allowed)"
    )]
    InvalidCharacter,
    #[error(
        "a quoted part of a name contains a dot, or the whole name is in backticks on a warehouse other than \
         BigQuery: warehouses differ on whether that is one name or a path"
    )]
    AmbiguousName,
    /// A query that cannot be compared with certainty (SPEC §2).
    #[error("{0}")]
    Query(QueryRefusal),
}

impl SourceError {
    /// The error's code on the wire: the validation issue it is reported
    /// as, so that the code is written in one place.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        crate::validation::source_issue_code(self).as_str()
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

/// A dotted name split into segments.
struct Dotted {
    segments: Vec<Segment>,
    /// Whether the whole name was in one pair of backticks.
    whole_backticked: bool,
}

/// Splits a dotted name into segments: `Ok(None)` when `text` is not a
/// name, and [`SourceError::AmbiguousName`] for a name whose reading
/// depends on the warehouse.
///
/// Accepted forms: segments of `[A-Za-z0-9_$-]` (and `*`, for patterns),
/// segments quoted with `"…"` (a doubled `""` stands for one quote) or with
/// backticks, joined by dots; or a whole name in one pair of backticks, as
/// BigQuery writes `` `project.dataset.table` ``.
///
/// A quoted segment that contains a dot is ambiguous: BigQuery splits
/// `` p.d.`x.y` `` into a four-part path, Databricks and PostgreSQL read one
/// name `x.y`. Refusing it keeps a pattern `p.d.*` from matching it.
fn lex_dotted(text: &str) -> Result<Option<Dotted>, SourceError> {
    if let Some(inner) = text.strip_prefix('`').and_then(|t| t.strip_suffix('`'))
        && !inner.contains('`')
    {
        let segments: Option<Vec<Segment>> = inner
            .split('.')
            .map(|part| {
                let ok = !part.is_empty() && !part.chars().any(char::is_control);
                ok.then(|| Segment { text: part.to_owned(), quoted: true, wild: true })
            })
            .collect();
        return Ok(segments.map(|segments| Dotted { segments, whole_backticked: inner.contains('.') }));
    }
    let Some(segments) = lex_segments(text) else {
        return Ok(None);
    };
    if segments.iter().any(|s| s.quoted && s.text.contains('.')) {
        return Err(SourceError::AmbiguousName);
    }
    Ok(Some(Dotted { segments, whole_backticked: false }))
}

/// Splits `segment.segment…` (quoted or not), or `None`.
fn lex_segments(text: &str) -> Option<Vec<Segment>> {
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
        let Dotted { segments, whole_backticked } = lex_dotted(trim(text)).ok()??;
        if segments.len() > MAX_SEGMENTS
            || segments.iter().any(|s| s.wild && s.text.contains('*'))
            || (whole_backticked && !provider.splits_backticked_names())
        {
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

/// The comparison keys of a bound source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Matcher {
    All,
    Pattern(PatternKey),
    Table(TableKey),
    /// The query's key, and whether the provider's SQL dialect parses it
    /// (which only decides a warning: matching compares keys).
    Query {
        key: QueryKey,
        parsed: bool,
    },
}

/// A grant's source, classified and bound to its connection's provider.
///
/// Invariant: `text` is the trimmed source as written, at most
/// [`MAX_SOURCE_BYTES`] bytes, and `matcher` is its classification under §2
/// with names folded and queries read into their keys for the provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    text: String,
    matcher: Matcher,
}

/// Trims the whitespace every warehouse agrees on. Unicode whitespace is
/// kept, so that it is refused rather than silently dropped: PostgreSQL
/// reads U+00A0 as part of a name.
#[must_use]
pub fn trim(text: &str) -> &str {
    text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

/// The provider-independent shape of a source.
enum Shape {
    All,
    Pattern { prefix: Vec<Segment>, stem: Segment, whole_backticked: bool },
    Table { segments: Vec<Segment>, whole_backticked: bool },
    Query,
}

fn classify(raw: &str) -> Result<(&str, Shape), SourceError> {
    let text = trim(raw);
    if text.is_empty() {
        return Err(SourceError::Empty);
    }
    if text.len() > MAX_SOURCE_BYTES {
        return Err(SourceError::TooLong { len: text.len() });
    }
    // Control characters have no place in a name or a query (no store
    // keeps NUL in text, and warehouses disagree on where a lone carriage
    // return ends a comment).
    sql::check_characters(text.as_bytes()).map_err(|_| SourceError::InvalidCharacter)?;
    if text == "*" {
        return Ok((text, Shape::All));
    }
    let Some(Dotted { mut segments, whole_backticked }) = lex_dotted(text)? else {
        return Ok((text, Shape::Query));
    };
    let starred = |s: &Segment| s.wild && s.text.contains('*');
    if !segments.iter().any(starred) {
        let shape =
            if segments.len() <= MAX_SEGMENTS { Shape::Table { segments, whole_backticked } } else { Shape::Query };
        return Ok((text, shape));
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
    Ok((text, Shape::Pattern { prefix: segments, stem: last, whole_backticked }))
}

/// Whether `sql` is one statement that `provider`'s sqlparser dialect
/// parses. Only a warning depends on it, so a parser failure of any kind,
/// a panic included, is a "no".
///
/// The query is within the caps of [`sql`], so the parse tree is bounded:
/// sqlparser limits its own recursion, and a chain of binary operators,
/// which it builds without recursing, is at most half the token cap deep,
/// which dropping the tree handles on a worker thread's stack (a test
/// checks the worst case).
fn dialect_parses(text: &str, provider: Provider) -> bool {
    catch_unwind(AssertUnwindSafe(|| {
        Parser::new(provider.dialect()).try_with_sql(text).and_then(|mut parser| parser.parse_statements())
    }))
    .is_ok_and(|parsed| parsed.is_ok_and(|statements| statements.len() == 1))
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
            Shape::Table { .. } => SourceKind::Table,
            Shape::Query => SourceKind::Query,
        })
    }

    /// Classifies `raw` (trimmed) and binds it to `provider`.
    ///
    /// # Errors
    /// [`SourceError`] as for [`Source::classify`];
    /// [`SourceError::AmbiguousName`] for a whole name in backticks on a
    /// warehouse that does not split it; for a query,
    /// [`SourceError::MultipleStatements`] and [`SourceError::Query`] when
    /// it cannot be compared with certainty.
    pub fn new(raw: &str, provider: Provider) -> Result<Self, SourceError> {
        Self::bind(raw, provider, |text| dialect_parses(text, provider))
    }

    /// Rebuilds a source that was made with [`Source::new`] and stored,
    /// with what sqlparser said of it then (`parsed`): the query is read
    /// into its key again, but not parsed again, since only a warning
    /// depends on the parse.
    ///
    /// # Errors
    /// As [`Source::new`]: a stored source is checked again.
    pub fn restore(raw: &str, provider: Provider, parsed: bool) -> Result<Self, SourceError> {
        Self::bind(raw, provider, |_| parsed)
    }

    fn bind(raw: &str, provider: Provider, parses: impl FnOnce(&str) -> bool) -> Result<Self, SourceError> {
        let (text, shape) = classify(raw)?;
        let matcher = match shape {
            Shape::Pattern { whole_backticked: true, .. } | Shape::Table { whole_backticked: true, .. }
                if !provider.splits_backticked_names() =>
            {
                return Err(SourceError::AmbiguousName);
            }
            Shape::All => Matcher::All,
            Shape::Pattern { prefix, stem, .. } => Matcher::Pattern(PatternKey {
                prefix: prefix.iter().map(|s| fold(s, provider)).collect(),
                stem: fold(&stem, provider),
            }),
            Shape::Table { segments, .. } => {
                Matcher::Table(TableKey(segments.iter().map(|s| fold(s, provider)).collect()))
            }
            Shape::Query => {
                let lexed = sql::lex(text, provider).map_err(|refusal| match refusal {
                    QueryRefusal::Empty => SourceError::Empty,
                    other => SourceError::Query(other),
                })?;
                if lexed.several_statements {
                    return Err(SourceError::MultipleStatements);
                }
                Matcher::Query { key: lexed.key, parsed: parses(text) }
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
            Matcher::Query { .. } => SourceKind::Query,
        }
    }

    /// For a query source, whether the provider's sqlparser dialect parses
    /// it. A query it cannot parse is still compared by its key; the answer
    /// only decides the `query_not_parsed` warning.
    #[must_use]
    pub fn query_parsed(&self) -> Option<bool> {
        match &self.matcher {
            Matcher::Query { parsed, .. } => Some(*parsed),
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
            // A quoted segment with a dot: one name or a path, depending on
            // the warehouse.
            ("p.d.`x.y`", Err("name_ambiguous")),
            ("p.\"d.x\".t", Err("name_ambiguous")),
            ("p.d.`x.*`", Err("name_ambiguous")),
            ("` p.d.t`", Ok(K::Table)),
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
            // A quoted segment with a dot is never a name in a request.
            ("p.d.x", "p.d.`x.y`", Bigquery, false),
            // Databricks reads `p.d.t` in backticks as one name with dots.
            ("p.d.t", "`p.d.t`", Databricks, false),
            ("`t`", "`t`", Databricks, true),
            // Unicode whitespace is not trimmed: PostgreSQL reads U+00A0 as
            // part of the name.
            ("public.t", "public.t\u{a0}", Postgres, false),
            ("public.t", " public.t\n", Postgres, true),
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
            // BigQuery splits a backticked segment into a path: `x.y` is two
            // more segments, so the pattern must not match it.
            ("project.dataset.*", "project.dataset.`x.y`", Bigquery, false),
            ("project.dataset.*", "project.dataset.`x.y`", Databricks, false),
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

    fn key(sql: &str, provider: Provider) -> QueryKey {
        match Source::new(sql, provider).unwrap().matcher() {
            Matcher::Query { key, .. } => key.clone(),
            other => panic!("not a query: {other:?}"),
        }
    }

    #[test]
    fn queries_compare_by_key() {
        let same: &[(&str, &str, Provider)] = &[
            ("SELECT a FROM t WHERE x = 1", "select  a\n from t -- why\n where x = 1", Postgres),
            ("SELECT * FROM `p.d.t` WHERE id = @id", "/* c */ select *\nFROM `p.d.t` where id = @id;", Bigquery),
            ("SELECT * FROM t WHERE a = $1", "SELECT *   FROM t WHERE a = $1", Postgres),
            ("SELECT * FROM t WHERE a = :a", "select * from t where a = :a", Snowflake),
            ("SELECT * FROM t WHERE a = ?", "SELECT * FROM t\tWHERE a = ?", Databricks),
        ];
        for (a, b, provider) in same {
            assert_eq!(key(a, *provider), key(b, *provider), "{a:?} vs {b:?}");
        }
        let different: &[(&str, &str, Provider)] = &[
            ("SELECT a FROM t", "SELECT b FROM t", Postgres),
            ("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = 2", Postgres),
            ("SELECT a FROM t WHERE x = 'a'", "SELECT a FROM t WHERE x = 'A'", Postgres),
            ("SELECT * FROM t WHERE id = @id", "SELECT * FROM t WHERE id = @other", Bigquery),
            ("SELECT * FROM t WHERE a = $1", "SELECT * FROM t WHERE a = $2", Postgres),
            ("SELECT * FROM t", "SELECT * FROM t WHERE true", Postgres),
        ];
        for (a, b, provider) in different {
            assert_ne!(key(a, *provider), key(b, *provider), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn queries_the_dialect_cannot_parse_are_keyed_and_flagged() {
        let odd = "FROBNICATE the   widgets -- trailing\n  /* note */ NOW";
        assert_eq!(key(odd, Postgres), key("frobnicate the widgets now", Postgres));
        assert_ne!(key(odd, Postgres), key("FROBNICATE the widgets", Postgres));
        let source = Source::new(odd, Postgres).unwrap();
        assert_eq!(source.kind(), SourceKind::Query);
        assert_eq!(source.query_parsed(), Some(false));
        assert_eq!(Source::new("SELECT 1", Postgres).unwrap().query_parsed(), Some(true));
    }

    #[test]
    fn queries_that_cannot_be_compared_are_invalid_grants() {
        let cases: &[(&str, Provider, &str)] = &[
            ("SELECT a FROM t --\rUNION SELECT b FROM s", Bigquery, "source_invalid_character"),
            ("SELECT a /* /* */ */ FROM t", Postgres, "query_ambiguous"),
            ("SELECT 'a\\' -- ' FROM t", Postgres, "query_ambiguous"),
            ("SELECT a # c", Snowflake, "query_ambiguous"),
            ("SELECT 'never", Bigquery, "query_ambiguous"),
            ("SELECT a FROM\u{a0}t", Postgres, "query_ambiguous"),
        ];
        for (sql, provider, code) in cases {
            assert_eq!(Source::new(sql, *provider).map_err(|e| e.code()), Err(*code), "{sql:?}");
        }
        let deep = format!("SELECT {}1{}", "(".repeat(65), ")".repeat(65));
        assert_eq!(Source::new(&deep, Postgres).map_err(|e| e.code()), Err("query_too_complex"));
    }

    #[test]
    fn whole_names_in_backticks_are_paths_only_in_bigquery() {
        for provider in [Bigquery, CartoDw] {
            assert_eq!(Source::new("`p.d.t`", provider).map(|s| s.kind()), Ok(SourceKind::Table));
            assert_eq!(Source::new("`p.d.*`", provider).map(|s| s.kind()), Ok(SourceKind::Pattern));
        }
        for provider in [Databricks, Postgres, Redshift, Snowflake] {
            assert_eq!(Source::new("`p.d.t`", provider), Err(SourceError::AmbiguousName), "{provider}");
            assert_eq!(Source::new("`p.d.*`", provider), Err(SourceError::AmbiguousName), "{provider}");
            assert_eq!(Source::new("`t`", provider).map(|s| s.kind()), Ok(SourceKind::Table), "{provider}");
        }
    }

    #[test]
    fn queries_must_be_one_statement() {
        assert_eq!(Source::new("SELECT 1; SELECT 2", Postgres), Err(SourceError::MultipleStatements));
        assert_eq!(Source::new("-- only a comment", Postgres), Err(SourceError::Empty));
        assert!(Source::new("SELECT 1;", Postgres).is_ok());
    }
}
