//! Arrow values to and from the PostgreSQL wire: type OIDs for row
//! descriptions, text and binary encoding of result rows, and decoding of
//! bound parameters into DataFusion scalars.
//!
//! Every Arrow type a query can produce has a PostgreSQL type here; types
//! without a natural match are cast to text, so a client never receives a
//! value it cannot read.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, TimestampMicrosecondArray, UInt8Array, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, IntervalUnit, Schema, TimeUnit};
use borealis_sql::engine::TIME_ZONE_METADATA;
use borealis_sql::pg_catalog::{INT2VECTOR_ITEM, OIDVECTOR_ITEM};
use borealis_sql::{datetime, json, text_output};
use chrono::{NaiveDate, NaiveDateTime, Timelike};
use datafusion::scalar::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use rust_decimal::Decimal;
use std::sync::Arc;

/// The PostgreSQL array type of lists of `element`; None for lists sent as text.
fn array_type(element: &DataType) -> Option<Type> {
    Some(match element {
        DataType::Boolean => Type::BOOL_ARRAY,
        DataType::Int16 => Type::INT2_ARRAY,
        DataType::Int32 => Type::INT4_ARRAY,
        DataType::Int64 => Type::INT8_ARRAY,
        DataType::Float32 => Type::FLOAT4_ARRAY,
        DataType::Float64 => Type::FLOAT8_ARRAY,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Type::TEXT_ARRAY,
        _ => return None,
    })
}

/// The PostgreSQL type a column of `data_type` is sent as.
pub fn pg_type(data_type: &DataType) -> Type {
    match data_type {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        DataType::Interval(_) | DataType::Duration(_) => Type::INTERVAL,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Type::BYTEA,
        DataType::List(item) if item.name() == INT2VECTOR_ITEM => Type::INT2_VECTOR,
        DataType::List(item) if item.name() == OIDVECTOR_ITEM => Type::OID_VECTOR,
        DataType::List(item) => array_type(item.data_type()).unwrap_or(Type::TEXT),
        _ => Type::TEXT,
    }
}

/// The Arrow type of values a client declared as `pg` in Parse, None for
/// types it leaves to the server (unknown) and types Borealis has no
/// matching Arrow type for. Parameters of these types decode into these
/// Arrow types (see [`decode_parameters`]).
pub fn arrow_type(pg: &Type) -> Option<DataType> {
    Some(match *pg {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(borealis_sql::types::UTC.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::UUID => DataType::Utf8,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        _ => return None,
    })
}

/// Row description for a result schema, with per-column formats.
pub fn fields(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let pg = match json::Kind::of(field) {
                Some(json::Kind::Json) => Type::JSON,
                Some(json::Kind::Jsonb) => Type::JSONB,
                None if borealis_sql::types::is_uuid(field) => Type::UUID,
                None => pg_type(field.data_type()),
            };
            FieldInfo::new(field.name().clone(), None, None, pg, format.format_for(index))
        })
        .collect()
}

fn internal(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), "XX000".into(), message)))
}

/// Casts columns whose Arrow type has no direct encoder to text.
fn normalise(column: &ArrayRef) -> PgWireResult<ArrayRef> {
    let target = match column.data_type() {
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(_, _) => Some(DataType::Utf8),
        DataType::Timestamp(unit, tz) if *unit != TimeUnit::Microsecond => {
            Some(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))
        }
        DataType::Date64 => Some(DataType::Date32),
        DataType::Float16 => Some(DataType::Float32),
        DataType::LargeBinary | DataType::BinaryView => Some(DataType::Binary),
        DataType::Decimal256(_, _) => Some(DataType::Utf8),
        DataType::Interval(IntervalUnit::MonthDayNano) => None,
        DataType::Interval(_) => Some(DataType::Interval(IntervalUnit::MonthDayNano)),
        DataType::Time64(TimeUnit::Microsecond) => None,
        DataType::Time32(_) | DataType::Time64(_) => Some(DataType::Time64(TimeUnit::Microsecond)),
        DataType::Duration(_) => {
            return text_output::durations_as_intervals(column)
                .map_err(|e| internal(format!("cannot encode column: {e}")));
        }
        DataType::List(item) if matches!(item.data_type(), DataType::Utf8View | DataType::LargeUtf8) => {
            Some(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
        }
        // Arrays sent as text (dates, numerics...): PostgreSQL's text of each value.
        DataType::List(item)
            if array_type(item.data_type()).is_none()
                && ![INT2VECTOR_ITEM, OIDVECTOR_ITEM].contains(&item.name().as_str()) =>
        {
            let lists = column.as_list::<i32>();
            let texts: arrow::array::StringArray = (0..lists.len())
                .map(|i| lists.is_valid(i).then(|| array_text(&lists.value(i))).transpose())
                .collect::<PgWireResult<_>>()?;
            return Ok(Arc::new(texts));
        }
        other if pg_type(other) == Type::TEXT && *other != DataType::Utf8 => Some(DataType::Utf8),
        _ => None,
    };
    match target {
        Some(target) => cast(column, &target).map_err(|e| internal(format!("cannot encode column: {e}"))),
        None => Ok(column.clone()),
    }
}

/// Encodes every row of `batch` for the client.
pub fn encode_batch(
    fields: &Arc<Vec<FieldInfo>>,
    batch: &arrow::record_batch::RecordBatch,
) -> PgWireResult<Vec<DataRow>> {
    let columns = batch.columns().iter().map(normalise).collect::<PgWireResult<Vec<_>>>()?;
    // timestamptz columns the engine marked with the session's TimeZone.
    let zones: Vec<Option<datetime::Zone>> = batch
        .schema()
        .fields()
        .iter()
        .map(|field| field.metadata().get(TIME_ZONE_METADATA).and_then(|name| datetime::time_zone(name).ok()))
        .collect();
    let mut encoder = DataRowEncoder::new(fields.clone());
    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        for ((column, field), zone) in columns.iter().zip(fields.iter()).zip(&zones) {
            if let (Some(zone), FieldFormat::Text, DataType::Timestamp(TimeUnit::Microsecond, Some(_))) =
                (zone, field.format(), column.data_type())
            {
                let text = (!column.is_null(row))
                    .then(|| {
                        zone.timestamptz_text(
                            column.as_primitive::<arrow::datatypes::TimestampMicrosecondType>().value(row),
                        )
                    })
                    .flatten();
                encoder.encode_field(&text)?;
                continue;
            }
            if [Type::JSON, Type::JSONB].contains(field.datatype()) {
                encode_json(&mut encoder, column, row, field)?;
                continue;
            }
            if *field.datatype() == Type::UUID {
                encode_uuid(&mut encoder, column, row, field.format())?;
                continue;
            }
            encode_value(&mut encoder, column, row, field.format())?;
        }
        rows.push(encoder.take_row());
    }
    Ok(rows)
}

/// A json or jsonb value: its text, which in binary format jsonb prefixes
/// with its format version (1).
fn encode_json(encoder: &mut DataRowEncoder, column: &ArrayRef, row: usize, field: &FieldInfo) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i32>);
    }
    let text = column.as_string::<i32>().value(row);
    let options = pgwire::types::format::FormatOptions::default();
    if field.format() == FieldFormat::Binary && *field.datatype() == Type::JSONB {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.push(JSONB_FORMAT_VERSION);
        bytes.extend_from_slice(text.as_bytes());
        return encoder.encode_field_with_type_and_format(&bytes, &Type::BYTEA, field.format(), &options);
    }
    encoder.encode_field_with_type_and_format(&text, &Type::TEXT, field.format(), &options)
}

/// A uuid: its text, or in binary format its 16 bytes.
fn encode_uuid(encoder: &mut DataRowEncoder, column: &ArrayRef, row: usize, format: FieldFormat) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i32>);
    }
    let text = column.as_string::<i32>().value(row);
    let options = pgwire::types::format::FormatOptions::default();
    if format == FieldFormat::Binary {
        let bytes = borealis_sql::types::uuid_bytes(text).map_err(|e| internal(e.message().to_string()))?;
        return encoder.encode_field_with_type_and_format(&&bytes[..], &Type::BYTEA, format, &options);
    }
    encoder.encode_field_with_type_and_format(&text, &Type::TEXT, format, &options)
}

/// The version byte that starts jsonb's binary form.
const JSONB_FORMAT_VERSION: u8 = 1;

fn encode_value(encoder: &mut DataRowEncoder, column: &ArrayRef, row: usize, format: FieldFormat) -> PgWireResult<()> {
    if column.is_null(row) {
        return encoder.encode_field(&None::<i32>);
    }
    macro_rules! primitive {
        ($array:ty, $convert:expr) => {{
            let array = column.as_any().downcast_ref::<$array>().expect("type checked");
            #[allow(clippy::redundant_closure_call)]
            encoder.encode_field(&($convert)(array.value(row)))
        }};
    }
    match column.data_type() {
        DataType::Boolean => {
            let array: &BooleanArray = column.as_boolean();
            encoder.encode_field(&array.value(row))
        }
        DataType::Int8 => primitive!(Int8Array, i16::from),
        DataType::Int16 => primitive!(Int16Array, |v: i16| v),
        DataType::Int32 => primitive!(Int32Array, |v: i32| v),
        DataType::Int64 => primitive!(Int64Array, |v: i64| v),
        DataType::UInt8 => primitive!(UInt8Array, i16::from),
        DataType::UInt16 => primitive!(UInt16Array, i32::from),
        DataType::UInt32 => primitive!(UInt32Array, i64::from),
        DataType::UInt64 => primitive!(UInt64Array, Decimal::from),
        DataType::Float32 if format == FieldFormat::Text => {
            let value = column.as_primitive::<arrow::datatypes::Float32Type>().value(row);
            encoder.encode_field(&text_output::float4_text(value))
        }
        DataType::Float64 if format == FieldFormat::Text => {
            let value = column.as_primitive::<arrow::datatypes::Float64Type>().value(row);
            encoder.encode_field(&text_output::float8_text(value))
        }
        DataType::Float32 => primitive!(Float32Array, |v: f32| v),
        DataType::Float64 => primitive!(Float64Array, |v: f64| v),
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let value = column.as_primitive::<arrow::datatypes::IntervalMonthDayNanoType>().value(row);
            encoder.encode_field(&text_output::interval_text(value))
        }
        DataType::Decimal128(_, scale) => {
            let array = column.as_any().downcast_ref::<Decimal128Array>().expect("type checked");
            encode_decimal(encoder, array.value(row), *scale)
        }
        DataType::Date32 => {
            let array = column.as_any().downcast_ref::<Date32Array>().expect("type checked");
            let days = array.value(row);
            let date = NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
                .ok_or_else(|| internal(format!("date out of range: {days}")))?;
            encoder.encode_field(&date)
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let array = column.as_any().downcast_ref::<TimestampMicrosecondArray>().expect("type checked");
            let micros = array.value(row);
            let timestamp = chrono::DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| internal(format!("timestamp out of range: {micros}")))?;
            match (tz, format) {
                (None, FieldFormat::Text) => {
                    encoder.encode_field(&text_output::timestamp_text(&timestamp.naive_utc(), ""))
                }
                (Some(_), FieldFormat::Text) => {
                    encoder.encode_field(&text_output::timestamp_text(&timestamp.naive_utc(), "+00"))
                }
                (None, FieldFormat::Binary) => encoder.encode_field(&timestamp.naive_utc()),
                (Some(_), FieldFormat::Binary) => encoder.encode_field(&timestamp),
            }
        }
        DataType::Binary => encoder.encode_field(&column.as_binary::<i32>().value(row)),
        DataType::Time64(TimeUnit::Microsecond) => {
            let micros = column.as_primitive::<arrow::datatypes::Time64MicrosecondType>().value(row);
            match format {
                FieldFormat::Text => encoder.encode_field(&text_output::time_text(micros)),
                FieldFormat::Binary => {
                    let time = text_output::naive_time(micros)
                        .ok_or_else(|| internal(format!("time of day out of range: {micros}")))?;
                    encoder.encode_field(&time)
                }
            }
        }
        DataType::List(item) => {
            let vector = [INT2VECTOR_ITEM, OIDVECTOR_ITEM].contains(&item.name().as_str());
            encode_list(encoder, &column.as_list::<i32>().value(row), vector, format)
        }
        _ => encoder.encode_field(&column.as_string::<i32>().value(row)),
    }
}

/// Encodes one array value (a list whose element type `array_type` maps),
/// or with `vector` one int2vector or oidvector.
fn encode_list(encoder: &mut DataRowEncoder, items: &ArrayRef, vector: bool, format: FieldFormat) -> PgWireResult<()> {
    macro_rules! elements {
        ($array:ty, $convert:expr) => {{
            let array = items.as_any().downcast_ref::<$array>().expect("type checked");
            #[allow(clippy::redundant_closure_call)]
            let values: Vec<_> =
                (0..array.len()).map(|i| array.is_valid(i).then(|| ($convert)(array.value(i)))).collect();
            encoder.encode_field(&values)
        }};
    }
    if format == FieldFormat::Text {
        // Encoded as text: pgwire would quote a string sent as an array type.
        let options = pgwire::types::format::FormatOptions::default();
        let text = if vector { vector_text(items)? } else { array_text(items)? };
        return encoder.encode_field_with_type_and_format(&text, &Type::TEXT, format, &options);
    }
    match items.data_type() {
        DataType::Boolean => {
            let array = items.as_boolean();
            let values: Vec<_> = (0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i))).collect();
            encoder.encode_field(&values)
        }
        DataType::Int16 => elements!(Int16Array, |v: i16| v),
        DataType::Int32 => elements!(Int32Array, |v: i32| v),
        DataType::Int64 => elements!(Int64Array, |v: i64| v),
        DataType::Float32 => elements!(Float32Array, |v: f32| v),
        DataType::Float64 => elements!(Float64Array, |v: f64| v),
        _ => {
            let array = items.as_string::<i32>();
            let values: Vec<_> = (0..array.len()).map(|i| array.is_valid(i).then(|| array.value(i))).collect();
            encoder.encode_field(&values)
        }
    }
}

/// PostgreSQL's text form of a one-dimensional array (see `text_output::array_text`).
fn array_text(items: &ArrayRef) -> PgWireResult<String> {
    text_output::array_text(items).map_err(|e| internal(format!("cannot encode array: {e}")))
}

/// The text form of an int2vector or oidvector: the numbers separated by spaces.
fn vector_text(items: &ArrayRef) -> PgWireResult<String> {
    let texts = cast(items, &DataType::Utf8).map_err(|e| internal(format!("cannot encode vector: {e}")))?;
    let texts = texts.as_string::<i32>();
    Ok((0..texts.len()).map(|i| if texts.is_valid(i) { texts.value(i) } else { "0" }).collect::<Vec<_>>().join(" "))
}

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn encode_decimal(encoder: &mut DataRowEncoder, value: i128, scale: i8) -> PgWireResult<()> {
    let scale_u32 = u32::try_from(scale).unwrap_or(0);
    match Decimal::try_from_i128_with_scale(value, scale_u32) {
        Ok(decimal) => encoder.encode_field(&decimal),
        // Beyond rust_decimal's 96 bits: send the exact text form.
        Err(_) => encoder.encode_field(&format_decimal(value, scale)),
    }
}

fn format_decimal(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    let scale = usize::try_from(scale).unwrap_or(0);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

fn bad_parameter(index: usize, pg: &Type, reason: impl std::fmt::Display) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "22P02".into(),
        format!("invalid value for parameter ${} of type {}: {reason}", index + 1, pg.name()),
    )))
}

/// Decodes the bound parameters of `portal` into scalars of the declared types.
pub fn decode_parameters<S: Clone + Send + Sync + 'static>(
    portal: &Portal<S>,
    types: &[Type],
) -> PgWireResult<Vec<ScalarValue>> {
    (0..portal.parameter_len())
        .map(|index| {
            let pg = types.get(index).cloned().unwrap_or(Type::UNKNOWN);
            decode_parameter(portal, index, &pg)
        })
        .collect()
}

fn decode_parameter<S: Clone + Send + Sync + 'static>(
    portal: &Portal<S>,
    index: usize,
    pg: &Type,
) -> PgWireResult<ScalarValue> {
    let value = match *pg {
        Type::BOOL => ScalarValue::Boolean(portal.parameter::<bool>(index, pg)?),
        Type::INT2 => ScalarValue::Int16(portal.parameter::<i16>(index, pg)?),
        Type::INT4 => ScalarValue::Int32(portal.parameter::<i32>(index, pg)?),
        Type::INT8 => ScalarValue::Int64(portal.parameter::<i64>(index, pg)?),
        Type::FLOAT4 => ScalarValue::Float32(portal.parameter::<f32>(index, pg)?),
        Type::FLOAT8 => ScalarValue::Float64(portal.parameter::<f64>(index, pg)?),
        Type::NUMERIC => match portal.parameter::<Decimal>(index, pg)? {
            None => ScalarValue::Decimal128(None, 38, 10),
            Some(mut decimal) => {
                decimal.rescale(10);
                ScalarValue::Decimal128(Some(decimal.mantissa()), 38, 10)
            }
        },
        Type::DATE => {
            let date = portal.parameter::<NaiveDate>(index, pg)?;
            ScalarValue::Date32(date.map(|d| d.num_days_from_ce_days() - UNIX_EPOCH_DAYS_FROM_CE))
        }
        Type::UUID => {
            let raw = portal.parameters.get(index).cloned().flatten();
            let binary = portal.parameter_format.format_for(index) == FieldFormat::Binary;
            let text = match raw {
                None => None,
                Some(bytes) if binary => {
                    let bytes: [u8; 16] =
                        bytes.as_ref().try_into().map_err(|_| bad_parameter(index, pg, "a uuid is 16 bytes"))?;
                    Some(borealis_sql::types::uuid_text(&bytes))
                }
                Some(bytes) => {
                    let text = std::str::from_utf8(&bytes).map_err(|e| bad_parameter(index, pg, e))?;
                    Some(borealis_sql::types::uuid_canonical(text).map_err(|e| bad_parameter(index, pg, e.message()))?)
                }
            };
            ScalarValue::Utf8(text)
        }
        Type::TIME => {
            let time = portal.parameter::<chrono::NaiveTime>(index, pg)?;
            ScalarValue::Time64Microsecond(
                time.map(|t| i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1_000)),
            )
        }
        Type::TIMESTAMP => {
            let timestamp = portal.parameter::<NaiveDateTime>(index, pg)?;
            ScalarValue::TimestampMicrosecond(timestamp.map(|t| t.and_utc().timestamp_micros()), None)
        }
        // Binary format, or text pgwire reads; other text as PostgreSQL reads it.
        Type::TIMESTAMPTZ => {
            let micros = match portal.parameter::<chrono::DateTime<chrono::FixedOffset>>(index, pg) {
                Ok(at) => at.map(|at| at.timestamp_micros()),
                Err(_) => {
                    match portal.parameter::<String>(index, &Type::TEXT).map_err(|e| bad_parameter(index, pg, e))? {
                        Some(text) => Some(
                            borealis_sql::datetime::timestamp_micros(&text, true)
                                .map_err(|e| bad_parameter(index, pg, e.message()))?,
                        ),
                        None => None,
                    }
                }
            };
            ScalarValue::TimestampMicrosecond(micros, Some(borealis_sql::types::UTC.into()))
        }
        // Binary format: the bytes; text format: `\x` and hex digits.
        Type::BYTEA => {
            ScalarValue::Binary(portal.parameter::<Vec<u8>>(index, pg).map_err(|e| bad_parameter(index, pg, e))?)
        }
        _ => match portal.parameter::<String>(index, &Type::TEXT) {
            Ok(text) => ScalarValue::Utf8(text),
            Err(e) => return Err(bad_parameter(index, pg, e)),
        },
    };
    Ok(value)
}

/// chrono's day number of a date counted from 0001-01-01 as day 1.
trait DaysFromCe {
    fn num_days_from_ce_days(&self) -> i32;
}

impl DaysFromCe for NaiveDate {
    fn num_days_from_ce_days(&self) -> i32 {
        chrono::Datelike::num_days_from_ce(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(format_decimal(12345, 2), "123.45");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(7, 0), "7");
    }

    #[test]
    fn arrays_print_as_postgres() {
        let texts: ArrayRef =
            Arc::new(arrow::array::StringArray::from(vec![Some("id"), None, Some("a b"), Some("q\"")]));
        assert_eq!(array_text(&texts).unwrap(), r#"{id,NULL,"a b","q\""}"#);
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        assert_eq!(array_text(&bools).unwrap(), "{t,f}");
        let ints: ArrayRef = Arc::new(Int16Array::from(vec![1, 2]));
        assert_eq!(array_text(&ints).unwrap(), "{1,2}");
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Int16, true)));
        assert_eq!(pg_type(&list), Type::INT2_ARRAY);
        assert_eq!(vector_text(&ints).unwrap(), "1 2");
        let vector = DataType::List(Arc::new(Field::new(INT2VECTOR_ITEM, DataType::Int16, true)));
        assert_eq!(pg_type(&vector), Type::INT2_VECTOR);
    }

    #[test]
    fn every_arrow_type_has_a_pg_type() {
        assert_eq!(pg_type(&DataType::Int32), Type::INT4);
        assert_eq!(pg_type(&DataType::Utf8View), Type::TEXT);
        assert_eq!(pg_type(&DataType::Decimal128(10, 2)), Type::NUMERIC);
        assert_eq!(pg_type(&DataType::Timestamp(TimeUnit::Microsecond, None)), Type::TIMESTAMP);
    }

    #[test]
    fn declared_types_describe_as_themselves() {
        // A parameter declared as T and selected back is described as T.
        for pg in [
            Type::BOOL,
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::FLOAT4,
            Type::FLOAT8,
            Type::NUMERIC,
            Type::DATE,
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::BYTEA,
        ] {
            let arrow = arrow_type(&pg).unwrap_or_else(|| panic!("{pg} has an Arrow type"));
            assert_eq!(pg_type(&arrow), pg);
        }
        assert_eq!(arrow_type(&Type::VARCHAR), Some(DataType::Utf8));
        assert_eq!(arrow_type(&Type::UNKNOWN), None, "left to inference");
    }

    #[test]
    fn unix_epoch_offset_is_right() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        assert_eq!(epoch.num_days_from_ce_days(), UNIX_EPOCH_DAYS_FROM_CE);
    }
}
