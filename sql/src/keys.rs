//! Index keys: an order-preserving ("memcomparable") byte encoding of column
//! values, so that a B+tree compares keys as plain byte strings.
//!
//! Each column of a key is encoded as a marker byte, then the value:
//! - `0x01` + value for a non-NULL value, `0x02` for NULL, so NULLs sort
//!   after every value (PostgreSQL's default `NULLS LAST` for ascending keys);
//! - integers, dates and timestamps: big endian with the sign bit flipped;
//! - numeric: the scaled i128 of the column's type, likewise;
//! - floats: IEEE bits, all flipped for negatives, sign bit set for positives
//!   (-0 is encoded as +0, NaN sorts above +Infinity as in PostgreSQL);
//! - booleans: one byte 0 or 1;
//! - text: the UTF-8 bytes with each 0x00 escaped as 0x00 0xFF, then the
//!   terminator 0x00 0x00 (byte order, which is the C collation); bytea
//!   likewise;
//! - uuid: its 16 bytes; time: as an integer (microseconds);
//! - interval: its span as PostgreSQL compares it (a month is 30 days, a
//!   day 24 hours), in microseconds, as an i128 integer.
//!
//! Arrays have no key encoding: no index covers an array column.
//!
//! Every column's encoding is self-delimiting, so the encoding of a key's
//! leading columns is a byte prefix of the whole key's, and comparing two
//! encoded keys compares their columns in order.

use crate::error::SqlError;
use crate::row::column_slices;
use crate::types::SqlType;
use datafusion::common::ScalarValue;

const NOT_NULL: u8 = 0x01;
const NULL: u8 = 0x02;

/// The key of a stored row for `columns` of `types`, and whether any of its
/// columns is NULL (NULLs never conflict in a unique index).
pub fn row_key(types: &[SqlType], columns: &[usize], tuple: &[u8]) -> Result<(Vec<u8>, bool), SqlError> {
    let slices = column_slices(types, tuple)?;
    let mut out = Vec::with_capacity(columns.len() * 9);
    let mut has_null = false;
    for &column in columns {
        match slices.get(column).copied().flatten() {
            Some(stored) => {
                out.push(NOT_NULL);
                encode_stored(types[column], stored, &mut out)?;
            }
            None => {
                out.push(NULL);
                has_null = true;
            }
        }
    }
    Ok((out, has_null))
}

/// Appends the key encoding of a stored value (the row format's bytes).
fn encode_stored(ty: SqlType, stored: &[u8], out: &mut Vec<u8>) -> Result<(), SqlError> {
    let corrupt = || SqlError::corrupt(format_args!("stored {ty} value of {} bytes", stored.len()));
    match ty {
        SqlType::Int2 => out.extend_from_slice(&signed_be(i16::from_le_bytes(fixed(stored).ok_or_else(corrupt)?))),
        SqlType::Int4 | SqlType::Date => {
            out.extend_from_slice(&signed_be(i32::from_le_bytes(fixed(stored).ok_or_else(corrupt)?)))
        }
        SqlType::Int8 | SqlType::Timestamp | SqlType::Timestamptz => {
            out.extend_from_slice(&signed_be(i64::from_le_bytes(fixed(stored).ok_or_else(corrupt)?)))
        }
        SqlType::Numeric { .. } => {
            out.extend_from_slice(&signed_be(i128::from_le_bytes(fixed(stored).ok_or_else(corrupt)?)))
        }
        SqlType::Float4 => out.extend_from_slice(&f32_key(f32::from_le_bytes(fixed(stored).ok_or_else(corrupt)?))),
        SqlType::Float8 => out.extend_from_slice(&f64_key(f64::from_le_bytes(fixed(stored).ok_or_else(corrupt)?))),
        SqlType::Bool => out.push(u8::from(*stored.first().ok_or_else(corrupt)? != 0)),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Json | SqlType::Jsonb | SqlType::Bytea => {
            text_key(stored, out)
        }
        SqlType::Uuid => out.extend_from_slice(stored),
        SqlType::Time => out.extend_from_slice(&signed_be(i64::from_le_bytes(fixed(stored).ok_or_else(corrupt)?))),
        SqlType::Interval => {
            let bytes: [u8; 16] = fixed(stored).ok_or_else(corrupt)?;
            let months = i32::from_le_bytes(fixed(&bytes[..4]).ok_or_else(corrupt)?);
            let days = i32::from_le_bytes(fixed(&bytes[4..8]).ok_or_else(corrupt)?);
            let nanoseconds = i64::from_le_bytes(fixed(&bytes[8..]).ok_or_else(corrupt)?);
            out.extend_from_slice(&signed_be(interval_span(months, days, nanoseconds)));
        }
        SqlType::Array(_) => return Err(not_indexable(ty)),
    }
    Ok(())
}

/// The key encoding (marker included) of `value` as a value of column type
/// `ty`, or None if the value is not exactly representable in that type (a
/// predicate with such a literal cannot use the index). char(n) columns
/// never use an index: their stored values are blank-padded.
pub fn scalar_key(ty: SqlType, value: &ScalarValue) -> Option<Vec<u8>> {
    if value.is_null() {
        return None;
    }
    let target = ty.arrow_type();
    let cast = value.cast_to(&target).ok()?;
    // Refuse lossy casts (1.5 to an integer column, a long string to varchar).
    if value.data_type() != target && cast.cast_to(&value.data_type()).ok()? != *value {
        return None;
    }
    let mut out = vec![NOT_NULL];
    match (ty, &cast) {
        (SqlType::Int2, ScalarValue::Int16(Some(v))) => out.extend_from_slice(&signed_be(*v)),
        (SqlType::Int4, ScalarValue::Int32(Some(v))) | (SqlType::Date, ScalarValue::Date32(Some(v))) => {
            out.extend_from_slice(&signed_be(*v))
        }
        (SqlType::Int8, ScalarValue::Int64(Some(v)))
        | (SqlType::Timestamp, ScalarValue::TimestampMicrosecond(Some(v), None))
        | (SqlType::Timestamptz, ScalarValue::TimestampMicrosecond(Some(v), Some(_))) => {
            out.extend_from_slice(&signed_be(*v))
        }
        (SqlType::Numeric { .. }, ScalarValue::Decimal128(Some(v), _, _)) => out.extend_from_slice(&signed_be(*v)),
        (SqlType::Float4, ScalarValue::Float32(Some(v))) => out.extend_from_slice(&f32_key(*v)),
        (SqlType::Float8, ScalarValue::Float64(Some(v))) => out.extend_from_slice(&f64_key(*v)),
        (SqlType::Bool, ScalarValue::Boolean(Some(v))) => out.push(u8::from(*v)),
        (SqlType::Text | SqlType::Varchar(_), ScalarValue::Utf8(Some(v))) => text_key(v.as_bytes(), &mut out),
        (SqlType::Uuid, ScalarValue::Utf8(Some(v))) => out.extend_from_slice(&crate::types::uuid_bytes(v).ok()?),
        (SqlType::Bytea, ScalarValue::Binary(Some(v))) => text_key(v, &mut out),
        (SqlType::Time, ScalarValue::Time64Microsecond(Some(v))) => out.extend_from_slice(&signed_be(*v)),
        (SqlType::Interval, ScalarValue::IntervalMonthDayNano(Some(v))) => {
            out.extend_from_slice(&signed_be(interval_span(v.months, v.days, v.nanoseconds)))
        }
        _ => return None,
    }
    Some(out)
}

/// An interval's span in microseconds, as PostgreSQL orders intervals.
fn interval_span(months: i32, days: i32, nanoseconds: i64) -> i128 {
    const DAY_MICROS: i128 = 86_400_000_000;
    (i128::from(months) * 30 + i128::from(days)) * DAY_MICROS + i128::from(nanoseconds / 1_000)
}

/// 0A000 for an index over a column of type `ty`.
pub fn not_indexable(ty: SqlType) -> SqlError {
    SqlError::unsupported(format_args!("an index on a column of type {ty}"))
}

/// Whether an index can cover a column of type `ty`.
pub fn is_indexable(ty: SqlType) -> bool {
    !matches!(ty, SqlType::Array(_))
}

fn fixed<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.try_into().ok()
}

/// Big-endian bytes of a signed integer with its sign bit flipped, so that
/// byte order is numeric order.
trait SignedKey {
    fn key_bytes(self) -> Vec<u8>;
}

macro_rules! signed_key {
    ($($signed:ty => $unsigned:ty),*) => {$(
        impl SignedKey for $signed {
            fn key_bytes(self) -> Vec<u8> {
                ((self as $unsigned) ^ (1 << (<$unsigned>::BITS - 1))).to_be_bytes().to_vec()
            }
        }
    )*};
}
signed_key!(i16 => u16, i32 => u32, i64 => u64, i128 => u128);

fn signed_be(value: impl SignedKey) -> Vec<u8> {
    value.key_bytes()
}

fn f32_key(value: f32) -> [u8; 4] {
    let value = if value == 0.0 { 0.0 } else { value };
    let value = if value.is_nan() { f32::NAN } else { value };
    let bits = value.to_bits();
    let ordered = if bits >> 31 == 1 { !bits } else { bits | 1 << 31 };
    ordered.to_be_bytes()
}

fn f64_key(value: f64) -> [u8; 8] {
    let value = if value == 0.0 { 0.0 } else { value };
    let value = if value.is_nan() { f64::NAN } else { value };
    let bits = value.to_bits();
    let ordered = if bits >> 63 == 1 { !bits } else { bits | 1 << 63 };
    ordered.to_be_bytes()
}

fn text_key(text: &[u8], out: &mut Vec<u8>) {
    for &byte in text {
        out.push(byte);
        if byte == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ty: SqlType, value: ScalarValue) -> Vec<u8> {
        scalar_key(ty, &value).expect("representable")
    }

    #[test]
    fn integers_sort_numerically() {
        let values = [i64::MIN, -300, -1, 0, 1, 255, 256, i64::MAX];
        let keys: Vec<Vec<u8>> = values.iter().map(|&v| key(SqlType::Int8, ScalarValue::Int64(Some(v)))).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
    }

    #[test]
    fn floats_sort_numerically_with_nan_last_and_one_zero() {
        let values = [f64::NEG_INFINITY, -2.5, -1e-300, 0.0, 1e-300, 3.0, f64::INFINITY, f64::NAN];
        let keys: Vec<Vec<u8>> = values.iter().map(|&v| key(SqlType::Float8, ScalarValue::Float64(Some(v)))).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
        assert_eq!(key(SqlType::Float8, ScalarValue::Float64(Some(-0.0))), keys[3]);
    }

    #[test]
    fn text_sorts_bytewise_and_is_self_delimiting() {
        let texts = ["", "a", "a\0", "a\0b", "ab", "b"];
        let keys: Vec<Vec<u8>> = texts.iter().map(|t| key(SqlType::Text, ScalarValue::from(*t))).collect();
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "{keys:?}");
        // ("a", 2) < ("ab", 1): the first column decides, whatever follows.
        let mut first = key(SqlType::Text, ScalarValue::from("a"));
        first.extend(key(SqlType::Int4, ScalarValue::Int32(Some(2))));
        let mut second = key(SqlType::Text, ScalarValue::from("ab"));
        second.extend(key(SqlType::Int4, ScalarValue::Int32(Some(1))));
        assert!(first < second);
    }

    #[test]
    fn literals_are_cast_to_the_column_type_unless_lossy() {
        assert_eq!(key(SqlType::Int4, ScalarValue::Int64(Some(7))), key(SqlType::Int4, ScalarValue::Int32(Some(7))));
        assert_eq!(scalar_key(SqlType::Int4, &ScalarValue::Float64(Some(1.5))), None);
        assert_eq!(scalar_key(SqlType::Int2, &ScalarValue::Int64(Some(100_000))), None);
        assert_eq!(scalar_key(SqlType::Int4, &ScalarValue::Int32(None)), None);
        let numeric = SqlType::Numeric { precision: 10, scale: 2 };
        assert_eq!(key(numeric, ScalarValue::Int64(Some(3))), key(numeric, ScalarValue::Decimal128(Some(300), 10, 2)));
    }

    #[test]
    fn stored_rows_and_literals_encode_alike_and_nulls_sort_last() {
        use crate::catalog::{ColumnDef, TableDef, TableId};
        use borealis_storage::ids::PageId;
        use datafusion::arrow::array::{ArrayRef, Int32Array, StringArray};
        use std::sync::Arc;
        let types = [SqlType::Int4, SqlType::Text];
        let def = TableDef {
            id: TableId(1),
            name: "t".into(),
            columns: types.iter().enumerate().map(|(i, ty)| ColumnDef::new(format!("c{i}"), *ty, true)).collect(),
            primary_key: Vec::new(),
            indexes: Vec::new(),
            first_page: PageId(0),
            dropped_attnums: Vec::new(),
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(5), None])),
            Arc::new(StringArray::from(vec![Some("x"), Some("y")])),
        ];
        let row = crate::row::encode_row(&def, &arrays, 0).unwrap();
        let (stored, has_null) = row_key(&types, &[0, 1], &row).unwrap();
        let mut expected = key(SqlType::Int4, ScalarValue::Int32(Some(5)));
        expected.extend(key(SqlType::Text, ScalarValue::from("x")));
        assert_eq!((stored.clone(), has_null), (expected, false));
        let null_row = crate::row::encode_row(&def, &arrays, 1).unwrap();
        let (null_key, has_null) = row_key(&types, &[0, 1], &null_row).unwrap();
        assert!(has_null);
        assert!(null_key > stored);
    }
}
