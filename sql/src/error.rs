//! The one error type of the SQL layer, and how every lower error maps to it.
//!
//! Policy (DESIGN.md invariant 9): every error that leaves this crate is a
//! [`SqlError`] that knows its SQLSTATE and carries a client-safe message (no
//! page ids, LSNs, addresses or paths). The server turns only this type into a
//! PostgreSQL ErrorResponse. DataFusion reports most failures as strings, so
//! the mapping from DataFusion errors is confined to [`SqlError::from_datafusion`].

use crate::volume::VolumeError;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use thiserror::Error;

/// SQLSTATE codes used by this crate (PostgreSQL Appendix A).
pub mod sqlstate {
    /// successful_completion is never an error; listed for completeness of tables.
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const INVALID_TABLE_DEFINITION: &str = "42P16";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const STRING_DATA_RIGHT_TRUNCATION: &str = "22001";
    pub const DATETIME_FIELD_OVERFLOW: &str = "22008";
    pub const NULL_VALUE_NOT_ALLOWED: &str = "22004";
    pub const INVALID_DATETIME_FORMAT: &str = "22007";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const INVALID_COLUMN_REFERENCE: &str = "42P10";
    pub const CARDINALITY_VIOLATION: &str = "21000";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const INVALID_FOREIGN_KEY: &str = "42830";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
    pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
    pub const INVALID_SAVEPOINT_SPECIFICATION: &str = "3B001";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const TRANSACTION_RESOLUTION_UNKNOWN: &str = "08007";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const QUERY_CANCELED: &str = "57014";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
    pub const INVALID_SCHEMA_NAME: &str = "3F000";
    pub const DUPLICATE_SCHEMA: &str = "42P06";
    pub const RESERVED_NAME: &str = "42939";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    /// Not PostgreSQL's: a statement attempt the engine runs again (see `crate::locks::restart`).
    pub const STATEMENT_RESTART: &str = "40000";
    pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const SEQUENCE_GENERATOR_LIMIT_EXCEEDED: &str = "2200H";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const GENERATED_ALWAYS: &str = "428C9";
    pub const WRONG_OBJECT_TYPE: &str = "42809";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const DATA_CORRUPTED: &str = "XX001";
}

/// An error for the client: a SQLSTATE and a message safe to show.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message} (SQLSTATE {sqlstate})")]
pub struct SqlError {
    sqlstate: &'static str,
    message: String,
    /// PostgreSQL's DETAIL line (`Key (p_id)=(5) is not present in table "p".`), client-safe too.
    detail: Option<String>,
}

impl SqlError {
    /// An error with an explicit SQLSTATE (5 characters, see [`sqlstate`]).
    pub fn new(sqlstate: &'static str, message: impl Into<String>) -> SqlError {
        debug_assert_eq!(sqlstate.len(), 5, "SQLSTATE {sqlstate} is not 5 characters");
        SqlError { sqlstate, message: message.into(), detail: None }
    }

    /// The error with a DETAIL line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> SqlError {
        self.detail = Some(detail.into());
        self
    }

    /// The DETAIL line, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The five-character SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        self.sqlstate
    }

    /// The client-safe message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 0A000: the statement is valid SQL but not supported (yet).
    pub fn unsupported(what: impl std::fmt::Display) -> SqlError {
        SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, format!("{what} is not supported"))
    }

    /// XX000: a bug or broken invariant; the detail goes to logs, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> SqlError {
        tracing::error!(detail = %detail, "internal error in SQL layer");
        SqlError::new(sqlstate::INTERNAL_ERROR, "internal error")
    }

    /// XX001: stored bytes do not decode.
    pub fn corrupt(detail: impl std::fmt::Display) -> SqlError {
        tracing::error!(detail = %detail, "corrupt data");
        SqlError::new(sqlstate::DATA_CORRUPTED, "stored data is corrupt")
    }

    /// 42P01 for a table name.
    pub fn undefined_table(name: &str) -> SqlError {
        SqlError::new(sqlstate::UNDEFINED_TABLE, format!("relation \"{name}\" does not exist"))
    }

    /// 3F000 for a schema name.
    pub fn undefined_schema(name: &str) -> SqlError {
        SqlError::new(sqlstate::INVALID_SCHEMA_NAME, format!("schema \"{name}\" does not exist"))
    }

    /// 42601 from the SQL parser.
    pub fn syntax(error: &ParserError) -> SqlError {
        let text = match error {
            ParserError::TokenizerError(message) | ParserError::ParserError(message) => message.clone(),
            ParserError::RecursionLimitExceeded => "statement is too deeply nested".to_string(),
        };
        SqlError::new(sqlstate::SYNTAX_ERROR, format!("syntax error: {text}"))
    }

    /// Maps a DataFusion error. DataFusion's errors are mostly strings, so
    /// this is the one place that classifies them by content.
    pub fn from_datafusion(error: &DataFusionError) -> SqlError {
        let root = error.find_root();
        match root {
            DataFusionError::SQL(parser, _) => SqlError::syntax(parser),
            DataFusionError::ArrowError(arrow, _) => SqlError::from_arrow(arrow),
            DataFusionError::SchemaError(schema, _) => from_schema_error(schema),
            DataFusionError::NotImplemented(message) => {
                SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, strip_backtrace(message))
            }
            DataFusionError::Plan(message) => from_plan_message(&strip_backtrace(message)),
            DataFusionError::Execution(message) => from_execution_message(&strip_backtrace(message)),
            DataFusionError::ResourcesExhausted(message) => {
                SqlError::new(sqlstate::OUT_OF_MEMORY, strip_backtrace(message))
            }
            DataFusionError::External(inner) => match inner.downcast_ref::<SqlError>() {
                Some(sql) => sql.clone(),
                None => SqlError::internal(inner),
            },
            other => SqlError::internal(other),
        }
    }

    /// Maps an Arrow compute error (casts, arithmetic).
    pub fn from_arrow(error: &ArrowError) -> SqlError {
        match error {
            ArrowError::DivideByZero => SqlError::new(sqlstate::DIVISION_BY_ZERO, "division by zero"),
            ArrowError::ArithmeticOverflow(message) => {
                SqlError::new(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, message.clone())
            }
            ArrowError::CastError(message) | ArrowError::ParseError(message) => {
                SqlError::new(invalid_input_sqlstate(message), message.clone())
            }
            ArrowError::InvalidArgumentError(message) | ArrowError::ComputeError(message)
                if is_out_of_range(message) =>
            {
                SqlError::new(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, message.clone())
            }
            ArrowError::ExternalError(inner) => match inner.downcast_ref::<SqlError>() {
                Some(sql) => sql.clone(),
                None => SqlError::internal(inner),
            },
            other => SqlError::internal(other),
        }
    }
}

/// The SQLSTATE of a value that does not cast: PostgreSQL reports 22003 for
/// a number too large for its type (Arrow: "Can't cast value 32768 to type
/// Int16"), 22008 for a date or timestamp whose fields are out of range
/// ('2024-02-30'), 22007 for other text that is not a date or timestamp, and
/// 22P02 for every other type. Arrow names the type it parsed to in the
/// message ("... to value of Date32 type", "Error parsing timestamp from
/// ...") and quotes the text.
fn invalid_input_sqlstate(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.starts_with("can't cast value") {
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
    } else if ["date32", "date64", "timestamp", "parsing date"].iter().any(|word| lower.contains(word)) {
        match message.split('\'').nth(1) {
            Some(text) if starts_like_a_date(text) => sqlstate::DATETIME_FIELD_OVERFLOW,
            _ => sqlstate::INVALID_DATETIME_FORMAT,
        }
    } else {
        sqlstate::INVALID_TEXT_REPRESENTATION
    }
}

/// Whether `text` opens with year-month-day digits (`2024-02-30`, `2024-13-45
/// 99:00`): well formed, so a failure to cast it is a field out of range.
fn starts_like_a_date(text: &str) -> bool {
    let mut parts = text.splitn(3, '-');
    let (Some(year), Some(month), Some(rest)) = (parts.next(), parts.next(), parts.next()) else { return false };
    let day_digits = rest.chars().take_while(char::is_ascii_digit).count();
    let digits = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
    year.len() == 4 && digits(year) && (1..=2).contains(&month.len()) && digits(month) && (1..=2).contains(&day_digits)
}

fn strip_backtrace(message: &str) -> String {
    message.split("\n\nbacktrace").next().unwrap_or(message).trim().to_string()
}

fn is_out_of_range(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("overflow") || lower.contains("too large") || lower.contains("out of range")
}

fn from_schema_error(error: &datafusion::common::SchemaError) -> SqlError {
    use datafusion::common::SchemaError;
    match error {
        SchemaError::FieldNotFound { field, .. } => {
            SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{}\" does not exist", field.name))
        }
        SchemaError::AmbiguousReference { field } => {
            SqlError::new(sqlstate::AMBIGUOUS_COLUMN, format!("column reference \"{}\" is ambiguous", field.name))
        }
        SchemaError::DuplicateQualifiedField { name, .. } | SchemaError::DuplicateUnqualifiedField { name } => {
            SqlError::new(sqlstate::DUPLICATE_COLUMN, format!("column \"{name}\" specified more than once"))
        }
    }
}

fn from_plan_message(message: &str) -> SqlError {
    let lower = message.to_ascii_lowercase();
    let state = if lower.contains("not found") && lower.contains("table") {
        sqlstate::UNDEFINED_TABLE
    } else if lower.contains("invalid function") || lower.contains("no function matches") {
        sqlstate::UNDEFINED_FUNCTION
    } else if lower.contains("coerc")
        || lower.contains("type")
        || lower.contains("cannot infer")
        || lower.contains("signature")
    {
        sqlstate::DATATYPE_MISMATCH
    } else if lower.contains("divide by zero") {
        sqlstate::DIVISION_BY_ZERO
    } else {
        sqlstate::SYNTAX_ERROR
    };
    SqlError::new(state, message.to_string())
}

fn from_execution_message(message: &str) -> SqlError {
    let lower = message.to_ascii_lowercase();
    let state = if lower.contains("divide by zero") || lower.contains("division by zero") {
        sqlstate::DIVISION_BY_ZERO
    } else if is_out_of_range(message) {
        sqlstate::NUMERIC_VALUE_OUT_OF_RANGE
    } else if lower.contains("cast") || lower.contains("parse") {
        invalid_input_sqlstate(message)
    } else {
        sqlstate::INTERNAL_ERROR
    };
    if state == sqlstate::INTERNAL_ERROR {
        return SqlError::internal(message);
    }
    SqlError::new(state, message.to_string())
}

impl From<DataFusionError> for SqlError {
    fn from(error: DataFusionError) -> SqlError {
        SqlError::from_datafusion(&error)
    }
}

impl From<VolumeError> for SqlError {
    /// Reads and commits map differently for Unavailable; see [`VolumeError`].
    fn from(error: VolumeError) -> SqlError {
        error.to_sql_error(false)
    }
}

impl From<SqlError> for DataFusionError {
    fn from(error: SqlError) -> DataFusionError {
        DataFusionError::External(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_failures_get_postgres_sqlstates() {
        for (message, want) in [
            ("Can't cast value 32768 to type Int16", "22003"),
            ("Cannot cast string '2024-02-30' to value of Date32 type", "22008"),
            ("Error parsing timestamp from '2024-13-45 99:00': error parsing date", "22008"),
            ("Cannot cast string 'not-a-date' to value of Date32 type", "22007"),
            ("Error parsing timestamp from '24-1-2': error parsing date", "22007"),
            ("Cannot cast string 'one' to value of Int32 type", "22P02"),
        ] {
            assert_eq!(invalid_input_sqlstate(message), want, "{message}");
        }
    }
}
