//! Named statement parameters for PostgreSQL, as SQLite's are: the SQL names each value
//! (`:status`, `:writer_id`), and a call binds values by name. PostgreSQL itself knows only
//! `$1, $2, ...`; [`Named::new`] turns the names into those positions once (the statements
//! are built once, in `LazyLock`s) and [`Named::bind`] puts the values in their places.
//!
//! A slip cannot pass unnoticed: a name in the SQL that the call gives no value for, or a
//! value whose name the SQL never uses (a typo), makes `bind` fail, so every test that runs
//! the statement fails, as rusqlite fails a named parameter it cannot place.

use tokio_postgres::types::ToSql;

use super::PostgresStore;
use crate::StoreError;

/// A statement parameter's value.
pub(crate) type Param<'a> = &'a (dyn ToSql + Sync);

/// A statement whose `:name` parameters became `$n`, and the names in position order.
#[derive(Debug)]
pub(crate) struct Named {
    sql: String,
    names: Vec<String>,
}

impl Named {
    /// Reads `sql`'s `:name` parameters (a name is `[a-z_][a-z0-9_]*`; a name used twice is
    /// one parameter). A `::` cast and anything inside a `'...'` literal are left as they
    /// are.
    pub(crate) fn new(sql: &str) -> Self {
        let mut out = String::with_capacity(sql.len());
        let mut names: Vec<String> = Vec::new();
        let mut chars = sql.chars().peekable();
        let mut quoted = false;
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                ':' if !quoted && chars.peek() == Some(&':') => {
                    out.push_str("::");
                    chars.next();
                }
                ':' if !quoted
                    && chars
                        .peek()
                        .is_some_and(|n| n.is_ascii_lowercase() || *n == '_') =>
                {
                    let mut name = String::new();
                    while let Some(&n) = chars.peek() {
                        if n.is_ascii_lowercase() || n.is_ascii_digit() || n == '_' {
                            name.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    let position = match names.iter().position(|known| *known == name) {
                        Some(i) => i + 1,
                        None => {
                            names.push(name);
                            names.len()
                        }
                    };
                    out.push('$');
                    out.push_str(&position.to_string());
                }
                _ => out.push(c),
            }
        }
        Self { sql: out, names }
    }

    /// The SQL with `$n` parameters, for `prepare_cached`.
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    /// The values in position order, each taken by its name from `values`. Fails when a
    /// name of the SQL has no value or a value's name is not in the SQL: a slip in this
    /// crate, reported instead of binding a value in the wrong place.
    pub(crate) fn bind<'a>(
        &self,
        values: &[(&str, Param<'a>)],
    ) -> Result<Vec<Param<'a>>, StoreError> {
        if let Some((unused, _)) = values
            .iter()
            .find(|(name, _)| !self.names.iter().any(|known| known == name))
        {
            return Err(self.slip(format!("a value named :{unused}, which it does not use")));
        }
        self.names
            .iter()
            .map(|name| {
                values
                    .iter()
                    .find(|(given, _)| *given == name)
                    .map(|(_, value)| *value)
                    .ok_or_else(|| self.slip(format!("no value for :{name}")))
            })
            .collect()
    }

    fn slip(&self, what: String) -> StoreError {
        StoreError::Backend {
            backend: "postgres",
            message: format!(
                "a statement of colloquy's PostgreSQL backend was given {what} (a bug in colloquy-storage; please report it with this message): {}",
                self.sql
            ),
        }
    }
}

/// Statements run with their values bound by name.
impl PostgresStore {
    /// Prepares `statement` on `client` (cached per connection) and binds `values` by
    /// name ([`Named::bind`]).
    pub(crate) async fn prepare_named<'v>(
        &self,
        client: &deadpool_postgres::Object,
        statement: &Named,
        values: &[(&str, Param<'v>)],
    ) -> Result<(tokio_postgres::Statement, Vec<Param<'v>>), StoreError> {
        let params = statement.bind(values)?;
        let prepared = client
            .prepare_cached(statement.sql())
            .await
            .map_err(self.err())?;
        Ok((prepared, params))
    }

    /// Runs `statement` with `values` bound by name; its rows.
    pub(crate) async fn query_named(
        &self,
        client: &deadpool_postgres::Object,
        statement: &Named,
        values: &[(&str, Param<'_>)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let (prepared, params) = self.prepare_named(client, statement, values).await?;
        client.query(&prepared, &params).await.map_err(self.err())
    }

    /// Runs `statement` with `values` bound by name; its one row.
    pub(crate) async fn query_one_named(
        &self,
        client: &deadpool_postgres::Object,
        statement: &Named,
        values: &[(&str, Param<'_>)],
    ) -> Result<tokio_postgres::Row, StoreError> {
        let (prepared, params) = self.prepare_named(client, statement, values).await?;
        client
            .query_one(&prepared, &params)
            .await
            .map_err(self.err())
    }

    /// Runs `statement` with `values` bound by name; its row, if any.
    pub(crate) async fn query_opt_named(
        &self,
        client: &deadpool_postgres::Object,
        statement: &Named,
        values: &[(&str, Param<'_>)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let (prepared, params) = self.prepare_named(client, statement, values).await?;
        client
            .query_opt(&prepared, &params)
            .await
            .map_err(self.err())
    }

    /// Runs `statement` with `values` bound by name; how many rows it changed.
    pub(crate) async fn execute_named(
        &self,
        client: &deadpool_postgres::Object,
        statement: &Named,
        values: &[(&str, Param<'_>)],
    ) -> Result<u64, StoreError> {
        let (prepared, params) = self.prepare_named(client, statement, values).await?;
        client.execute(&prepared, &params).await.map_err(self.err())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_become_positions_and_casts_and_literals_stay() {
        let named = Named::new(
            "UPDATE t SET a = :a, b = :b::jsonb WHERE id = :id AND a = :a::bigint - 1 \
             AND s NOT IN ('x:y', 'done') AND n = :n_2",
        );
        assert_eq!(
            named.sql(),
            "UPDATE t SET a = $1, b = $2::jsonb WHERE id = $3 AND a = $1::bigint - 1 \
             AND s NOT IN ('x:y', 'done') AND n = $4"
        );
        assert_eq!(named.names, ["a", "b", "id", "n_2"]);
    }

    #[test]
    fn values_go_to_their_names_in_any_order() {
        let named = Named::new("SELECT :b::bigint, :a::text, :b::bigint");
        let (a, b) = ("x".to_owned(), 7i64);
        let bound = named.bind(&[("a", &a), ("b", &b)]).unwrap();
        assert_eq!(bound.len(), 2);
        assert_eq!(format!("{:?}", bound[0]), format!("{:?}", 7i64));
        assert_eq!(format!("{:?}", bound[1]), format!("{:?}", "x"));
    }

    #[test]
    fn a_missing_or_unused_name_is_a_reported_slip() {
        let named = Named::new("SELECT :a::text, :b::text");
        let a = "x".to_owned();
        let missing = named.bind(&[("a", &a)]).unwrap_err();
        assert!(missing.to_string().contains("no value for :b"), "{missing}");
        let typo = named.bind(&[("a", &a), ("b", &a), ("c", &a)]).unwrap_err();
        assert!(typo.to_string().contains("named :c"), "{typo}");
    }
}
