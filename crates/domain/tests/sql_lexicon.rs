//! The lexical rules of each warehouse (`docs/sql-lexicon.md`), row by row:
//! which texts read as the same query, which never do, and which are
//! refused because a warehouse could read them two ways.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_domain::Provider::{self, Bigquery, CartoDw, Databricks, Postgres, Redshift, Snowflake};
use latchkey_domain::sql::{MAX_QUERY_NESTING, MAX_QUERY_TOKENS, QueryKey, QueryRefusal};

const EVERY: &[Provider] = &[Bigquery, CartoDw, Snowflake, Redshift, Postgres, Databricks];

/// What a row expects of two texts, or of one.
enum Expect {
    /// Both read as the same query.
    Same(&'static str, &'static str),
    /// Both are readable, and never the same query.
    Differ(&'static str, &'static str),
    /// Refused, for this reason.
    Refused(&'static str, QueryRefusal),
}
use Expect::{Differ, Refused, Same};

fn key(sql: &str, provider: Provider) -> Result<QueryKey, QueryRefusal> {
    QueryKey::new(sql, provider)
}

fn check(row: &str, providers: &[Provider], expectations: &[Expect]) {
    for &provider in providers {
        for expect in expectations {
            match expect {
                Same(a, b) => {
                    let (ka, kb) = (key(a, provider), key(b, provider));
                    assert!(ka.is_ok(), "{row} [{provider}]: {a:?} refused: {ka:?}");
                    assert_eq!(ka, kb, "{row} [{provider}]: {a:?} and {b:?} should be the same query");
                }
                Differ(a, b) => {
                    let (ka, kb) = (key(a, provider), key(b, provider));
                    assert!(ka.is_ok() && kb.is_ok(), "{row} [{provider}]: refused: {a:?} {ka:?} / {b:?} {kb:?}");
                    assert_ne!(ka, kb, "{row} [{provider}]: {a:?} and {b:?} must not be the same query");
                }
                Refused(a, why) => {
                    assert_eq!(key(a, provider).err(), Some(*why), "{row} [{provider}]: {a:?}");
                }
            }
        }
    }
}

#[test]
fn whitespace_is_space_tab_and_line_feed() {
    check(
        "whitespace",
        EVERY,
        &[
            Same("SELECT a FROM t", "SELECT\ta\nFROM   t"),
            Same("SELECT a FROM t", "  SELECT a\r\nFROM t\r\n"),
            // Unicode whitespace outside quotes is refused: PostgreSQL reads
            // U+00A0 as part of a name, other lexers as a separator.
            Refused("SELECT a FROM\u{a0}t", QueryRefusal::UnicodeWhitespace),
            Refused("SELECT a\u{3000}FROM t", QueryRefusal::UnicodeWhitespace),
            Refused("SELECT a FROM t\u{2003}", QueryRefusal::UnicodeWhitespace),
            Refused("SELECT\u{200b}a FROM t", QueryRefusal::UnicodeWhitespace),
            // Inside quotes it is text, and text is compared as written.
            Differ("SELECT 'a\u{a0}b'", "SELECT 'a b'"),
        ],
    );
}

#[test]
fn control_characters_and_line_separators_are_refused_everywhere() {
    let cases = [
        // The review's case: a lone CR ends a `--` comment in BigQuery,
        // Snowflake, Databricks and PostgreSQL.
        "SELECT a FROM t WHERE x = 1 --\rUNION ALL SELECT secret FROM s",
        "SELECT a FROM t\r",
        "SELECT 'a\rb'",
        "SELECT a -- c\u{b}\nFROM t",
        "SELECT a -- c\u{c}\nFROM t",
        "SELECT a\u{0}",
        "SELECT '\u{1f}'",
        "SELECT '\u{7f}'",
        "SELECT a -- \u{85}UNION SELECT b",
        "SELECT a -- \u{2028}UNION SELECT b",
        "SELECT a -- \u{2029}UNION SELECT b",
    ];
    for sql in cases {
        check("control characters", EVERY, &[Refused(sql, QueryRefusal::ControlCharacter)]);
    }
}

#[test]
fn line_comments() {
    check(
        "`--` ends at a line feed",
        EVERY,
        &[
            Same("SELECT a -- why\nFROM t", "SELECT a FROM t"),
            Same("SELECT a -- why\r\nFROM t", "SELECT a FROM t"),
            Differ("SELECT a -- FROM t\nFROM s", "SELECT a FROM t"),
            // Text after `--` is a comment even without a space.
            Same("SELECT a--x\nFROM t", "SELECT a FROM t"),
            Same("SELECT 1 --", "SELECT 1"),
        ],
    );
    check(
        "a line comment ending in a backslash continues in Spark: refused everywhere",
        EVERY,
        &[
            Refused("SELECT a FROM t -- note \\\nUNION SELECT secret FROM s", QueryRefusal::CommentContinuation),
            Refused("SELECT a FROM t -- note \\\r\nUNION SELECT secret FROM s", QueryRefusal::CommentContinuation),
            Same("SELECT a FROM t -- note \\ more\n", "SELECT a FROM t"),
        ],
    );
    check(
        "`#` starts a line comment in BigQuery",
        &[Bigquery, CartoDw],
        &[Same("SELECT a # why\nFROM t", "SELECT a FROM t"), Same("SELECT a #\nFROM t", "SELECT a FROM t")],
    );
    check(
        "`#` may start a comment in Snowflake and Databricks: refused",
        &[Snowflake, Databricks],
        &[Refused("SELECT a # why\nFROM t", QueryRefusal::UncertainComment("#"))],
    );
    check(
        "`#` is an operator in PostgreSQL and starts temporary table names in Redshift",
        &[Postgres, Redshift],
        &[Differ("SELECT a # b FROM t", "SELECT a FROM t"), Same("SELECT * FROM #tmp", "select * from #TMP")],
    );
    check(
        "`//` may start a comment in Snowflake (no reference of its own says so): refused everywhere",
        EVERY,
        &[
            Refused("SELECT a // why\nFROM t", QueryRefusal::UncertainComment("//")),
            Refused("SELECT a FROM @stage/a//b", QueryRefusal::UncertainComment("//")),
        ],
    );
}

#[test]
fn block_comments() {
    check(
        "`/* */` separates tokens and never nests",
        EVERY,
        &[
            Same("SELECT a/* c */FROM t", "SELECT a FROM t"),
            Same("SELECT a/**/FROM t", "SELECT a FROM t"),
            Same("SELECT /* -- not a line comment */ a FROM t", "SELECT a FROM t"),
            Refused("SELECT a /* outer /* inner */ UNION SELECT secret FROM s */ FROM t", QueryRefusal::NestedComment),
            Refused("SELECT a /* never closed", QueryRefusal::UnterminatedComment),
            Refused("SELECT a /*", QueryRefusal::UnterminatedComment),
        ],
    );
    check(
        "Spark reads `/*+ … */` as a hint; Snowflake and Redshift do not say: refused",
        &[Databricks, Snowflake, Redshift],
        &[Refused("SELECT /*+ BROADCAST(t) */ a FROM t", QueryRefusal::Hint)],
    );
    check(
        "BigQuery and PostgreSQL read `/*+ … */` as a comment",
        &[Bigquery, Postgres],
        &[Same("SELECT /*+ BROADCAST(t) */ a FROM t", "SELECT a FROM t")],
    );
}

#[test]
fn spacing_matters_only_where_a_warehouse_could_glue_tokens() {
    check(
        "separation",
        EVERY,
        &[
            // Around plain operators next to operands, spacing is layout.
            Same("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x=1"),
            Same("SELECT a FROM t WHERE x <> 'a' AND y >= b", "SELECT a FROM t WHERE x<>'a' AND y>=b"),
            Same("SELECT * FROM t", "SELECT*FROM t"),
            // A run of operator characters is compared as written, so how a
            // warehouse splits `<-`, `<=` or `1e+5` never matters.
            Differ("SELECT a FROM t WHERE x < -1", "SELECT a FROM t WHERE x <-1"),
            Differ("SELECT a FROM t WHERE x <= 1", "SELECT a FROM t WHERE x < = 1"),
            Differ("SELECT 1e+5", "SELECT 1e + 5"),
            Differ("SELECT x-1", "SELECT x - 1"),
            Differ("SELECT t.a FROM t", "SELECT t . a FROM t"),
            Differ("SELECT a FROM t WHERE b = : c", "SELECT a FROM t WHERE b = :c"),
            Same("SELECT f(a, b) FROM t", "SELECT f ( a , b ) FROM t"),
            Same("SELECT count(*) FROM t", "SELECT count( * ) FROM t"),
            Differ("SELECT a FROM t", "SELECT aFROM t"),
        ],
    );
}

#[test]
fn strings_are_compared_as_written() {
    check(
        "strings",
        EVERY,
        &[
            Differ("SELECT 'a'", "SELECT 'A'"),
            Differ("SELECT 'a b'", "SELECT 'a  b'"),
            // Comment markers inside a string are text.
            Differ("SELECT '-- x' FROM t", "SELECT '' FROM t"),
            Differ("SELECT '/* x */' FROM t", "SELECT '' FROM t"),
            Refused("SELECT 'never closed", QueryRefusal::UnterminatedQuote),
        ],
    );
    check(
        "a doubled quote continues the text (an escaped quote, or one literal ending where the next starts)",
        &[Snowflake, Redshift, Postgres, Databricks],
        &[Differ("SELECT 'it''s' FROM t", "SELECT 'it' 's' FROM t")],
    );
    check(
        "BigQuery rejects a doubled quote, which may open a triple-quoted string there: refused",
        &[Bigquery, CartoDw],
        &[
            Refused("SELECT 'it''s' FROM t", QueryRefusal::DoubledQuote),
            Refused("SELECT 'a'''' x ' y'''", QueryRefusal::DoubledQuote),
            Refused("SELECT `a``b` FROM t", QueryRefusal::DoubledQuote),
            Differ("SELECT '' FROM t", "SELECT ' ' FROM t"),
        ],
    );
    check(
        "a backslash escapes in BigQuery, Snowflake and Spark strings",
        &[Bigquery, Snowflake, Databricks],
        &[
            Differ("SELECT 'it\\'s' FROM t", "SELECT 'it\\'s ' FROM t"),
            // The string ends after `s -- x`, so what follows is still read.
            Differ("SELECT 'a\\' -- x' FROM t", "SELECT 'a\\' -- x' FROM s"),
        ],
    );
    check(
        "a backslash before a quote where it may be literal: refused",
        &[Redshift, Postgres],
        &[
            Refused("SELECT 'a\\' OR 1=1 --' FROM t", QueryRefusal::AmbiguousBackslash),
            Refused("SELECT 'a\\\\\\'' FROM t", QueryRefusal::AmbiguousBackslash),
            // Away from a quote, both readings end the string in the same place.
            Differ("SELECT 'C:\\temp' FROM t", "SELECT 'C:\\\\temp' FROM t"),
            Differ("SELECT 'a\\\\' FROM t", "SELECT 'a' FROM t"),
        ],
    );
    check(
        "PostgreSQL E'…' strings always escape",
        &[Postgres],
        &[
            Differ("SELECT E'it\\'s' FROM t", "SELECT E'it''s' FROM t"),
            Same("SELECT E'a'", "select e'a'"),
            Differ("SELECT E'a'", "SELECT E 'a'"),
        ],
    );
    check(
        "Unicode escape strings depend on standard_conforming_strings: refused",
        &[Postgres, Redshift],
        &[
            Refused("SELECT U&'d\\0061t\\+000061'", QueryRefusal::UnicodeEscapeString),
            Refused("SELECT u&\"x\"", QueryRefusal::UnicodeEscapeString),
        ],
    );
}

#[test]
fn bigquery_strings() {
    check(
        "BigQuery: double quotes make strings, triple quotes and raw strings",
        &[Bigquery, CartoDw],
        &[
            Differ("SELECT \"a\"", "SELECT 'a'"),
            Differ("SELECT \"it\\\"s\" FROM t", "SELECT \"it\\\"s\" FROM s"),
            Differ("SELECT '''a ' -- b''' FROM t", "SELECT '''a ' -- b''' FROM s"),
            Differ("SELECT \"\"\"a\"\"\"", "SELECT \"a\""),
            Refused("SELECT '''never closed''", QueryRefusal::UnterminatedQuote),
            Differ("SELECT r'\\d+' FROM t", "SELECT r'\\d' FROM t"),
            Differ("SELECT b'\\x00'", "SELECT b'\\x01'"),
            // Whether `\'` closes a raw string differs between warehouses.
            Refused("SELECT r'a\\' -- ' FROM t", QueryRefusal::AmbiguousBackslash),
            Refused("SELECT rb'a\\''", QueryRefusal::AmbiguousBackslash),
            Refused("SELECT BR'a\\''", QueryRefusal::AmbiguousBackslash),
            Refused("SELECT r'''a\\''''", QueryRefusal::AmbiguousBackslash),
        ],
    );
}

#[test]
fn quoted_identifiers() {
    check(
        "BigQuery and Databricks quote identifiers with backticks",
        &[Bigquery, Databricks],
        &[
            Differ("SELECT `a b` FROM t", "SELECT `a  b` FROM t"),
            Differ("SELECT `A` FROM t", "SELECT `a` FROM t"),
            Refused("SELECT `a\\` -- ` FROM t", QueryRefusal::AmbiguousBackslash),
            Refused("SELECT `never", QueryRefusal::UnterminatedQuote),
        ],
    );
    check(
        "PostgreSQL, Redshift and Snowflake quote identifiers with double quotes",
        &[Postgres, Redshift, Snowflake],
        &[
            Differ("SELECT \"A\" FROM t", "SELECT a FROM t"),
            Differ("SELECT \"a\"\"b\" FROM t", "SELECT \"a\" \"b\" FROM t"),
            Refused("SELECT \"a\\\" -- \" FROM t", QueryRefusal::AmbiguousBackslash),
        ],
    );
    check(
        "Databricks: double quotes are strings, or identifiers under ANSI settings",
        &[Databricks],
        &[
            Refused("SELECT \"a\\\" -- \" FROM t", QueryRefusal::AmbiguousBackslash),
            Differ("SELECT \"a\"", "SELECT 'a'"),
        ],
    );
    check(
        "backticks are not quotes in Snowflake and Redshift: refused",
        &[Snowflake, Redshift],
        &[Refused("SELECT `a` FROM t", QueryRefusal::UnexpectedCharacter('`'))],
    );
    check("backticks are operator characters in PostgreSQL", &[Postgres], &[Differ("SELECT a ` b", "SELECT a b")]);
}

#[test]
fn dollar_quoting_and_parameters() {
    check(
        "PostgreSQL: dollar quotes and $n parameters",
        &[Postgres],
        &[
            Differ("SELECT $$a -- b$$ FROM t", "SELECT $$a -- b$$ FROM s"),
            Differ("SELECT $x$ $$ -- $x$ FROM t", "SELECT $x$ $$ -- $x$ FROM s"),
            Differ("SELECT $x$a$x$", "SELECT $X$a$X$"),
            Refused("SELECT $$never closed", QueryRefusal::UnterminatedQuote),
            Refused("SELECT $x$a$y$", QueryRefusal::UnterminatedQuote),
            Differ("SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b = $2"),
            Refused("SELECT a FROM t WHERE b = $1x", QueryRefusal::DollarQuote),
            Refused("SELECT $ FROM t", QueryRefusal::DollarQuote),
            // `$` inside a word is part of the word; `$$` inside one is refused
            // everywhere, since Snowflake may start a string there.
            Same("SELECT a$b FROM t", "SELECT A$B FROM t"),
            // PostgreSQL ends a number before `$`: refused rather than read
            // either way.
            Refused("SELECT 1$x$ -- $x$ FROM t", QueryRefusal::DollarQuote),
            Refused("SELECT a$$b FROM t", QueryRefusal::DollarQuote),
        ],
    );
    check(
        "Redshift: $n parameters; dollar quoting is refused",
        &[Redshift],
        &[
            Differ("SELECT a FROM t WHERE b = $1", "SELECT a FROM t WHERE b = $2"),
            Refused("SELECT $$a$$", QueryRefusal::DollarQuote),
            Refused("SELECT $x$a$x$", QueryRefusal::DollarQuote),
        ],
    );
    check(
        "Snowflake: $$ strings, $1 columns and $name variables",
        &[Snowflake],
        &[
            Differ("SELECT $$a -- b$$ FROM t", "SELECT $$a -- b$$ FROM s"),
            Refused("SELECT $$never", QueryRefusal::UnterminatedQuote),
            Differ("SELECT $1 FROM t", "SELECT $2 FROM t"),
            Differ("SELECT $v FROM t", "SELECT $V FROM t"),
            Refused("SELECT a$$b FROM t", QueryRefusal::DollarQuote),
        ],
    );
    check(
        "BigQuery and Databricks: `$` is refused",
        &[Bigquery, Databricks],
        &[Refused("SELECT $1 FROM t", QueryRefusal::DollarQuote), Refused("SELECT $$a$$", QueryRefusal::DollarQuote)],
    );
    check(
        "Databricks substitutes ${var} everywhere, strings included: refused",
        &[Databricks],
        &[
            Refused("SELECT * FROM ${table}", QueryRefusal::VariableSubstitution),
            Refused("SELECT '${x}' FROM t", QueryRefusal::VariableSubstitution),
        ],
    );
    check(
        "`?` placeholders",
        &[Bigquery, Snowflake, Databricks],
        &[Same("SELECT a FROM t WHERE b = ?", "SELECT a FROM t WHERE b = ? "), Differ("SELECT ?", "SELECT ??")],
    );
    check(
        "BigQuery @name parameters and @@name variables are one token, compared exactly",
        &[Bigquery, CartoDw],
        &[
            Differ("SELECT a FROM t WHERE b = @Id", "SELECT a FROM t WHERE b = @id"),
            Same("SELECT a FROM t WHERE b = @id", "SELECT a FROM t WHERE b=@id"),
            Differ("SELECT a FROM t WHERE b = @id", "SELECT a FROM t WHERE b = @ id"),
            Differ("SELECT @select", "SELECT @SELECT"),
            Same("SELECT @@project_id", "select @@project_id"),
        ],
    );
    check(
        "elsewhere `@` is an operator character: `=@` is not `= @`",
        &[Postgres, Redshift, Snowflake, Databricks],
        &[Differ("SELECT a FROM t WHERE b = @c", "SELECT a FROM t WHERE b=@c")],
    );
    check(
        ":name parameters compare exactly",
        &[Snowflake, Databricks],
        &[Differ("SELECT a FROM t WHERE b = :Id", "SELECT a FROM t WHERE b = :id")],
    );
}

#[test]
fn letter_case_follows_each_warehouse() {
    check(
        "PostgreSQL and Redshift fold every unquoted word to lower case",
        &[Postgres, Redshift],
        &[
            Same("SELECT Name FROM Orders", "select name from orders"),
            Differ("SELECT \"Name\" FROM t", "SELECT name FROM t"),
            Differ("SELECT 'Name' FROM t", "SELECT 'name' FROM t"),
        ],
    );
    check(
        "PostgreSQL folds ASCII letters only",
        &[Postgres],
        &[Same("SELECT café FROM t", "SELECT CAFé FROM t"), Differ("SELECT café FROM t", "SELECT cafÉ FROM t")],
    );
    check(
        "Snowflake folds standalone words to upper case",
        &[Snowflake],
        &[
            Same("select name from orders limit 10", "SELECT NAME FROM ORDERS LIMIT 10"),
            Same("select a from t where x=1", "SELECT A FROM T WHERE X = 1"),
            Same("SELECT a FROM db.sch.t", "SELECT a FROM db.sch.t"),
            // Element names of a semi-structured path are case-sensitive.
            Differ("SELECT v:Name FROM t", "SELECT v:name FROM t"),
            Differ("SELECT v : Name FROM t", "SELECT v : name FROM t"),
            Differ("SELECT v:a.Name FROM t", "SELECT v:a.name FROM t"),
            // So are stage paths.
            Differ("SELECT $1 FROM @stage/Data", "SELECT $1 FROM @stage/data"),
        ],
    );
    check(
        "BigQuery folds reserved keywords only",
        &[Bigquery, CartoDw],
        &[
            Same(
                "select a from t where b is not null order by a desc limit 5",
                "SELECT a FROM t WHERE b IS NOT NULL ORDER BY a DESC LIMIT 5",
            ),
            // Table names are case-sensitive in BigQuery.
            Differ("SELECT a FROM Orders", "SELECT a FROM orders"),
            Differ("SELECT A FROM t", "SELECT a FROM t"),
            // After a dot a reserved word is a name.
            Differ("SELECT s.Select FROM t", "SELECT s.SELECT FROM t"),
            Differ("SELECT a FROM p.d.From", "SELECT a FROM p.d.from"),
            Same("select count(*) from t", "SELECT count(*) FROM t"),
            Same("select*from t", "SELECT * FROM t"),
            Differ("select COUNT(*) from t", "SELECT count(*) FROM t"),
        ],
    );
    check(
        "Databricks folds nothing",
        &[Databricks],
        &[Differ("select a from t", "SELECT a FROM t"), Same("SELECT a FROM t", "SELECT a  FROM t")],
    );
}

#[test]
fn characters_outside_quotes() {
    check(
        "non-ASCII outside quotes is a name character only in PostgreSQL and Redshift",
        &[Bigquery, Snowflake, Databricks],
        &[Refused("SELECT café FROM t", QueryRefusal::UnexpectedCharacter('é'))],
    );
    check(
        "a backslash outside quotes is refused",
        EVERY,
        &[Refused("SELECT a \\ b", QueryRefusal::UnexpectedCharacter('\\'))],
    );
}

#[test]
fn statements_and_terminators() {
    check(
        "one trailing `;` does not matter",
        EVERY,
        &[Same("SELECT a FROM t;", "SELECT a FROM t"), Same("SELECT a FROM t ; -- done", "SELECT a FROM t")],
    );
    check(
        "nothing but comments",
        EVERY,
        &[
            Refused("-- only a comment", QueryRefusal::Empty),
            Refused(" ; ", QueryRefusal::Empty),
            Refused("", QueryRefusal::Empty),
        ],
    );
}

#[test]
fn size_and_nesting_are_capped() {
    let many = format!("SELECT {}1", "1+".repeat(MAX_QUERY_TOKENS / 2));
    let deep = format!("SELECT {}1{}", "(".repeat(MAX_QUERY_NESTING + 1), ")".repeat(MAX_QUERY_NESTING + 1));
    let brackets = format!("SELECT a{}", "[".repeat(MAX_QUERY_NESTING + 1));
    let at_cap = format!("SELECT {}1{}", "(".repeat(MAX_QUERY_NESTING), ")".repeat(MAX_QUERY_NESTING));
    for provider in EVERY {
        assert_eq!(key(&many, *provider).err(), Some(QueryRefusal::TooManyTokens), "{provider}");
        assert_eq!(key(&deep, *provider).err(), Some(QueryRefusal::TooDeep), "{provider}");
        assert_eq!(key(&brackets, *provider).err(), Some(QueryRefusal::TooDeep), "{provider}");
        assert!(key(&at_cap, *provider).is_ok(), "{provider}");
    }
}
