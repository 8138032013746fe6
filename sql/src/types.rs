//! SQL column types: what CREATE TABLE accepts, how each maps to Arrow, and
//! how its values are laid out in a stored row (see [`crate::row`]).
//!
//! | SQL | Arrow | stored bytes |
//! | smallint, int2 | Int16 | 2 |
//! | integer, int, int4 | Int32 | 4 |
//! | bigint, int8 | Int64 | 8 |
//! | real, float4 | Float32 | 4 |
//! | double precision, float8 | Float64 | 8 |
//! | boolean, bool | Boolean | 1 |
//! | text, varchar, varchar(n) | Utf8 | u32 length + UTF-8 |
//! | char(n), character(n) | Utf8 | as text, blank-padded to n characters |
//! | numeric(p,s), decimal(p,s) | Decimal128(p,s) | 16 (i128) |
//! | numeric, decimal (unconstrained) | Decimal128(38,10) | 16 |
//! | date | Date32 | 4 |
//! | timestamp [without time zone] | Timestamp(us, None) | 8 |
//! | timestamptz, timestamp with time zone | Timestamp(us, "+00:00") | 8 (UTC) |
//! | json, jsonb | Utf8 marked by field metadata (`crate::json`) | as text; jsonb normalized |
//! | uuid | Utf8 marked by field metadata, canonical lowercase text | 16 |
//! | bytea | Binary | u32 length + bytes |
//! | time [without time zone] | Time64(us) | 8 (microseconds since midnight) |
//! | interval | Interval(MonthDayNano) | 16 (months i32, days i32, nanoseconds i64) |
//! | T[] for T one of the scalar types above but json, uuid and bytea | List(T) | u32 length + count u32, null bitmap, elements |
//!
//! Unconstrained numeric differs from PostgreSQL (which keeps any scale): it
//! is stored with 38 digits of which 10 after the point, so values are
//! rounded to 10 decimals. numeric precision is limited to 38 (Decimal128).

use crate::error::{SqlError, sqlstate};
use datafusion::arrow::datatypes::{DataType, Field, IntervalUnit, TimeUnit};
use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CharacterLength, DataType as AstType, ExactNumberInfo, TimezoneInfo,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Precision of unconstrained numeric.
pub const NUMERIC_DEFAULT_PRECISION: u8 = 38;
/// Scale of unconstrained numeric: 10 fractional digits keep money and
/// ratios exact while leaving 28 integer digits.
pub const NUMERIC_DEFAULT_SCALE: i8 = 10;
/// The zone of timestamptz values (and of the session: TimeZone is UTC).
pub const UTC: &str = "+00:00";
/// Largest precision Decimal128 holds.
pub const NUMERIC_PRECISION_MAX: u8 = 38;

/// A column type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SqlType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text,
    /// varchar(n): at most `n` characters.
    Varchar(u32),
    /// char(n): exactly `n` characters, blank-padded (trailing blanks beyond
    /// `n` are cut, other excess characters refused as in PostgreSQL).
    Char(u32),
    Numeric {
        precision: u8,
        scale: i8,
    },
    Date,
    Timestamp,
    /// timestamp with time zone: an instant, stored and shown in UTC.
    Timestamptz,
    /// json: the text given, checked to be JSON.
    Json,
    /// jsonb: JSON normalized as PostgreSQL prints it.
    Jsonb,
    /// uuid: 16 bytes, read and shown as canonical lowercase text.
    Uuid,
    Bytea,
    /// time without time zone: microseconds since midnight.
    Time,
    /// interval: months, days and microseconds, kept apart as in PostgreSQL.
    Interval,
    /// A one-dimensional array (PostgreSQL's arrays of any dimension are
    /// stored flat: multi-dimensional values are refused).
    Array(Element),
}

/// The element type of an array column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Element {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    Text,
    Numeric { precision: u8, scale: i8 },
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Interval,
}

impl Element {
    /// The element type as a column type.
    pub fn scalar(self) -> SqlType {
        match self {
            Element::Int2 => SqlType::Int2,
            Element::Int4 => SqlType::Int4,
            Element::Int8 => SqlType::Int8,
            Element::Float4 => SqlType::Float4,
            Element::Float8 => SqlType::Float8,
            Element::Bool => SqlType::Bool,
            Element::Text => SqlType::Text,
            Element::Numeric { precision, scale } => SqlType::Numeric { precision, scale },
            Element::Date => SqlType::Date,
            Element::Timestamp => SqlType::Timestamp,
            Element::Timestamptz => SqlType::Timestamptz,
            Element::Time => SqlType::Time,
            Element::Interval => SqlType::Interval,
        }
    }

    /// The element type of arrays of `ty`; None for types arrays are not kept of.
    pub fn of(ty: SqlType) -> Option<Element> {
        Some(match ty {
            SqlType::Int2 => Element::Int2,
            SqlType::Int4 => Element::Int4,
            SqlType::Int8 => Element::Int8,
            SqlType::Float4 => Element::Float4,
            SqlType::Float8 => Element::Float8,
            SqlType::Bool => Element::Bool,
            // Arrays of varchar(n) and char(n) keep their elements as text.
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) => Element::Text,
            SqlType::Numeric { precision, scale } => Element::Numeric { precision, scale },
            SqlType::Date => Element::Date,
            SqlType::Timestamp => Element::Timestamp,
            SqlType::Timestamptz => Element::Timestamptz,
            SqlType::Time => Element::Time,
            SqlType::Interval => Element::Interval,
            SqlType::Json | SqlType::Jsonb | SqlType::Uuid | SqlType::Bytea | SqlType::Array(_) => return None,
        })
    }
}

/// The field metadata value marking a Utf8 field as uuid (key `crate::json::PG_TYPE_METADATA`).
const UUID_METADATA: &str = "uuid";

/// A Utf8 field holding uuid values.
pub fn uuid_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable).with_metadata(std::collections::HashMap::from([(
        crate::json::PG_TYPE_METADATA.to_string(),
        UUID_METADATA.to_string(),
    )]))
}

/// Whether `field` holds uuid values.
pub fn is_uuid(field: &Field) -> bool {
    field.metadata().get(crate::json::PG_TYPE_METADATA).is_some_and(|kind| kind == UUID_METADATA)
}

/// The canonical text of a uuid written as PostgreSQL accepts it (hex
/// digits in any case, hyphens after any group of four, braces around);
/// 22P02 otherwise.
pub fn uuid_canonical(text: &str) -> Result<String, SqlError> {
    uuid_bytes(text).map(|bytes| uuid_text(&bytes))
}

/// The 16 bytes of a uuid's text (see [`uuid_canonical`]).
pub fn uuid_bytes(text: &str) -> Result<[u8; 16], SqlError> {
    let invalid = || {
        SqlError::new(sqlstate::INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type uuid: \"{text}\""))
    };
    let inner = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(text);
    let mut bytes = [0u8; 16];
    let mut digits = 0;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            // Hyphens only between groups of four digits, never doubled or trailing.
            if digits == 0 || digits % 4 != 0 || digits == 32 || chars.peek().is_none_or(|next| *next == '-') {
                return Err(invalid());
            }
            continue;
        }
        let value = c.to_digit(16).ok_or_else(invalid)? as u8;
        if digits == 32 {
            return Err(invalid());
        }
        bytes[digits / 2] |= if digits % 2 == 0 { value << 4 } else { value };
        digits += 1;
    }
    if digits != 32 {
        return Err(invalid());
    }
    Ok(bytes)
}

/// A uuid's canonical text: 8-4-4-4-12 lowercase hex digits.
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

impl SqlType {
    /// The type of a CREATE TABLE column, or 0A000 for types not supported.
    pub fn from_ast(ast: &AstType) -> Result<SqlType, SqlError> {
        let ty = match ast {
            AstType::Int2(_) | AstType::SmallInt(_) => SqlType::Int2,
            AstType::Int(_) | AstType::Int4(_) | AstType::Integer(_) => SqlType::Int4,
            AstType::Int8(_) | AstType::BigInt(_) => SqlType::Int8,
            AstType::Real | AstType::Float4 => SqlType::Float4,
            AstType::Float8 | AstType::DoublePrecision | AstType::Double(ExactNumberInfo::None) => SqlType::Float8,
            AstType::Bool | AstType::Boolean => SqlType::Bool,
            AstType::Text => SqlType::Text,
            AstType::Varchar(length) | AstType::CharacterVarying(length) | AstType::CharVarying(length) => {
                varchar(length.as_ref())?
            }
            AstType::Char(length) | AstType::Character(length) => match varchar(length.as_ref())? {
                SqlType::Varchar(length) => SqlType::Char(length),
                _ => SqlType::Char(1),
            },
            AstType::Numeric(info) | AstType::Decimal(info) => numeric(info)?,
            AstType::Date => SqlType::Date,
            AstType::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Timestamp,
            AstType::Timestamp(_, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => SqlType::Timestamptz,
            AstType::JSON => SqlType::Json,
            AstType::JSONB => SqlType::Jsonb,
            AstType::Uuid => SqlType::Uuid,
            AstType::Bytea => SqlType::Bytea,
            AstType::Time(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => SqlType::Time,
            AstType::Interval { fields: None, precision: None } => SqlType::Interval,
            AstType::Array(
                ArrayElemTypeDef::SquareBracket(element, _)
                | ArrayElemTypeDef::AngleBracket(element)
                | ArrayElemTypeDef::Parenthesis(element),
            ) => {
                let element = SqlType::from_ast(element)?;
                SqlType::Array(
                    Element::of(element)
                        .ok_or_else(|| SqlError::unsupported(format_args!("arrays of type {element}")))?,
                )
            }
            other => return Err(SqlError::unsupported(format_args!("type {other}"))),
        };
        Ok(ty)
    }

    /// The column type that holds values of `field` (CREATE TABLE AS), or
    /// 0A000 for a type no column can have.
    pub fn from_arrow(field: &Field) -> Result<SqlType, SqlError> {
        Ok(match (field.data_type(), crate::json::Kind::of(field)) {
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(crate::json::Kind::Json)) => SqlType::Json,
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(crate::json::Kind::Jsonb)) => {
                SqlType::Jsonb
            }
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, _) if is_uuid(field) => SqlType::Uuid,
            (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null, _) => SqlType::Text,
            (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, _) => SqlType::Bytea,
            (DataType::Time32(_) | DataType::Time64(_), _) => SqlType::Time,
            (DataType::Interval(_), _) => SqlType::Interval,
            (DataType::List(item) | DataType::LargeList(item), _) => {
                match SqlType::from_arrow(item).ok().and_then(Element::of) {
                    Some(element) => SqlType::Array(element),
                    None => {
                        return Err(SqlError::unsupported(format_args!(
                            "a column of arrays of {} (column \"{}\")",
                            item.data_type(),
                            field.name()
                        )));
                    }
                }
            }
            (DataType::Int8 | DataType::Int16 | DataType::UInt8, _) => SqlType::Int2,
            (DataType::Int32 | DataType::UInt16, _) => SqlType::Int4,
            (DataType::Int64 | DataType::UInt32, _) => SqlType::Int8,
            (DataType::Float16 | DataType::Float32, _) => SqlType::Float4,
            (DataType::Float64, _) => SqlType::Float8,
            (DataType::Boolean, _) => SqlType::Bool,
            (DataType::Decimal128(precision, scale), _) => SqlType::Numeric { precision: *precision, scale: *scale },
            (DataType::Date32, _) => SqlType::Date,
            (DataType::Timestamp(_, None), _) => SqlType::Timestamp,
            (DataType::Timestamp(_, Some(_)), _) => SqlType::Timestamptz,
            (other, _) => {
                return Err(SqlError::unsupported(format_args!(
                    "a column of type {other} (column \"{}\")",
                    field.name()
                )));
            }
        })
    }

    /// The Arrow type of the column's values.
    pub fn arrow_type(self) -> DataType {
        match self {
            SqlType::Int2 => DataType::Int16,
            SqlType::Int4 => DataType::Int32,
            SqlType::Int8 => DataType::Int64,
            SqlType::Float4 => DataType::Float32,
            SqlType::Float8 => DataType::Float64,
            SqlType::Bool => DataType::Boolean,
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Json | SqlType::Jsonb => DataType::Utf8,
            SqlType::Numeric { precision, scale } => DataType::Decimal128(precision, scale),
            SqlType::Date => DataType::Date32,
            SqlType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            SqlType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            SqlType::Uuid => DataType::Utf8,
            SqlType::Bytea => DataType::Binary,
            SqlType::Time => DataType::Time64(TimeUnit::Microsecond),
            SqlType::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            SqlType::Array(element) => {
                DataType::List(Arc::new(Field::new_list_field(element.scalar().arrow_type(), true)))
            }
        }
    }

    /// The Arrow field of a column of this type: json and jsonb carry
    /// their PostgreSQL type in the field's metadata.
    pub fn arrow_field(self, name: &str, nullable: bool) -> Field {
        match self {
            SqlType::Json => crate::json::Kind::Json.field(name, nullable),
            SqlType::Jsonb => crate::json::Kind::Jsonb.field(name, nullable),
            SqlType::Uuid => uuid_field(name, nullable),
            other => Field::new(name, other.arrow_type(), nullable),
        }
    }

    /// Bytes of a stored value of a fixed-width type, None for variable width.
    pub fn fixed_width_bytes(self) -> Option<usize> {
        match self {
            SqlType::Bool => Some(1),
            SqlType::Int2 => Some(2),
            SqlType::Int4 | SqlType::Float4 | SqlType::Date => Some(4),
            SqlType::Int8 | SqlType::Float8 | SqlType::Timestamp | SqlType::Timestamptz | SqlType::Time => Some(8),
            SqlType::Numeric { .. } | SqlType::Uuid | SqlType::Interval => Some(16),
            SqlType::Text
            | SqlType::Varchar(_)
            | SqlType::Char(_)
            | SqlType::Json
            | SqlType::Jsonb
            | SqlType::Bytea
            | SqlType::Array(_) => None,
        }
    }
}

impl fmt::Display for SqlType {
    /// The PostgreSQL spelling, as in error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Int2 => write!(f, "smallint"),
            SqlType::Int4 => write!(f, "integer"),
            SqlType::Int8 => write!(f, "bigint"),
            SqlType::Float4 => write!(f, "real"),
            SqlType::Float8 => write!(f, "double precision"),
            SqlType::Bool => write!(f, "boolean"),
            SqlType::Text => write!(f, "text"),
            SqlType::Varchar(length) => write!(f, "character varying({length})"),
            SqlType::Char(length) => write!(f, "character({length})"),
            SqlType::Numeric { precision, scale } => write!(f, "numeric({precision},{scale})"),
            SqlType::Date => write!(f, "date"),
            SqlType::Timestamp => write!(f, "timestamp without time zone"),
            SqlType::Timestamptz => write!(f, "timestamp with time zone"),
            SqlType::Json => write!(f, "json"),
            SqlType::Jsonb => write!(f, "jsonb"),
            SqlType::Uuid => write!(f, "uuid"),
            SqlType::Bytea => write!(f, "bytea"),
            SqlType::Time => write!(f, "time without time zone"),
            SqlType::Interval => write!(f, "interval"),
            SqlType::Array(element) => write!(f, "{}[]", element.scalar()),
        }
    }
}

fn varchar(length: Option<&CharacterLength>) -> Result<SqlType, SqlError> {
    match length {
        None => Ok(SqlType::Text),
        Some(CharacterLength::IntegerLength { length, .. }) => match u32::try_from(*length) {
            Ok(length) if length >= 1 => Ok(SqlType::Varchar(length)),
            _ => Err(SqlError::new(
                sqlstate::SYNTAX_ERROR,
                format!("length for type varchar must be between 1 and {}", u32::MAX),
            )),
        },
        Some(CharacterLength::Max) => Err(SqlError::unsupported("varchar(max)")),
    }
}

fn numeric(info: &ExactNumberInfo) -> Result<SqlType, SqlError> {
    let (precision, scale) = match *info {
        ExactNumberInfo::None => return Ok(numeric_default()),
        ExactNumberInfo::Precision(precision) => (precision, 0),
        ExactNumberInfo::PrecisionAndScale(precision, scale) => (precision, scale),
    };
    let precision =
        u8::try_from(precision).ok().filter(|p| (1..=NUMERIC_PRECISION_MAX).contains(p)).ok_or_else(|| {
            SqlError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                format!("NUMERIC precision {precision} must be between 1 and {NUMERIC_PRECISION_MAX}"),
            )
        })?;
    let scale = i8::try_from(scale).ok().filter(|s| (0..=precision as i8).contains(s)).ok_or_else(|| {
        SqlError::new(
            sqlstate::INVALID_TABLE_DEFINITION,
            format!("NUMERIC scale {scale} must be between 0 and precision {precision}"),
        )
    })?;
    Ok(SqlType::Numeric { precision, scale })
}

fn numeric_default() -> SqlType {
    SqlType::Numeric { precision: NUMERIC_DEFAULT_PRECISION, scale: NUMERIC_DEFAULT_SCALE }
}
