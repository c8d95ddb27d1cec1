//! Bearer tokens created through the server's API: stored as the SHA-256 of the token, read back
//! when the server starts. What a token may do is not this crate's business.

use crate::error::StoreError;
use crate::records::{TokenRecord, TokenScope};
use crate::schema::tokens;
use crate::store::Store;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use torc_core::ids::{Timestamp, WorkflowId};

#[derive(Insertable)]
#[diesel(table_name = tokens, treat_none_as_default_value = false)]
struct NewToken<'a> {
    name: &'a str,
    user: &'a str,
    sha256: &'a str,
    scope_kind: Option<&'static str>,
    scope_value: Option<String>,
    created_at: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = tokens)]
struct TokenRow {
    name: String,
    user: String,
    sha256: String,
    scope_kind: Option<String>,
    scope_value: Option<String>,
    created_at: i64,
}

fn scope_columns(scope: Option<&TokenScope>) -> (Option<&'static str>, Option<String>) {
    match scope {
        None => (None, None),
        Some(TokenScope::Workflow(id)) => (Some("workflow"), Some(id.0.to_string())),
        Some(TokenScope::User(u)) => (Some("user"), Some(u.clone())),
        Some(TokenScope::Group(g)) => (Some("group"), Some(g.clone())),
    }
}

impl TokenRow {
    fn into_record(self) -> Result<TokenRecord, StoreError> {
        let corrupt = |detail: String| StoreError::corrupt("token scope", detail);
        let scope = match (self.scope_kind.as_deref(), self.scope_value) {
            (None, None) => None,
            (Some("workflow"), Some(v)) => Some(TokenScope::Workflow(WorkflowId(
                v.parse()
                    .map_err(|_| corrupt(format!("token {:?}: workflow {v:?}", self.name)))?,
            ))),
            (Some("user"), Some(v)) => Some(TokenScope::User(v)),
            (Some("group"), Some(v)) => Some(TokenScope::Group(v)),
            (kind, value) => {
                return Err(corrupt(format!(
                    "token {:?}: kind {kind:?} with value {value:?}",
                    self.name
                )))
            }
        };
        Ok(TokenRecord {
            name: self.name,
            user: self.user,
            sha256: self.sha256,
            scope,
            created_at: Timestamp(self.created_at),
        })
    }
}

impl Store {
    /// Records a token (its hash, never the token). A name or hash already stored is refused
    /// with [`StoreError::Duplicate`].
    pub fn insert_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let (scope_kind, scope_value) = scope_columns(token.scope.as_ref());
        let row = NewToken {
            name: &token.name,
            user: &token.user,
            sha256: &token.sha256,
            scope_kind,
            scope_value,
            created_at: token.created_at.0,
        };
        let mut conn = self.conn()?;
        conn.write_transaction(|conn| {
            diesel::insert_into(tokens::table)
                .values(&row)
                .execute(conn)
                .map_err(|e| match e {
                    DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                        StoreError::Duplicate {
                            what: "token",
                            name: token.name.clone(),
                        }
                    }
                    e => e.into(),
                })?;
            Ok(())
        })
    }

    /// Deletes the token named `name`; returns it (`None`: there is none of that name).
    pub fn delete_token(&self, name: &str) -> Result<Option<TokenRecord>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn.write_transaction(|conn| {
            let row = tokens::table
                .filter(tokens::name.eq(name))
                .select(TokenRow::as_select())
                .first(conn)
                .optional()?;
            if row.is_some() {
                diesel::delete(tokens::table.filter(tokens::name.eq(name))).execute(conn)?;
            }
            Ok(row)
        })?;
        row.map(TokenRow::into_record).transpose()
    }

    /// Every stored token, oldest first.
    pub fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self.conn()?.read_transaction(|conn| {
            Ok(tokens::table
                .order(tokens::id)
                .select(TokenRow::as_select())
                .load(conn)?)
        })?;
        rows.into_iter().map(TokenRow::into_record).collect()
    }
}
