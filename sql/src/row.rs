//! Stored row format, and conversion between rows and Arrow arrays.
//!
//! A row (one page tuple) is:
//! | bytes | field |
//! | 2 | column count n (u16 LE); columns past n read as NULL, so a later ADD COLUMN needs no rewrite |
//! | ceil(n/8) | null bitmap, bit i set = column i is NULL |
//! | ... | each non-NULL value in column order: fixed-width little-endian, or u32 LE length + bytes for text, bytea and arrays |
//!
//! An array value's bytes are: element count (u32 LE), a null bitmap over
//! the elements, and each non-NULL element as a column of the element type
//! would store it.
//!
//! Writes go Arrow arrays -> [`encode_row`] (which enforces NOT NULL and
//! varchar lengths); scans go tuple -> [`RowDecoder`] -> Arrow arrays.

use crate::catalog::TableDef;
use crate::error::{SqlError, sqlstate};
use crate::types::SqlType;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, IntervalMonthDayNanoBuilder, ListArray, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{
    Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNano,
    IntervalMonthDayNanoType, Time64MicrosecondType, TimestampMicrosecondType,
};
use std::ops::Range;
use std::sync::Arc;

/// Bytes of the column count at the start of a row.
const COUNT_BYTES: usize = 2;
/// Bytes of a text value's length prefix.
const TEXT_LENGTH_BYTES: usize = 4;

/// Encodes row `row` of `arrays` (one per column of `table`, already of the
/// columns' Arrow types). Refuses NULL in NOT NULL columns (23502) and
/// over-long varchar values (22001).
pub fn encode_row(table: &TableDef, arrays: &[ArrayRef], row: usize) -> Result<Vec<u8>, SqlError> {
    let count = table.columns.len();
    let bitmap_bytes = count.div_ceil(8);
    let mut out = Vec::with_capacity(COUNT_BYTES + bitmap_bytes + count * 8);
    out.extend_from_slice(&(count as u16).to_le_bytes());
    out.resize(COUNT_BYTES + bitmap_bytes, 0);
    for (index, (column, array)) in table.columns.iter().zip(arrays).enumerate() {
        if array.is_null(row) {
            if !column.nullable {
                return Err(SqlError::new(
                    sqlstate::NOT_NULL_VIOLATION,
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                        column.name, table.name
                    ),
                ));
            }
            out[COUNT_BYTES + index / 8] |= 1 << (index % 8);
            continue;
        }
        encode_value(column.ty, array.as_ref(), row, &mut out)?;
    }
    Ok(out)
}

fn encode_value(ty: SqlType, array: &dyn Array, row: usize, out: &mut Vec<u8>) -> Result<(), SqlError> {
    match ty {
        SqlType::Int2 => out.extend_from_slice(&array.as_primitive::<Int16Type>().value(row).to_le_bytes()),
        SqlType::Int4 => out.extend_from_slice(&array.as_primitive::<Int32Type>().value(row).to_le_bytes()),
        SqlType::Int8 => out.extend_from_slice(&array.as_primitive::<Int64Type>().value(row).to_le_bytes()),
        SqlType::Float4 => out.extend_from_slice(&array.as_primitive::<Float32Type>().value(row).to_le_bytes()),
        SqlType::Float8 => out.extend_from_slice(&array.as_primitive::<Float64Type>().value(row).to_le_bytes()),
        SqlType::Bool => out.push(u8::from(array.as_boolean().value(row))),
        SqlType::Numeric { .. } => {
            out.extend_from_slice(&array.as_primitive::<Decimal128Type>().value(row).to_le_bytes())
        }
        SqlType::Date => out.extend_from_slice(&array.as_primitive::<Date32Type>().value(row).to_le_bytes()),
        SqlType::Timestamp | SqlType::Timestamptz => {
            out.extend_from_slice(&array.as_primitive::<TimestampMicrosecondType>().value(row).to_le_bytes())
        }
        SqlType::Time => out.extend_from_slice(&array.as_primitive::<Time64MicrosecondType>().value(row).to_le_bytes()),
        SqlType::Interval => {
            let interval = array.as_primitive::<IntervalMonthDayNanoType>().value(row);
            out.extend_from_slice(&interval.months.to_le_bytes());
            out.extend_from_slice(&interval.days.to_le_bytes());
            out.extend_from_slice(&interval.nanoseconds.to_le_bytes());
        }
        SqlType::Uuid => out.extend_from_slice(&crate::types::uuid_bytes(array.as_string::<i32>().value(row))?),
        SqlType::Bytea => {
            let bytes = array.as_binary::<i32>().value(row);
            let length = u32::try_from(bytes.len()).map_err(|_| too_big(bytes.len()))?;
            out.extend_from_slice(&length.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        SqlType::Array(element) => {
            let elements = array.as_list::<i32>().value(row);
            let at = out.len();
            out.extend_from_slice(&[0; TEXT_LENGTH_BYTES]);
            let count = elements.len();
            out.extend_from_slice(&u32::try_from(count).map_err(|_| too_big(count))?.to_le_bytes());
            let bitmap = out.len();
            out.resize(bitmap + count.div_ceil(8), 0);
            for index in 0..count {
                if elements.is_null(index) {
                    out[bitmap + index / 8] |= 1 << (index % 8);
                } else {
                    encode_value(element.scalar(), elements.as_ref(), index, out)?;
                }
            }
            let length = out.len() - at - TEXT_LENGTH_BYTES;
            let length = u32::try_from(length).map_err(|_| too_big(length))?;
            out[at..at + TEXT_LENGTH_BYTES].copy_from_slice(&length.to_le_bytes());
        }
        SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Json | SqlType::Jsonb => {
            let text = array.as_string::<i32>().value(row);
            let padded;
            let text = match ty {
                SqlType::Varchar(max) if text.chars().count() > max as usize => {
                    return Err(SqlError::new(
                        sqlstate::STRING_DATA_RIGHT_TRUNCATION,
                        format!("value too long for type character varying({max})"),
                    ));
                }
                SqlType::Char(length) => {
                    padded = blank_padded(text, length as usize)?;
                    padded.as_str()
                }
                SqlType::Json => {
                    padded = crate::json::Kind::Json.input(text)?;
                    padded.as_str()
                }
                SqlType::Jsonb => {
                    padded = crate::json::Kind::Jsonb.input(text)?;
                    padded.as_str()
                }
                _ => text,
            };
            let length = u32::try_from(text.len()).map_err(|_| too_big(text.len()))?;
            out.extend_from_slice(&length.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
    Ok(())
}

/// `text` as char(`length`): blank-padded; excess characters may only be blanks.
fn blank_padded(text: &str, length: usize) -> Result<String, SqlError> {
    let count = text.chars().count();
    if count <= length {
        let mut padded = String::with_capacity(text.len() + length - count);
        padded.push_str(text);
        padded.extend(std::iter::repeat_n(' ', length - count));
        return Ok(padded);
    }
    let (cut, rest) = text.split_at(text.char_indices().nth(length).map_or(text.len(), |(at, _)| at));
    if rest.chars().all(|c| c == ' ') {
        return Ok(cut.to_string());
    }
    Err(SqlError::new(sqlstate::STRING_DATA_RIGHT_TRUNCATION, format!("value too long for type character({length})")))
}

/// 54000 for a row larger than a page tuple can be.
pub fn too_big(size_bytes: usize) -> SqlError {
    SqlError::new(
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!("row is too big: size {size_bytes}, maximum size {}", borealis_storage::page::TUPLE_SIZE_MAX),
    )
}

/// The stored bytes of each column of `tuple` (None = NULL), for `types.len()` columns.
pub fn column_slices<'a>(types: &[SqlType], tuple: &'a [u8]) -> Result<Vec<Option<&'a [u8]>>, SqlError> {
    let mut ranges = Vec::with_capacity(types.len());
    column_ranges(types, tuple, &mut ranges)?;
    Ok(ranges.into_iter().map(|range| range.map(|range| &tuple[range])).collect())
}

/// Where each of the first `types.len()` columns of `tuple` is stored
/// (None = NULL), into `out` (cleared first): a scan reuses one `out` for
/// all its rows, and decodes only up to the last column it outputs.
pub fn column_ranges(types: &[SqlType], tuple: &[u8], out: &mut Vec<Option<Range<usize>>>) -> Result<(), SqlError> {
    let corrupt = || SqlError::corrupt("row shorter than its header says");
    out.clear();
    let count_bytes = tuple.get(..COUNT_BYTES).ok_or_else(corrupt)?;
    let stored = u16::from_le_bytes([count_bytes[0], count_bytes[1]]) as usize;
    let bitmap = tuple.get(COUNT_BYTES..COUNT_BYTES + stored.div_ceil(8)).ok_or_else(corrupt)?;
    let mut at = COUNT_BYTES + bitmap.len();
    for (index, ty) in types.iter().enumerate() {
        if index >= stored || bitmap[index / 8] & (1 << (index % 8)) != 0 {
            out.push(None);
            continue;
        }
        let width = match ty.fixed_width_bytes() {
            Some(width) => width,
            None => {
                let prefix = tuple.get(at..at + TEXT_LENGTH_BYTES).ok_or_else(corrupt)?;
                at += TEXT_LENGTH_BYTES;
                u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize
            }
        };
        if at + width > tuple.len() {
            return Err(corrupt());
        }
        out.push(Some(at..at + width));
        at += width;
    }
    Ok(())
}

/// One Arrow builder per output column of a scan.
enum ColumnBuilder {
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Decimal(Decimal128Builder, u8, i8),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Uuid(StringBuilder),
    Binary(BinaryBuilder),
    List(Box<ListColumn>),
    RowAddress(UInt64Builder),
}

/// An array column being built: its elements, and where each row's start.
struct ListColumn {
    element: SqlType,
    elements: ColumnBuilder,
    offsets: Vec<i32>,
    valid: Vec<bool>,
    /// Where each element of the current row is (reused from row to row).
    ranges: Vec<Option<Range<usize>>>,
}

impl ListColumn {
    fn append(&mut self, bytes: &[u8]) -> Result<(), SqlError> {
        let corrupt = || SqlError::corrupt("array value shorter than its header says");
        let count = u32::from_le_bytes(fixed(bytes.get(..4).ok_or_else(corrupt)?)?) as usize;
        let bitmap = bytes.get(4..4 + count.div_ceil(8)).ok_or_else(corrupt)?;
        let mut at = 4 + bitmap.len();
        self.ranges.clear();
        for index in 0..count {
            if bitmap[index / 8] & (1 << (index % 8)) != 0 {
                self.ranges.push(None);
                continue;
            }
            let width = match self.element.fixed_width_bytes() {
                Some(width) => width,
                None => {
                    let prefix = bytes.get(at..at + TEXT_LENGTH_BYTES).ok_or_else(corrupt)?;
                    at += TEXT_LENGTH_BYTES;
                    u32::from_le_bytes(fixed(prefix)?) as usize
                }
            };
            bytes.get(at..at + width).ok_or_else(corrupt)?;
            self.ranges.push(Some(at..at + width));
            at += width;
        }
        for range in &self.ranges {
            self.elements.append(range.clone().map(|range| &bytes[range]))?;
        }
        let last = *self.offsets.last().expect("offsets start with 0");
        self.offsets.push(last + i32::try_from(count).map_err(|_| corrupt())?);
        self.valid.push(true);
        Ok(())
    }

    fn append_null(&mut self) {
        let last = *self.offsets.last().expect("offsets start with 0");
        self.offsets.push(last);
        self.valid.push(false);
    }

    fn finish(&mut self) -> Result<ArrayRef, SqlError> {
        let field = Arc::new(Field::new_list_field(self.element.arrow_type(), true));
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        let nulls = NullBuffer::from(std::mem::take(&mut self.valid));
        let list = ListArray::try_new(field, offsets, self.elements.finish()?, Some(nulls))
            .map_err(|e| SqlError::internal(format_args!("array column: {e}")))?;
        Ok(Arc::new(list))
    }
}

impl ColumnBuilder {
    fn new(ty: SqlType) -> ColumnBuilder {
        match ty {
            SqlType::Int2 => ColumnBuilder::Int16(Int16Builder::new()),
            SqlType::Int4 => ColumnBuilder::Int32(Int32Builder::new()),
            SqlType::Int8 => ColumnBuilder::Int64(Int64Builder::new()),
            SqlType::Float4 => ColumnBuilder::Float32(Float32Builder::new()),
            SqlType::Float8 => ColumnBuilder::Float64(Float64Builder::new()),
            SqlType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            SqlType::Text | SqlType::Varchar(_) | SqlType::Char(_) | SqlType::Json | SqlType::Jsonb => {
                ColumnBuilder::Text(StringBuilder::new())
            }
            SqlType::Numeric { precision, scale } => ColumnBuilder::Decimal(Decimal128Builder::new(), precision, scale),
            SqlType::Date => ColumnBuilder::Date(Date32Builder::new()),
            SqlType::Timestamp => ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new()),
            SqlType::Timestamptz => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone(crate::types::UTC))
            }
            SqlType::Time => ColumnBuilder::Time(Time64MicrosecondBuilder::new()),
            SqlType::Interval => ColumnBuilder::Interval(IntervalMonthDayNanoBuilder::new()),
            SqlType::Uuid => ColumnBuilder::Uuid(StringBuilder::new()),
            SqlType::Bytea => ColumnBuilder::Binary(BinaryBuilder::new()),
            SqlType::Array(element) => ColumnBuilder::List(Box::new(ListColumn {
                element: element.scalar(),
                elements: ColumnBuilder::new(element.scalar()),
                offsets: vec![0],
                valid: Vec::new(),
                ranges: Vec::new(),
            })),
        }
    }

    fn append(&mut self, value: Option<&[u8]>) -> Result<(), SqlError> {
        let Some(bytes) = value else {
            self.append_null();
            return Ok(());
        };
        match self {
            ColumnBuilder::Int16(b) => b.append_value(i16::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Int32(b) => b.append_value(i32::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Int64(b) => b.append_value(i64::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Float32(b) => b.append_value(f32::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Float64(b) => b.append_value(f64::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Bool(b) => b.append_value(bytes.first().is_some_and(|v| *v != 0)),
            ColumnBuilder::Text(b) => {
                b.append_value(std::str::from_utf8(bytes).map_err(|_| SqlError::corrupt("text is not UTF-8"))?)
            }
            ColumnBuilder::Decimal(b, _, _) => b.append_value(i128::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Date(b) => b.append_value(i32::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Timestamp(b) => b.append_value(i64::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Time(b) => b.append_value(i64::from_le_bytes(fixed(bytes)?)),
            ColumnBuilder::Interval(b) => {
                let bytes: [u8; 16] = fixed(bytes)?;
                let months = i32::from_le_bytes(fixed(&bytes[..4])?);
                let days = i32::from_le_bytes(fixed(&bytes[4..8])?);
                let nanoseconds = i64::from_le_bytes(fixed(&bytes[8..])?);
                b.append_value(IntervalMonthDayNano::new(months, days, nanoseconds));
            }
            ColumnBuilder::Uuid(b) => b.append_value(crate::types::uuid_text(&fixed(bytes)?)),
            ColumnBuilder::Binary(b) => b.append_value(bytes),
            ColumnBuilder::List(list) => list.append(bytes)?,
            ColumnBuilder::RowAddress(b) => b.append_value(u64::from_le_bytes(fixed(bytes)?)),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Int16(b) => b.append_null(),
            ColumnBuilder::Int32(b) => b.append_null(),
            ColumnBuilder::Int64(b) => b.append_null(),
            ColumnBuilder::Float32(b) => b.append_null(),
            ColumnBuilder::Float64(b) => b.append_null(),
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Decimal(b, _, _) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Timestamp(b) => b.append_null(),
            ColumnBuilder::Time(b) => b.append_null(),
            ColumnBuilder::Interval(b) => b.append_null(),
            ColumnBuilder::Uuid(b) => b.append_null(),
            ColumnBuilder::Binary(b) => b.append_null(),
            ColumnBuilder::List(list) => list.append_null(),
            ColumnBuilder::RowAddress(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, SqlError> {
        let array: ArrayRef = match self {
            ColumnBuilder::Int16(b) => Arc::new(b.finish()),
            ColumnBuilder::Int32(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float32(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Decimal(b, precision, scale) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| SqlError::internal(format_args!("decimal builder: {e}")))?,
            ),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
            ColumnBuilder::Interval(b) => Arc::new(b.finish()),
            ColumnBuilder::Uuid(b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(b) => Arc::new(b.finish()),
            ColumnBuilder::List(list) => list.finish()?,
            ColumnBuilder::RowAddress(b) => Arc::new(b.finish()),
        };
        Ok(array)
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], SqlError> {
    bytes.try_into().map_err(|_| SqlError::corrupt("fixed-width value has the wrong length"))
}

/// What a scan outputs, per output column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputColumn {
    /// Column `i` of the table.
    Stored(usize),
    /// The row address ([`crate::heap::RowAddress`] as u64), for UPDATE and DELETE.
    RowAddress,
}

/// Decodes tuples into Arrow arrays for a projection of a table.
pub struct RowDecoder {
    /// The stored columns' types, up to the last one an output needs.
    types: Vec<SqlType>,
    outputs: Vec<OutputColumn>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    /// Where the current row's columns are (reused from row to row).
    ranges: Vec<Option<Range<usize>>>,
}

impl RowDecoder {
    /// A decoder producing `outputs` from rows of columns `types`.
    pub fn new(types: Vec<SqlType>, outputs: Vec<OutputColumn>) -> RowDecoder {
        let builders = outputs
            .iter()
            .map(|output| match output {
                OutputColumn::Stored(column) => ColumnBuilder::new(types[*column]),
                OutputColumn::RowAddress => ColumnBuilder::RowAddress(UInt64Builder::new()),
            })
            .collect();
        let needed = outputs
            .iter()
            .filter_map(|output| match output {
                OutputColumn::Stored(column) => Some(column + 1),
                OutputColumn::RowAddress => None,
            })
            .max()
            .unwrap_or(0);
        let mut types = types;
        types.truncate(needed);
        RowDecoder { types, outputs, builders, rows: 0, ranges: Vec::with_capacity(needed) }
    }

    /// Rows appended since the last `finish`.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one stored row at `address`.
    pub fn append(&mut self, tuple: &[u8], address: u64) -> Result<(), SqlError> {
        column_ranges(&self.types, tuple, &mut self.ranges)?;
        let address_bytes = address.to_le_bytes();
        for (builder, output) in self.builders.iter_mut().zip(&self.outputs) {
            let value = match output {
                OutputColumn::Stored(column) => self.ranges[*column].clone().map(|range| &tuple[range]),
                OutputColumn::RowAddress => Some(&address_bytes[..]),
            };
            builder.append(value)?;
        }
        self.rows += 1;
        Ok(())
    }

    /// The arrays of the rows appended so far; the decoder starts empty again.
    pub fn finish(&mut self) -> Result<Vec<ArrayRef>, SqlError> {
        self.rows = 0;
        self.builders.iter_mut().map(ColumnBuilder::finish).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ColumnDef, TableId};
    use borealis_storage::ids::PageId;
    use datafusion::arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array,
        Int64Array, IntervalMonthDayNanoArray, ListBuilder, StringArray, Time64MicrosecondArray,
        TimestampMicrosecondArray,
    };

    fn table(types: &[SqlType]) -> TableDef {
        let columns = types.iter().enumerate().map(|(i, ty)| ColumnDef::new(format!("c{i}"), *ty, true)).collect();
        TableDef {
            id: TableId(1),
            name: "t".into(),
            columns,
            primary_key: vec![],
            indexes: vec![],
            first_page: PageId(2),
            dropped_attnums: Vec::new(),
        }
    }

    #[test]
    fn every_type_round_trips_with_nulls() {
        let types = [
            SqlType::Int2,
            SqlType::Int4,
            SqlType::Int8,
            SqlType::Float4,
            SqlType::Float8,
            SqlType::Bool,
            SqlType::Text,
            SqlType::Varchar(4),
            SqlType::Numeric { precision: 10, scale: 2 },
            SqlType::Date,
            SqlType::Timestamp,
            SqlType::Timestamptz,
            SqlType::Time,
            SqlType::Interval,
            SqlType::Uuid,
            SqlType::Bytea,
            SqlType::Array(crate::types::Element::Int4),
            SqlType::Array(crate::types::Element::Text),
        ];
        let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        let ints =
            ListArray::from_iter_primitive::<Int32Type, _, _>([Some(vec![Some(1), None, Some(3)]), None, Some(vec![])]);
        let texts = {
            let mut builder = ListBuilder::new(StringBuilder::new());
            builder.append_value([Some("a b"), None]);
            builder.append_value([Some("")]);
            builder.append_null();
            builder.finish()
        };
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int16Array::from(vec![Some(-3), None, Some(i16::MAX)])),
            Arc::new(Int32Array::from(vec![None, Some(7), Some(i32::MIN)])),
            Arc::new(Int64Array::from(vec![Some(1 << 40), Some(0), None])),
            Arc::new(Float32Array::from(vec![Some(1.5), None, Some(-0.25)])),
            Arc::new(Float64Array::from(vec![None, Some(2.5e300), Some(0.0)])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
            Arc::new(StringArray::from(vec![Some(""), Some("héllo"), None])),
            Arc::new(StringArray::from(vec![Some("abcd"), None, Some("é")])),
            Arc::new(Decimal128Array::from(vec![Some(12345), None, Some(-1)]).with_precision_and_scale(10, 2).unwrap()),
            Arc::new(Date32Array::from(vec![Some(19000), None, Some(-5)])),
            Arc::new(TimestampMicrosecondArray::from(vec![None, Some(1_700_000_000_000_000), Some(-1)])),
            Arc::new(TimestampMicrosecondArray::from(vec![Some(0), None, Some(-1)]).with_timezone(crate::types::UTC)),
            Arc::new(Time64MicrosecondArray::from(vec![Some(0), Some(86_399_999_999), None])),
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(-3, 0, 0)),
                None,
                Some(IntervalMonthDayNano::new(1, 2, 3_000)),
            ])),
            Arc::new(StringArray::from(vec![Some(uuid), None, Some("00000000-0000-0000-0000-000000000000")])),
            Arc::new(BinaryArray::from(vec![Some(&[0u8, 255][..]), Some(&[][..]), None])),
            Arc::new(ints),
            Arc::new(texts),
        ];
        let def = table(&types);
        let outputs: Vec<OutputColumn> = (0..types.len()).map(OutputColumn::Stored).collect();
        let mut decoder = RowDecoder::new(def.types(), outputs);
        for row in 0..3 {
            let tuple = encode_row(&def, &arrays, row).unwrap();
            decoder.append(&tuple, row as u64).unwrap();
        }
        let decoded = decoder.finish().unwrap();
        for (want, got) in arrays.iter().zip(&decoded) {
            assert_eq!(want.as_ref(), got.as_ref());
        }
    }

    #[test]
    fn constraints_are_enforced_at_encoding() {
        let mut def = table(&[SqlType::Varchar(2), SqlType::Int4]);
        def.columns[1].nullable = false;
        let long: ArrayRef = Arc::new(StringArray::from(vec!["abc"]));
        let ok: ArrayRef = Arc::new(StringArray::from(vec!["ab"]));
        let null: ArrayRef = Arc::new(Int32Array::from(vec![None]));
        let one: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        assert_eq!(encode_row(&def, &[long, Arc::clone(&one)], 0).unwrap_err().sqlstate(), "22001");
        assert_eq!(encode_row(&def, &[Arc::clone(&ok), null], 0).unwrap_err().sqlstate(), "23502");
        assert!(encode_row(&def, &[ok, one], 0).is_ok());
    }

    #[test]
    fn rows_with_fewer_stored_columns_read_trailing_nulls_and_garbage_is_refused() {
        let def = table(&[SqlType::Int4]);
        let tuple = encode_row(&def, &[Arc::new(Int32Array::from(vec![5])) as ArrayRef], 0).unwrap();
        let slices = column_slices(&[SqlType::Int4, SqlType::Text], &tuple).unwrap();
        assert_eq!(slices, vec![Some(&5i32.to_le_bytes()[..]), None]);
        assert_eq!(column_slices(&[SqlType::Int8], &tuple).unwrap_err().sqlstate(), "XX001");
        assert_eq!(column_slices(&[SqlType::Int4], &[9]).unwrap_err().sqlstate(), "XX001");
    }
}
