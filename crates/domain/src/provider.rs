//! Data warehouse providers, and the naming and SQL rules each one brings.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use sqlparser::dialect::{
    BigQueryDialect, DatabricksDialect, Dialect, PostgreSqlDialect, RedshiftSqlDialect, SnowflakeDialect,
};

/// The kind of data warehouse behind a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Google BigQuery.
    Bigquery,
    /// CARTO's own data warehouse, which is BigQuery underneath.
    CartoDw,
    /// Databricks.
    Databricks,
    /// PostgreSQL.
    Postgres,
    /// Amazon Redshift.
    Redshift,
    /// Snowflake.
    Snowflake,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 6] = [
        Provider::Bigquery,
        Provider::CartoDw,
        Provider::Databricks,
        Provider::Postgres,
        Provider::Redshift,
        Provider::Snowflake,
    ];

    /// The provider's name on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Bigquery => "bigquery",
            Provider::CartoDw => "carto_dw",
            Provider::Databricks => "databricks",
            Provider::Postgres => "postgres",
            Provider::Redshift => "redshift",
            Provider::Snowflake => "snowflake",
        }
    }

    /// Folds an unquoted identifier the way the warehouse resolves it:
    /// PostgreSQL and Redshift to lower case, Snowflake to upper case. BigQuery
    /// (and so `carto_dw`) and Databricks compare names exactly: folding there
    /// could make a grant for one table match another.
    ///
    /// Unquoted identifiers are ASCII by the grammar of table names, so ASCII
    /// folding is the complete rule.
    #[must_use]
    pub fn fold_unquoted(self, identifier: &str) -> Cow<'_, str> {
        match self {
            Provider::Postgres | Provider::Redshift if identifier.bytes().any(|b| b.is_ascii_uppercase()) => {
                Cow::Owned(identifier.to_ascii_lowercase())
            }
            Provider::Snowflake if identifier.bytes().any(|b| b.is_ascii_lowercase()) => {
                Cow::Owned(identifier.to_ascii_uppercase())
            }
            _ => Cow::Borrowed(identifier),
        }
    }

    /// Whether the warehouse reads a whole name in one pair of backticks,
    /// `` `p.d.t` ``, as a dotted path. BigQuery does; Databricks reads one
    /// name with dots in it, and the others do not quote with backticks.
    #[must_use]
    pub const fn splits_backticked_names(self) -> bool {
        matches!(self, Provider::Bigquery | Provider::CartoDw)
    }

    /// The SQL dialect whose parser decides the `query_not_parsed` warning.
    #[must_use]
    pub fn dialect(self) -> &'static dyn Dialect {
        match self {
            Provider::Bigquery | Provider::CartoDw => &BigQueryDialect {},
            Provider::Databricks => &DatabricksDialect {},
            Provider::Postgres => &PostgreSqlDialect {},
            Provider::Redshift => &RedshiftSqlDialect {},
            Provider::Snowflake => &SnowflakeDialect {},
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a known provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider; expected one of bigquery, snowflake, redshift, postgres, databricks, carto_dw")]
pub struct UnknownProvider;

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name).ok_or(UnknownProvider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(provider.as_str().parse::<Provider>(), Ok(provider));
        }
        assert_eq!("BigQuery".parse::<Provider>(), Err(UnknownProvider));
        assert_eq!("mysql".parse::<Provider>(), Err(UnknownProvider));
    }

    #[test]
    fn unquoted_folding_per_provider() {
        let cases = [
            (Provider::Postgres, "My_Table", "my_table"),
            (Provider::Redshift, "My_Table", "my_table"),
            (Provider::Snowflake, "My_Table", "MY_TABLE"),
            (Provider::Bigquery, "My_Table", "My_Table"),
            (Provider::CartoDw, "My_Table", "My_Table"),
            (Provider::Databricks, "My_Table", "My_Table"),
        ];
        for (provider, input, folded) in cases {
            assert_eq!(provider.fold_unquoted(input), folded, "{provider}");
        }
    }
}
