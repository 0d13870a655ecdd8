//! Query keys (SPEC §2): a query read the way its connection's warehouse
//! reads it, reduced to what decides which statement it is.
//!
//! A query grant matches a requested query when both have the same key. The
//! key must never make two different statements equal, so it is built from
//! the warehouse's own lexical rules, not from a general SQL parser's: the
//! earlier design compared sqlparser's printed statements, and every place
//! where sqlparser's lexer and the warehouse's disagree (a carriage return
//! ending a `--` comment, `#` comments, nested comments, backslashes in
//! strings) was a way to send a different statement under a granted one.
//!
//! What the key keeps and drops:
//!
//! - Whitespace and comments are dropped, but whether two tokens were
//!   separated is kept wherever a warehouse could glue them: between two
//!   operator characters, between words and quoted text, and next to
//!   operator characters that take part in numbers, paths and parameters
//!   (`-`, `+`, `.`, `:`, `@`, `/`, …). So `x = 1` and `x=1` are one key,
//!   but `x < -1` and `x <-1` are two: latchkey never has to know how a
//!   warehouse splits a run of characters such as `<-1`, `1e+5` or
//!   `U&'…'`, because a run that is written the same way is read the same
//!   way.
//! - Strings, quoted identifiers and dollar-quoted text are kept byte for
//!   byte, quotes and escapes included, so no two spellings of a literal are
//!   confused and no literal can look like other tokens.
//! - Unquoted words are folded only where the warehouse folds them: every
//!   word for PostgreSQL and Redshift (they fold identifiers to lower case
//!   and read keywords in any case), standalone words for Snowflake (which
//!   folds identifiers to upper case, but not the element names of a
//!   semi-structured path or a stage path), reserved keywords for BigQuery
//!   (where table names are case-sensitive), nothing for Databricks (whose
//!   keywords may be identifiers, case-sensitive under
//!   `spark.sql.caseSensitive`).
//! - Each token is written as a tag, its length and its text, so the key of
//!   one token can never read as the key of several.
//!
//! What cannot be read with certainty is refused ([`QueryRefusal`]): control
//! characters, Unicode whitespace and line separators outside quotes,
//! nested comments, a backslash before a quote where warehouses (or their
//! settings) disagree on whether it escapes, comment markers a warehouse may
//! or may not honour, dollar quoting where it is not certain, and queries
//! past a size and nesting cap. A refused request is not granted; a refused
//! grant is a validation error. `docs/sql-lexicon.md` has the rules per
//! warehouse and their sources.
//!
//! The lexer is a loop over the bytes with no recursion, so no input can
//! exhaust the stack; the work is linear in the length of the query.

use std::fmt::Write;

use crate::provider::Provider;

/// The most tokens a query may have (whitespace and comments aside).
pub const MAX_QUERY_TOKENS: usize = 16_384;

/// The deepest a query may nest parentheses and brackets.
pub const MAX_QUERY_NESTING: usize = 64;

/// Why a query cannot be compared with certainty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum QueryRefusal {
    /// Nothing but whitespace and comments.
    #[error("the query is empty")]
    Empty,
    /// A control character other than tab, line feed and a carriage return
    /// before a line feed, or a Unicode line or paragraph separator.
    #[error(
        "the query contains a control character or a Unicode line separator (only tab, line feed and carriage return \
         followed by line feed are allowed); warehouses disagree on where such characters end comments"
    )]
    ControlCharacter,
    /// Whitespace outside quotes that is not a space, tab or line break.
    #[error("the query contains Unicode whitespace outside quotes; warehouses disagree on whether it separates words")]
    UnicodeWhitespace,
    /// A character this warehouse's lexer does not accept outside quotes.
    #[error("the query contains `{0}` outside quotes, which this warehouse does not read as SQL")]
    UnexpectedCharacter(char),
    /// A string, quoted identifier or dollar quote that does not end.
    #[error("the query has a quote that is not closed")]
    UnterminatedQuote,
    /// A doubled quote inside BigQuery text, which BigQuery rejects and
    /// which may open a triple-quoted string there.
    #[error("the query has a doubled quote inside quoted text, which BigQuery does not accept")]
    DoubledQuote,
    /// A block comment that does not end.
    #[error("the query has a /* comment that is not closed")]
    UnterminatedComment,
    /// `/*` inside a block comment: some warehouses nest comments, some do
    /// not, so the comment's end is uncertain.
    #[error("the query has a comment inside a comment; warehouses disagree on where it ends")]
    NestedComment,
    /// A line comment that ends with a backslash, which Spark continues onto
    /// the next line.
    #[error("the query has a -- comment ending in a backslash, which Databricks continues onto the next line")]
    CommentContinuation,
    /// `/*+ … */`: an optimizer hint, which this warehouse reads (or may
    /// read) as syntax.
    #[error("the query has an optimizer hint (/*+ … */), which this warehouse may read as part of the statement")]
    Hint,
    /// A backslash before a quote in text where it may or may not escape it.
    #[error(
        "the query has a backslash before a quote where it is uncertain whether the backslash escapes it \
         (it depends on the warehouse or its settings)"
    )]
    AmbiguousBackslash,
    /// A comment marker that this warehouse may or may not honour.
    #[error("the query contains `{0}`, which this warehouse may read as the start of a comment")]
    UncertainComment(&'static str),
    /// Dollar quoting where the warehouse may not have it, or malformed.
    #[error("the query uses $ in a way this warehouse may read as dollar quoting")]
    DollarQuote,
    /// `${…}`: text that Databricks substitutes before it parses the query.
    #[error("the query contains ${{, which Databricks replaces with a variable's value before reading the query")]
    VariableSubstitution,
    /// `U&'…'` or `U&"…"`, whose escapes depend on server settings.
    #[error("the query uses a Unicode escape string (U&'…'), whose reading depends on server settings")]
    UnicodeEscapeString,
    /// More than [`MAX_QUERY_TOKENS`] tokens.
    #[error("the query has more than {MAX_QUERY_TOKENS} tokens")]
    TooManyTokens,
    /// Parentheses or brackets nested deeper than [`MAX_QUERY_NESTING`].
    #[error("the query nests parentheses deeper than {MAX_QUERY_NESTING} levels")]
    TooDeep,
}

/// The comparison key of a query under one provider's lexical rules.
///
/// Invariant: two queries have equal keys only if the warehouse reads them
/// as the same sequence of tokens (whitespace and comments aside, and
/// letter case where the warehouse ignores it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryKey(Box<str>);

/// A query's key and what validation needs to know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LexedQuery {
    pub(crate) key: QueryKey,
    /// Whether a `;` separates two statements (a last `;` does not).
    pub(crate) several_statements: bool,
}

impl QueryKey {
    /// Reads `sql` with `provider`'s lexical rules.
    ///
    /// # Errors
    /// The [`QueryRefusal`] that makes the query impossible to compare with
    /// certainty, or [`QueryRefusal::Empty`].
    pub fn new(sql: &str, provider: Provider) -> Result<Self, QueryRefusal> {
        lex(sql, provider).map(|lexed| lexed.key)
    }

    /// The key as text, for tools and benchmarks that show it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a warehouse treats backslashes inside one kind of quoted text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backslash {
    /// A backslash always escapes the next character (BigQuery strings,
    /// Snowflake strings, Spark strings, PostgreSQL `E'…'`).
    Escapes,
    /// It may or may not (it is literal in raw strings and identifiers, and
    /// in PostgreSQL strings it depends on `standard_conforming_strings`):
    /// the text is read as if it escaped, and a backslash before a quote,
    /// the only place where the two readings end the text differently, is
    /// refused.
    Uncertain,
}

/// What a character starts, outside quotes, where warehouses differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A quoted identifier or string, read with this backslash rule.
    Quote(Backslash),
    /// An operator character like any other.
    Operator,
    /// A line comment.
    Comment,
    /// Refused: its role in this warehouse is not certain.
    Refused,
}

/// How a warehouse reads `$` at the start of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dollar {
    /// PostgreSQL: `$1` is a parameter, `$tag$…$tag$` a dollar quote.
    Postgres,
    /// Snowflake: `$$…$$` is a string, `$1` a column, `$name` a variable.
    Snowflake,
    /// Redshift: `$1` is a parameter; anything else is refused, since it is
    /// not documented whether dollar quoting works outside function bodies.
    ParametersOnly,
    /// BigQuery, Databricks: refused.
    Refused,
}

/// How a warehouse folds the case of unquoted words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fold {
    /// Every unquoted word, to lower case (PostgreSQL, Redshift).
    AllLower,
    /// Standalone words to upper case (Snowflake).
    StandaloneUpper,
    /// Only standalone reserved keywords, to upper case (BigQuery).
    ReservedUpper(&'static [&'static str]),
    /// Nothing (Databricks).
    Nothing,
}

/// One warehouse's lexical rules: the rows of `docs/sql-lexicon.md`.
#[derive(Clone, Copy, Debug)]
struct Lexicon {
    /// `'…'` strings (with no prefix, or a prefix that is not raw).
    single_quote: Backslash,
    /// `"…"`.
    double_quote: Role,
    /// `` `…` ``.
    backtick: Role,
    /// `#`.
    hash: Role,
    /// BigQuery's `'''…'''` and `"""…"""`.
    triple_quotes: bool,
    /// Prefixes that make a string raw (`r`, `rb`, `br`), read with
    /// [`Backslash::Uncertain`].
    raw_prefixes: bool,
    /// PostgreSQL's `E'…'`, where backslashes always escape.
    escape_prefix: bool,
    /// PostgreSQL's `U&'…'`, refused.
    unicode_prefix_refused: bool,
    /// Whether `/*+ … */` is refused: Spark reads it as a hint (syntax that
    /// cannot be dropped), and Snowflake and Redshift do not document
    /// whether they do. BigQuery (whose hints are `@{…}`) and PostgreSQL
    /// read it as a comment.
    hints_refused: bool,
    /// Databricks replaces `${…}` anywhere in the text, quotes included.
    variable_substitution: bool,
    dollar: Dollar,
    /// Whether `$` may continue an unquoted word (`a$b`).
    dollar_in_words: bool,
    /// Whether non-ASCII characters are identifier characters (PostgreSQL
    /// reads every byte above 0x7F as one); elsewhere they are refused.
    non_ascii_words: bool,
    /// BigQuery's named parameters and system variables, `@name` and
    /// `@@name`, are one token. (In PostgreSQL `@` is an operator
    /// character: `=@x` is the operator `=@`.)
    at_parameters: bool,
    fold: Fold,
}

impl Provider {
    /// The provider's lexical rules.
    fn lexicon(self) -> &'static Lexicon {
        match self {
            Provider::Bigquery | Provider::CartoDw => &BIGQUERY,
            Provider::Snowflake => &SNOWFLAKE,
            Provider::Redshift => &REDSHIFT,
            Provider::Postgres => &POSTGRES,
            Provider::Databricks => &DATABRICKS,
        }
    }
}

const BIGQUERY: Lexicon = Lexicon {
    single_quote: Backslash::Escapes,
    double_quote: Role::Quote(Backslash::Escapes),
    backtick: Role::Quote(Backslash::Uncertain),
    hash: Role::Comment,
    triple_quotes: true,
    raw_prefixes: true,
    escape_prefix: false,
    unicode_prefix_refused: false,
    hints_refused: false,
    variable_substitution: false,
    dollar: Dollar::Refused,
    dollar_in_words: false,
    non_ascii_words: false,
    at_parameters: true,
    fold: Fold::ReservedUpper(BIGQUERY_RESERVED),
};

const SNOWFLAKE: Lexicon = Lexicon {
    single_quote: Backslash::Escapes,
    double_quote: Role::Quote(Backslash::Uncertain),
    backtick: Role::Refused,
    hash: Role::Refused,
    triple_quotes: false,
    raw_prefixes: false,
    escape_prefix: false,
    unicode_prefix_refused: false,
    hints_refused: true,
    variable_substitution: false,
    dollar: Dollar::Snowflake,
    dollar_in_words: true,
    non_ascii_words: false,
    at_parameters: false,
    fold: Fold::StandaloneUpper,
};

const REDSHIFT: Lexicon = Lexicon {
    single_quote: Backslash::Uncertain,
    double_quote: Role::Quote(Backslash::Uncertain),
    backtick: Role::Refused,
    // `#` starts the names of temporary tables.
    hash: Role::Operator,
    triple_quotes: false,
    raw_prefixes: false,
    escape_prefix: false,
    unicode_prefix_refused: true,
    hints_refused: true,
    variable_substitution: false,
    dollar: Dollar::ParametersOnly,
    dollar_in_words: true,
    non_ascii_words: true,
    at_parameters: false,
    fold: Fold::AllLower,
};

const POSTGRES: Lexicon = Lexicon {
    single_quote: Backslash::Uncertain,
    double_quote: Role::Quote(Backslash::Uncertain),
    // An operator character in PostgreSQL.
    backtick: Role::Operator,
    // The XOR operator, and part of `#>`, `#>>`, `#-`.
    hash: Role::Operator,
    triple_quotes: false,
    raw_prefixes: false,
    escape_prefix: true,
    unicode_prefix_refused: true,
    hints_refused: false,
    variable_substitution: false,
    dollar: Dollar::Postgres,
    dollar_in_words: true,
    non_ascii_words: true,
    at_parameters: false,
    fold: Fold::AllLower,
};

const DATABRICKS: Lexicon = Lexicon {
    single_quote: Backslash::Escapes,
    // A string by default, an identifier under
    // `spark.sql.ansi.doubleQuotedIdentifiers`.
    double_quote: Role::Quote(Backslash::Uncertain),
    backtick: Role::Quote(Backslash::Uncertain),
    hash: Role::Refused,
    triple_quotes: false,
    raw_prefixes: true,
    escape_prefix: false,
    unicode_prefix_refused: false,
    hints_refused: true,
    variable_substitution: true,
    dollar: Dollar::Refused,
    dollar_in_words: false,
    non_ascii_words: false,
    at_parameters: false,
    fold: Fold::Nothing,
};

/// GoogleSQL's reserved keywords: words that can be an identifier only when
/// quoted (or after a dot in a path), so their case never names anything.
/// Sorted, for binary search.
const BIGQUERY_RESERVED: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "ASSERT_ROWS_MODIFIED",
    "AT",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COLLATE",
    "CONTAINS",
    "CREATE",
    "CROSS",
    "CUBE",
    "CURRENT",
    "DEFAULT",
    "DEFINE",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "ENUM",
    "ESCAPE",
    "EXCEPT",
    "EXCLUDE",
    "EXISTS",
    "EXTRACT",
    "FALSE",
    "FETCH",
    "FOLLOWING",
    "FOR",
    "FROM",
    "FULL",
    "GRAPH_TABLE",
    "GROUP",
    "GROUPING",
    "GROUPS",
    "HASH",
    "HAVING",
    "IF",
    "IGNORE",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOOKUP",
    "MERGE",
    "NATURAL",
    "NEW",
    "NO",
    "NOT",
    "NULL",
    "NULLS",
    "OF",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRECEDING",
    "PROTO",
    "QUALIFY",
    "RANGE",
    "RECURSIVE",
    "RESPECT",
    "RIGHT",
    "ROLLUP",
    "ROWS",
    "SELECT",
    "SET",
    "SOME",
    "STRUCT",
    "TABLESAMPLE",
    "THEN",
    "TO",
    "TREAT",
    "TRUE",
    "UNBOUNDED",
    "UNION",
    "UNNEST",
    "USING",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHIN",
];

/// What a token is, for the key and for folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// An unquoted word: keyword, identifier, number or parameter.
    Word,
    /// Quoted text: a string, a quoted identifier, a dollar quote.
    Quoted,
    /// One character of an operator or other punctuation.
    Operator,
    /// `(`, `)`, `,` or `;`: never glued to a neighbour.
    Separator,
}

impl Kind {
    const fn tag(self) -> char {
        match self {
            Kind::Word => 'w',
            Kind::Quoted => 'q',
            Kind::Operator => 'o',
            Kind::Separator => 's',
        }
    }
}

/// A token: its kind, its bytes in the query, and whether whitespace or a
/// comment came before it.
#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    spaced: bool,
}

fn is_word_byte(b: u8, lexicon: &Lexicon) -> bool {
    b.is_ascii_alphanumeric()
        || b == b'_'
        || (b == b'$' && lexicon.dollar_in_words)
        || (b >= 0x80 && lexicon.non_ascii_words)
}

/// Refuses control characters anywhere, quotes included: a C0 control but
/// tab, line feed and a carriage return before a line feed; DEL; a C1
/// control (U+0080–U+009F, which includes NEL); U+2028 and U+2029.
pub(crate) fn check_characters(bytes: &[u8]) -> Result<(), QueryRefusal> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\t' | b'\n' => {}
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            0x00..=0x1f | 0x7f => return Err(QueryRefusal::ControlCharacter),
            // U+0080–U+009F are 0xC2 0x80–0x9F in UTF-8.
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) => return Err(QueryRefusal::ControlCharacter),
            // U+2028 and U+2029 are 0xE2 0x80 0xA8 and 0xE2 0x80 0xA9.
            0xe2 if bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) => {
                return Err(QueryRefusal::ControlCharacter);
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Reads quoted text that starts at `start` with `quote` repeated `width`
/// times (1, or 3 for BigQuery's triple quotes) and returns the index just
/// past its end.
///
/// A doubled quote inside single-width text continues it: PostgreSQL,
/// Redshift and Snowflake read it as an escaped quote, Spark as the end of
/// one string and the start of the next, and both readings end in the same
/// place. In BigQuery a doubled quote may instead end a string and open a
/// triple-quoted one; BigQuery rejects literals glued together anyway, so
/// there it is refused.
fn quoted_end(
    bytes: &[u8],
    start: usize,
    quote: u8,
    width: usize,
    backslash: Backslash,
    lexicon: &Lexicon,
) -> Result<usize, QueryRefusal> {
    let mut i = start + width;
    loop {
        match bytes.get(i) {
            None => return Err(QueryRefusal::UnterminatedQuote),
            Some(b'\\') => {
                if bytes.get(i + 1) == Some(&quote) && backslash == Backslash::Uncertain {
                    return Err(QueryRefusal::AmbiguousBackslash);
                }
                i += 2;
            }
            Some(&b) if b == quote => {
                if width == 3 {
                    if bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                        return Ok(i + 3);
                    }
                    i += 1;
                } else if bytes.get(i + 1) == Some(&quote) {
                    if lexicon.triple_quotes {
                        return Err(QueryRefusal::DoubledQuote);
                    }
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            Some(_) => i += 1,
        }
    }
}

/// Reads a PostgreSQL dollar quote or parameter at `start` (a `$`), and
/// returns the index past it and its kind.
fn postgres_dollar(bytes: &[u8], start: usize, lexicon: &Lexicon) -> Result<(Kind, usize), QueryRefusal> {
    let mut i = start + 1;
    if bytes.get(i).is_some_and(u8::is_ascii_digit) {
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        // `$1abc` and `$1$` are errors in PostgreSQL ("trailing junk"),
        // but older versions read `$1` and then the rest: refuse both.
        if bytes.get(i).is_some_and(|&b| is_word_byte(b, lexicon)) {
            return Err(QueryRefusal::DollarQuote);
        }
        return Ok((Kind::Word, i));
    }
    // A tag: an identifier without `$`, then `$`.
    let starts_tag = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
    if bytes.get(i).is_some_and(|&b| starts_tag(b)) {
        while bytes.get(i).is_some_and(|&b| starts_tag(b) || b.is_ascii_digit()) {
            i += 1;
        }
    }
    if bytes.get(i) != Some(&b'$') {
        return Err(QueryRefusal::DollarQuote);
    }
    let delimiter = &bytes[start..=i];
    let body = i + 1;
    match find(&bytes[body..], delimiter) {
        Some(at) => Ok((Kind::Quoted, body + at + delimiter.len())),
        None => Err(QueryRefusal::UnterminatedQuote),
    }
}

/// The first index of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Reads a block comment at `start` (`/*`) and returns the index past it.
fn block_comment_end(bytes: &[u8], start: usize, lexicon: &Lexicon) -> Result<usize, QueryRefusal> {
    if lexicon.hints_refused && bytes.get(start + 2) == Some(&b'+') {
        return Err(QueryRefusal::Hint);
    }
    let mut i = start + 2;
    loop {
        match (bytes.get(i), bytes.get(i + 1)) {
            (None, _) | (Some(_), None) => return Err(QueryRefusal::UnterminatedComment),
            (Some(b'*'), Some(b'/')) => return Ok(i + 2),
            (Some(b'/'), Some(b'*')) => return Err(QueryRefusal::NestedComment),
            _ => i += 1,
        }
    }
}

/// The index of the line feed that ends a line comment, or the end.
///
/// Spark's lexer carries a `--` comment over a backslash at the end of the
/// line onto the next one, where the other warehouses end it: such a
/// comment is refused everywhere.
fn line_end(bytes: &[u8], start: usize) -> Result<usize, QueryRefusal> {
    let end = bytes[start..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |at| start + at);
    let line = &bytes[start..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.ends_with(b"\\") {
        return Err(QueryRefusal::CommentContinuation);
    }
    Ok(end)
}

/// Whether non-ASCII `c` is whitespace (which is refused outside quotes).
fn unicode_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}' || c == '\u{200b}'
}

/// Splits `sql` into tokens with `lexicon`'s rules.
fn tokens(sql: &str, lexicon: &Lexicon) -> Result<Vec<Token>, QueryRefusal> {
    let bytes = sql.as_bytes();
    check_characters(bytes)?;
    if lexicon.variable_substitution && find(bytes, b"${").is_some() {
        return Err(QueryRefusal::VariableSubstitution);
    }
    let mut out: Vec<Token> = Vec::new();
    let mut spaced = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let (kind, end) = match b {
            b' ' | b'\t' | b'\n' | b'\r' => {
                spaced = true;
                i += 1;
                continue;
            }
            b'-' if next == Some(b'-') => {
                spaced = true;
                i = line_end(bytes, i)?;
                continue;
            }
            b'/' if next == Some(b'*') => {
                spaced = true;
                i = block_comment_end(bytes, i, lexicon)?;
                continue;
            }
            // Snowflake is said to read `//` as a line comment, but no
            // reference of its own says so, and a stage path such as
            // `@stage/a//b` may hold it: refused everywhere.
            b'/' if next == Some(b'/') => return Err(QueryRefusal::UncertainComment("//")),
            b'#' => match lexicon.hash {
                Role::Comment => {
                    spaced = true;
                    i = line_end(bytes, i)?;
                    continue;
                }
                Role::Operator => (Kind::Operator, i + 1),
                Role::Refused | Role::Quote(_) => return Err(QueryRefusal::UncertainComment("#")),
            },
            b'(' | b'[' => {
                depth += 1;
                if depth > MAX_QUERY_NESTING {
                    return Err(QueryRefusal::TooDeep);
                }
                (if b == b'(' { Kind::Separator } else { Kind::Operator }, i + 1)
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                (if b == b')' { Kind::Separator } else { Kind::Operator }, i + 1)
            }
            b',' | b';' => (Kind::Separator, i + 1),
            b'\'' => (Kind::Quoted, string_end(bytes, i, b'\'', lexicon.single_quote, &out, lexicon)?),
            b'"' => match lexicon.double_quote {
                Role::Quote(backslash) => (Kind::Quoted, string_end(bytes, i, b'"', backslash, &out, lexicon)?),
                _ => return Err(QueryRefusal::UnexpectedCharacter('"')),
            },
            b'`' => match lexicon.backtick {
                Role::Quote(backslash) => (Kind::Quoted, quoted_end(bytes, i, b'`', 1, backslash, lexicon)?),
                Role::Operator => (Kind::Operator, i + 1),
                Role::Refused | Role::Comment => return Err(QueryRefusal::UnexpectedCharacter('`')),
            },
            b'$' => match lexicon.dollar {
                Dollar::Postgres => postgres_dollar(bytes, i, lexicon)?,
                Dollar::ParametersOnly if next.is_some_and(|b| b.is_ascii_digit()) => {
                    postgres_dollar(bytes, i, lexicon)?
                }
                Dollar::Snowflake if next == Some(b'$') => match find(&bytes[i + 2..], b"$$") {
                    Some(at) => (Kind::Quoted, i + 2 + at + 2),
                    None => return Err(QueryRefusal::UnterminatedQuote),
                },
                Dollar::Snowflake => (Kind::Word, word_end(bytes, i + 1, lexicon)?),
                Dollar::ParametersOnly | Dollar::Refused => return Err(QueryRefusal::DollarQuote),
            },
            b'@' if lexicon.at_parameters => {
                let name = if next == Some(b'@') { i + 2 } else { i + 1 };
                if bytes.get(name).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
                    (Kind::Word, word_end(bytes, name, lexicon)?)
                } else {
                    (Kind::Operator, i + 1)
                }
            }
            b'\\' => return Err(QueryRefusal::UnexpectedCharacter('\\')),
            b if b.is_ascii_alphanumeric() || b == b'_' => (Kind::Word, word_end(bytes, i, lexicon)?),
            b if b.is_ascii_graphic() => (Kind::Operator, i + 1),
            _ => {
                // Non-ASCII outside quotes: `i` is at a character boundary,
                // since every branch above steps over whole characters.
                let c = sql[i..].chars().next().unwrap_or('\u{fffd}');
                if unicode_whitespace(c) {
                    return Err(QueryRefusal::UnicodeWhitespace);
                }
                if !lexicon.non_ascii_words {
                    return Err(QueryRefusal::UnexpectedCharacter(c));
                }
                (Kind::Word, word_end(bytes, i, lexicon)?)
            }
        };
        if out.len() == MAX_QUERY_TOKENS {
            return Err(QueryRefusal::TooManyTokens);
        }
        out.push(Token { kind, start: i, end, spaced });
        spaced = false;
        i = end;
    }
    Ok(out)
}

/// The end of an unquoted word starting at `start`. A word never holds
/// `$$` (PostgreSQL and Redshift read it as part of the word, Snowflake may
/// read it as the start of a string) or non-ASCII whitespace.
fn word_end(bytes: &[u8], start: usize, lexicon: &Lexicon) -> Result<usize, QueryRefusal> {
    let number = bytes.get(start).is_some_and(u8::is_ascii_digit);
    let mut i = start;
    while i < bytes.len() && is_word_byte(bytes[i], lexicon) {
        // PostgreSQL ends a number before `$` (`1$x$…` is a number and a
        // dollar quote) but not an identifier (`a$x$` is one name): `$`
        // after digits is refused rather than read either way.
        if bytes[i] == b'$' && (number || bytes.get(i + 1) == Some(&b'$')) {
            return Err(QueryRefusal::DollarQuote);
        }
        if bytes[i] >= 0x80 {
            // Only PostgreSQL and Redshift get here; whitespace such as
            // U+00A0 would be part of their identifier, which is faithful,
            // but it is refused for the same clarity as everywhere else.
            let text = std::str::from_utf8(&bytes[i..]).ok();
            let c = text.and_then(|t| t.chars().next()).unwrap_or('\u{fffd}');
            if unicode_whitespace(c) {
                return Err(QueryRefusal::UnicodeWhitespace);
            }
            i += c.len_utf8();
        } else {
            i += 1;
        }
    }
    Ok(i)
}

/// Reads a string (or a quoted identifier written with `'` or `"`) at
/// `start`, choosing the backslash rule from the word glued before it: a
/// prefix such as `r` (raw), `E` (escapes) or `U&` (refused).
fn string_end(
    bytes: &[u8],
    start: usize,
    quote: u8,
    backslash: Backslash,
    before: &[Token],
    lexicon: &Lexicon,
) -> Result<usize, QueryRefusal> {
    // The token that ends right where the quote starts, and the one glued
    // before that.
    let last = before.last().filter(|t| t.end == start);
    let second = before.len().checked_sub(2).and_then(|i| before.get(i));
    let mut backslash = backslash;
    if let Some(token) = last {
        let prefix = &bytes[token.start..token.end];
        if lexicon.unicode_prefix_refused
            && prefix == b"&"
            && second.is_some_and(|u| u.end == token.start && bytes[u.start..u.end].eq_ignore_ascii_case(b"u"))
        {
            return Err(QueryRefusal::UnicodeEscapeString);
        }
        let is = |p: &[u8]| prefix.eq_ignore_ascii_case(p);
        if lexicon.raw_prefixes && (is(b"r") || is(b"rb") || is(b"br")) {
            backslash = Backslash::Uncertain;
        } else if lexicon.escape_prefix && quote == b'\'' && is(b"e") {
            backslash = Backslash::Escapes;
        }
    }
    let triple = lexicon.triple_quotes && bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    quoted_end(bytes, start, quote, if triple { 3 } else { 1 }, backslash, lexicon)
}

/// Whether the word `this` is folded, given its neighbours.
fn folds(fold: Fold, this: (&Token, &[u8]), previous: Option<(&Token, &[u8])>, next: Option<(&Token, &[u8])>) -> bool {
    let text = this.1;
    // A number is kept as written: PostgreSQL keeps `1E5` and `1e5` as
    // different texts of a float in its parse tree, and nothing is gained
    // by reading them as one.
    if text.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    match fold {
        Fold::AllLower => true,
        Fold::Nothing => false,
        Fold::StandaloneUpper | Fold::ReservedUpper(_) => {
            // Standalone: apart from both neighbours (spaced, or next to a
            // separator or a plain operator), and not next to a path or
            // parameter character even across whitespace, where a word
            // names a field, a file or a parameter.
            let path = |t: &Token, text: &[u8]| t.kind == Kind::Operator && matches!(text, b"." | b":" | b"@" | b"/");
            let apart = |(a, a_text): (&Token, &[u8]), (b, b_text): (&Token, &[u8])| {
                b.spaced || spacing_is_irrelevant(a, a_text, b, b_text)
            };
            let previous_ok = previous.is_none_or(|p| apart(p, this) && !path(p.0, p.1));
            let next_ok = next.is_none_or(|n| apart(this, n) && !path(n.0, n.1));
            // Variables and parameters keep their case.
            if !(previous_ok && next_ok) || text.contains(&b'$') || text.first() == Some(&b'@') {
                return false;
            }
            match fold {
                Fold::ReservedUpper(reserved) => {
                    let upper = text.to_ascii_uppercase();
                    reserved.binary_search_by(|word| word.as_bytes().cmp(&upper)).is_ok()
                }
                _ => true,
            }
        }
    }
}

/// Operator characters that no warehouse glues to a word or to quoted text
/// next to them: `x=1` and `x = 1` are one query. Left out on purpose: `-`
/// and `+` (exponents such as `1e-5`, BigQuery's `my-project`), `/` and `%`
/// (Snowflake stage paths `@stage/dir`, `@%table`), `.`, `:`, `@`, `$`,
/// `#` and `?` (paths, parameters and variables), brackets and braces.
const PLAIN_OPERATORS: &[u8] = b"=<>*|^~!&";

/// Whether whitespace between `a` and `b` never changes how a warehouse
/// reads them: next to a separator, or between a plain operator character
/// and a word or quoted text. Between two operator characters it always
/// matters (PostgreSQL reads `=-` as `=` and `-`, but `@-` as one
/// operator), and between words or quoted texts it matters wherever a
/// prefix glues (`E'…'`, `N'…'`, `0x1F`).
fn spacing_is_irrelevant(a: &Token, a_text: &[u8], b: &Token, b_text: &[u8]) -> bool {
    let plain = |t: &Token, text: &[u8]| t.kind == Kind::Operator && PLAIN_OPERATORS.contains(&text[0]);
    let operand = |t: &Token| matches!(t.kind, Kind::Word | Kind::Quoted);
    a.kind == Kind::Separator
        || b.kind == Kind::Separator
        || (plain(a, a_text) && operand(b))
        || (operand(a) && plain(b, b_text))
}

/// Lexes `sql` with `provider`'s rules into its key.
pub(crate) fn lex(sql: &str, provider: Provider) -> Result<LexedQuery, QueryRefusal> {
    let lexicon = provider.lexicon();
    let mut tokens = tokens(sql, lexicon)?;
    let bytes = sql.as_bytes();
    let text = |t: &Token| &bytes[t.start..t.end];
    if tokens.last().is_some_and(|t| text(t) == b";") {
        tokens.pop();
    }
    if tokens.is_empty() {
        return Err(QueryRefusal::Empty);
    }
    let several_statements = tokens.iter().any(|t| text(t) == b";");
    let mut key = String::with_capacity(sql.len() + tokens.len() * 4);
    for (index, token) in tokens.iter().enumerate() {
        let previous = index.checked_sub(1).map(|i| &tokens[i]);
        if let Some(previous) = previous
            && token.spaced
            && !spacing_is_irrelevant(previous, text(previous), token, text(token))
        {
            key.push('_');
        }
        let raw = text(token);
        let folded: Option<Vec<u8>> = (token.kind == Kind::Word
            && folds(
                lexicon.fold,
                (token, raw),
                previous.map(|t| (t, text(t))),
                tokens.get(index + 1).map(|t| (t, text(t))),
            ))
        .then(|| match lexicon.fold {
            Fold::AllLower => raw.to_ascii_lowercase(),
            _ => raw.to_ascii_uppercase(),
        });
        let raw = folded.as_deref().unwrap_or(raw);
        // Every token starts and ends at a character boundary, and ASCII
        // case folding keeps UTF-8 valid.
        let raw = std::str::from_utf8(raw).map_err(|_| QueryRefusal::UnexpectedCharacter('\u{fffd}'))?;
        // Tag, length and text: no text can read as several tokens.
        let _ = write!(key, "{}{}:{raw}", token.kind.tag(), raw.len());
    }
    Ok(LexedQuery { key: QueryKey(key.into_boxed_str()), several_statements })
}
