//! Session settings: SET, SET LOCAL, RESET and SHOW, as PostgreSQL has them.
//!
//! Clients send SETs at connect time (JDBC: extra_float_digits,
//! application_name; ORMs: search_path, TimeZone) and read some back with
//! SHOW. Every parameter here is accepted and remembered per session; those
//! that change behaviour are read by the engine or the front end
//! (`statement_timeout`). A name PostgreSQL does not know is refused with
//! 42704, except custom names with a dot (`myapp.tenant`), which PostgreSQL
//! also accepts. SET LOCAL lasts until the end of the transaction block.

use crate::error::{SqlError, sqlstate};
use datafusion::sql::sqlparser::ast::{Expr, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// (name, default) of the parameters sessions can set and show.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_table_access_method", "heap"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("is_superuser", "on"),
    ("lock_timeout", "0"),
    ("max_identifier_length", "63"),
    ("max_index_keys", "32"),
    // psql's \password asks for it to hash the new password on the client.
    ("password_encryption", "scram-sha-256"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.6"),
    ("server_version_num", "160006"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("transaction_read_only", "off"),
];

/// Every parameter with its default value and whether only the server sets
/// it, for `pg_catalog.pg_settings`.
pub fn defaults() -> impl Iterator<Item = (&'static str, &'static str, bool)> {
    DEFAULTS.iter().map(|&(name, value)| (name, value, READ_ONLY.contains(&name)))
}

/// Parameters only the server sets.
const READ_ONLY: &[&str] = &[
    "integer_datetimes",
    "is_superuser",
    "max_identifier_length",
    "max_index_keys",
    "server_encoding",
    "server_version",
    "server_version_num",
];

/// The parameter behind SHOW's multi-word forms (SQL standard spellings);
/// any other name is returned as given.
pub fn show_name(words: &str) -> String {
    match words.to_ascii_lowercase().as_str() {
        "transaction isolation level" => "transaction_isolation".to_string(),
        "time zone" => "timezone".to_string(),
        _ => words.to_string(),
    }
}

/// One session's settings.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// Values set with SET (session lifetime).
    session: BTreeMap<String, String>,
    /// Values set with SET LOCAL (until the block ends).
    local: BTreeMap<String, String>,
    /// Server-set values of this session (see [`Settings::set_reported`]).
    reported: BTreeMap<String, String>,
}

fn canonical(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn known(name: &str) -> bool {
    DEFAULTS.iter().any(|(known, _)| *known == name)
}

fn unrecognized(name: &str) -> SqlError {
    SqlError::new(sqlstate::UNDEFINED_OBJECT, format!("unrecognized configuration parameter \"{name}\""))
}

impl Settings {
    /// The current value of `name`.
    pub fn get(&self, name: &str) -> Result<String, SqlError> {
        let name = canonical(name);
        if let Some(value) =
            self.local.get(&name).or_else(|| self.session.get(&name)).or_else(|| self.reported.get(&name))
        {
            return Ok(value.clone());
        }
        DEFAULTS
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value.to_string())
            .ok_or_else(|| unrecognized(&name))
    }

    /// Sets `name` for the session, or until the block ends when `local`.
    pub fn set(&mut self, name: &str, value: String, local: bool) -> Result<(), SqlError> {
        let name = canonical(name);
        if !known(&name) && !name.contains('.') {
            return Err(unrecognized(&name));
        }
        if READ_ONLY.contains(&name.as_str()) {
            return Err(SqlError::new(
                sqlstate::CANT_CHANGE_RUNTIME_PARAM,
                format!("parameter \"{name}\" cannot be changed"),
            ));
        }
        let value = match name.as_str() {
            "statement_timeout" | "lock_timeout" => {
                parse_duration(&name, &value)?;
                value
            }
            "default_transaction_isolation" => {
                crate::isolation::IsolationLevel::from_setting(&name, &value)?.name().to_string()
            }
            "default_transaction_read_only" => if parse_bool(&name, &value)? { "on" } else { "off" }.to_string(),
            "timezone" => match crate::datetime::time_zone(&value) {
                Ok(_) => value,
                Err(_) => {
                    return Err(SqlError::new(
                        sqlstate::INVALID_PARAMETER_VALUE,
                        format!("invalid value for parameter \"TimeZone\": \"{value}\""),
                    ));
                }
            },
            _ => value,
        };
        let target = if local { &mut self.local } else { &mut self.session };
        target.insert(name, value);
        Ok(())
    }

    /// Sets a parameter only the server sets (`is_superuser` at login); it
    /// lasts for the session and RESET ALL leaves it.
    pub fn set_reported(&mut self, name: &str, value: &str) {
        let name = canonical(name);
        debug_assert!(READ_ONLY.contains(&name.as_str()), "{name} is not a server-set parameter");
        self.reported.insert(name, value.to_string());
    }

    /// RESET one parameter (None: RESET ALL).
    pub fn reset(&mut self, name: Option<&str>) -> Result<(), SqlError> {
        match name {
            None => {
                self.session.clear();
                self.local.clear();
            }
            Some(name) => {
                let name = canonical(name);
                if !known(&name) && !name.contains('.') {
                    return Err(unrecognized(&name));
                }
                self.session.remove(&name);
                self.local.remove(&name);
            }
        }
        Ok(())
    }

    /// Ends a transaction block: SET LOCAL values lapse. Returns whether any did.
    pub fn end_block(&mut self) -> bool {
        let lapsed = !self.local.is_empty();
        self.local.clear();
        lapsed
    }

    /// Every parameter with its current value, for SHOW ALL.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut names: Vec<String> = DEFAULTS.iter().map(|(name, _)| name.to_string()).collect();
        names.extend(self.session.keys().chain(self.local.keys()).filter(|n| !known(n)).cloned());
        names.sort();
        names.dedup();
        names.into_iter().filter_map(|name| self.get(&name).ok().map(|value| (name, value))).collect()
    }

    /// The statement timeout; None when 0 (off).
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.duration("statement_timeout")
    }

    /// The session's TimeZone (UTC if the setting names none Borealis knows).
    pub fn time_zone(&self) -> crate::datetime::Zone {
        self.get("timezone")
            .ok()
            .and_then(|name| crate::datetime::time_zone(&name).ok())
            .unwrap_or(crate::datetime::Zone::UTC)
    }

    /// How long a statement may wait for a lock; None when 0 (off).
    pub fn lock_timeout(&self) -> Option<Duration> {
        self.duration("lock_timeout")
    }

    fn duration(&self, name: &str) -> Option<Duration> {
        self.get(name).ok().and_then(|value| parse_duration(name, &value).ok()).filter(|d| !d.is_zero())
    }

    /// The characteristics a new transaction starts with
    /// (`default_transaction_isolation`, `default_transaction_read_only`).
    pub fn default_transaction_mode(&self) -> crate::isolation::TxMode {
        let isolation = self.get("default_transaction_isolation").unwrap_or_default();
        let isolation = crate::isolation::IsolationLevel::from_setting("default_transaction_isolation", &isolation)
            .unwrap_or(crate::isolation::IsolationLevel::ReadCommitted);
        let read_only = self.get("default_transaction_read_only").is_ok_and(|value| value == "on");
        crate::isolation::TxMode { isolation, read_only }
    }
}

/// The schemas a `search_path` value names that exist, in order, as
/// PostgreSQL resolves it: `"$user"` is the schema named after `user`,
/// quotes are removed, names that are not schemas are skipped. With
/// `implicit`, `pg_catalog` comes first unless the path names it (PostgreSQL
/// searches it first then); `current_schema()` is the first of the list
/// without it.
pub fn search_path_schemas(value: &str, user: &str, implicit: bool, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let named: Vec<String> = value
        .split(',')
        .map(|part| {
            let part = part.trim();
            match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                Some("$user") => user.to_string(),
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => part.to_lowercase(),
            }
        })
        .filter(|name| !name.is_empty() && exists(name))
        .collect();
    let mut schemas = Vec::with_capacity(named.len() + 1);
    if implicit && !named.iter().any(|name| name == "pg_catalog") {
        schemas.push("pg_catalog".to_string());
    }
    for name in named {
        if !schemas.contains(&name) {
            schemas.push(name);
        }
    }
    schemas
}

/// The text of a SET value as PostgreSQL stores it.
pub fn value_text(values: &[Expr]) -> Result<String, SqlError> {
    let parts: Vec<String> = values
        .iter()
        .map(|expr| match expr {
            Expr::Value(value) => match &value.value {
                Value::SingleQuotedString(text) | Value::DoubleQuotedString(text) => text.clone(),
                Value::Number(number, _) => number.clone(),
                Value::Boolean(flag) => if *flag { "on" } else { "off" }.to_string(),
                other => other.to_string(),
            },
            Expr::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect();
    if parts.is_empty() {
        return Err(SqlError::new(sqlstate::SYNTAX_ERROR, "SET requires a value"));
    }
    Ok(parts.join(", "))
}

/// A Boolean setting's value, in PostgreSQL's spellings.
pub fn parse_bool(name: &str, text: &str) -> Result<bool, SqlError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Ok(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Ok(false),
        _ => Err(SqlError::new(
            sqlstate::INVALID_PARAMETER_VALUE,
            format!("parameter \"{name}\" requires a Boolean value"),
        )),
    }
}

/// A duration setting `name`: milliseconds by default, or with a unit (`5s`, `100ms`, `1min`).
pub fn parse_duration(name: &str, text: &str) -> Result<Duration, SqlError> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || {
        SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("invalid value for parameter \"{name}\": \"{text}\""))
    };
    let amount: f64 = number.parse().map_err(|_| invalid())?;
    let millis = match unit.trim() {
        "" | "ms" => amount,
        "s" => amount * 1_000.0,
        "min" => amount * 60_000.0,
        "h" => amount * 3_600_000.0,
        "d" => amount * 86_400_000.0,
        "us" => amount / 1_000.0,
        _ => return Err(invalid()),
    };
    if !(0.0..=i32::MAX as f64).contains(&millis) {
        return Err(invalid());
    }
    Ok(Duration::from_micros((millis * 1_000.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_show_reset_and_local() {
        let mut settings = Settings::default();
        assert_eq!(settings.get("DateStyle").unwrap(), "ISO, MDY");
        settings.set("application_name", "psql".into(), false).unwrap();
        settings.set("application_name", "batch".into(), true).unwrap();
        assert_eq!(settings.get("application_name").unwrap(), "batch");
        settings.end_block();
        assert_eq!(settings.get("application_name").unwrap(), "psql");
        settings.reset(Some("application_name")).unwrap();
        assert_eq!(settings.get("application_name").unwrap(), "");
        settings.set("myapp.tenant", "7".into(), false).unwrap();
        assert!(settings.all().iter().any(|(name, value)| name == "myapp.tenant" && value == "7"));
    }

    #[test]
    fn bad_names_and_values_are_refused() {
        let mut settings = Settings::default();
        assert_eq!(settings.set("no_such_thing", "1".into(), false).unwrap_err().sqlstate(), "42704");
        assert_eq!(settings.get("no_such_thing").unwrap_err().sqlstate(), "42704");
        assert_eq!(settings.set("server_version", "9".into(), false).unwrap_err().sqlstate(), "55P02");
        assert_eq!(settings.set("statement_timeout", "soon".into(), false).unwrap_err().sqlstate(), "22023");
    }

    #[test]
    fn search_path_keeps_existing_schemas_in_order() {
        let exists = |name: &str| ["pg_catalog", "public", "information_schema", "alice"].contains(&name);
        let path = |value: &str, implicit: bool| search_path_schemas(value, "alice", implicit, exists);
        assert_eq!(path("\"$user\", public", false), ["alice", "public"]);
        assert_eq!(path("\"$user\", public", true), ["pg_catalog", "alice", "public"]);
        assert_eq!(path("myschema, PUBLIC", false), ["public"]);
        assert_eq!(path("public, pg_catalog", true), ["public", "pg_catalog"]);
        assert_eq!(path("\"Public\"", false), Vec::<String>::new());
        assert_eq!(path("", true), ["pg_catalog"]);
    }

    #[test]
    fn statement_timeout_units() {
        let mut settings = Settings::default();
        assert_eq!(settings.statement_timeout(), None);
        settings.set("statement_timeout", "250".into(), false).unwrap();
        assert_eq!(settings.statement_timeout(), Some(Duration::from_millis(250)));
        settings.set("statement_timeout", "2s".into(), false).unwrap();
        assert_eq!(settings.statement_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("lock_timeout", "1min").unwrap(), Duration::from_secs(60));
        settings.set("lock_timeout", "100ms".into(), false).unwrap();
        assert_eq!(settings.lock_timeout(), Some(Duration::from_millis(100)));
        assert_eq!(settings.set("lock_timeout", "later".into(), false).unwrap_err().sqlstate(), "22023");
    }

    mod sessions {
        use crate::testing::MemoryVolume;
        use crate::{Engine, QueryOutput};
        use datafusion::arrow::util::display::array_value_to_string;
        use std::sync::Arc;

        #[tokio::test]
        async fn current_schema_follows_search_path() {
            let engine = Engine::open(Arc::new(MemoryVolume::new()), false).await.unwrap();
            let mut session = engine.session();
            let mut ask = async |sql: &str| {
                let outputs = session.execute(sql).await.unwrap();
                let Some(QueryOutput::Rows { batches, .. }) = outputs.last() else { return Vec::new() };
                let batch = &batches[0];
                batch.columns().iter().map(|c| array_value_to_string(c, 0).unwrap()).collect::<Vec<_>>()
            };
            let query = "SELECT current_schema(), current_schemas(false), current_schemas(true)";
            assert_eq!(ask(query).await, ["public", "[public]", "[pg_catalog, public]"]);
            ask("SET search_path TO myschema, pg_catalog, public").await;
            assert_eq!(ask(query).await, ["pg_catalog", "[pg_catalog, public]", "[pg_catalog, public]"]);
            ask("SET search_path = ''").await;
            assert_eq!(ask(query).await, ["", "[]", "[pg_catalog]"]);
            ask("BEGIN; SET LOCAL search_path TO information_schema").await;
            assert_eq!(ask("SELECT current_schema()").await, ["information_schema"]);
            ask("COMMIT; RESET search_path").await;
            assert_eq!(ask(query).await, ["public", "[public]", "[pg_catalog, public]"]);
        }
    }
}
