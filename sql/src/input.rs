//! PostgreSQL's text input for the column types Arrow's casts read
//! differently or not at all: bytea (`\x00ff`, escape format), uuid (any
//! case, braces, hyphens anywhere between groups of four), time of day,
//! interval (`1 day 02:03:04`, `-3 mons`, `2 hours ago`) and arrays
//! (`{1,2,NULL}`, `{"a b",c}`). Used where text becomes a column value:
//! INSERT and UPDATE values, COPY FROM.

use crate::error::{SqlError, sqlstate};
use crate::types::SqlType;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, IntervalMonthDayNanoBuilder, ListArray, StringArray, StringBuilder,
    Time64MicrosecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano};
use std::sync::Arc;

/// `texts` (Utf8) as values of `ty`, if `ty` is one whose text input is
/// read here; None for the others (Arrow's cast reads them).
pub fn from_text(texts: &ArrayRef, ty: SqlType) -> Option<Result<ArrayRef, SqlError>> {
    if !matches!(texts.data_type(), DataType::Utf8) {
        return None;
    }
    let texts = texts.as_string::<i32>();
    Some(match ty {
        SqlType::Bytea => each(texts, BinaryBuilder::new(), |b, t| {
            b.append_value(bytea(t)?);
            Ok(())
        }),
        SqlType::Uuid => each(texts, StringBuilder::new(), |b, t| {
            b.append_value(crate::types::uuid_canonical(t)?);
            Ok(())
        }),
        SqlType::Time => each(texts, Time64MicrosecondBuilder::new(), |b, t| {
            b.append_value(time(t)?);
            Ok(())
        }),
        SqlType::Interval => each(texts, IntervalMonthDayNanoBuilder::new(), |b, t| {
            b.append_value(interval(t)?);
            Ok(())
        }),
        SqlType::Array(element) => array(texts, element.scalar()),
        _ => return None,
    })
}

/// Builds an array of `texts` read one by one by `read` (NULL stays NULL).
fn each<B: NullAppend>(
    texts: &StringArray,
    mut builder: B,
    mut read: impl FnMut(&mut B, &str) -> Result<(), SqlError>,
) -> Result<ArrayRef, SqlError> {
    for text in texts {
        match text {
            Some(text) => read(&mut builder, text)?,
            None => builder.append_null_value(),
        }
    }
    Ok(builder.finish_array())
}

/// The builders [`each`] uses.
trait NullAppend {
    fn append_null_value(&mut self);
    fn finish_array(&mut self) -> ArrayRef;
}

macro_rules! null_append {
    ($($builder:ty),*) => {$(
        impl NullAppend for $builder {
            fn append_null_value(&mut self) {
                self.append_null();
            }
            fn finish_array(&mut self) -> ArrayRef {
                Arc::new(self.finish())
            }
        }
    )*};
}
null_append!(BinaryBuilder, StringBuilder, Time64MicrosecondBuilder, IntervalMonthDayNanoBuilder);

fn invalid(ty: &str, text: &str) -> SqlError {
    SqlError::new(sqlstate::INVALID_TEXT_REPRESENTATION, format!("invalid input syntax for type {ty}: \"{text}\""))
}

/// bytea's input: hex format (`\x` then pairs of hex digits, blanks between
/// pairs allowed) or escape format (`\\` and `\ooo` octal escapes).
pub fn bytea(text: &str) -> Result<Vec<u8>, SqlError> {
    if let Some(hex) = text.strip_prefix("\\x") {
        let digits: Vec<u32> = hex
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| c.to_digit(16).ok_or_else(|| invalid("bytea", text)))
            .collect::<Result<_, _>>()?;
        if !digits.len().is_multiple_of(2) {
            return Err(SqlError::new(
                sqlstate::INVALID_TEXT_REPRESENTATION,
                "invalid hexadecimal data: odd number of digits",
            ));
        }
        return Ok(digits.chunks(2).map(|pair| (pair[0] * 16 + pair[1]) as u8).collect());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            out.push(bytes[at]);
            at += 1;
        } else if bytes.get(at + 1) == Some(&b'\\') {
            out.push(b'\\');
            at += 2;
        } else {
            let octal =
                bytes.get(at + 1..at + 4).filter(|d| d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
            let digits = octal.ok_or_else(|| invalid("bytea", text))?;
            out.push(digits.iter().fold(0u8, |value, digit| value * 8 + (digit - b'0')));
            at += 4;
        }
    }
    Ok(out)
}

/// A time of day, `HH:MM[:SS[.ffffff]]`, as microseconds since midnight (24:00:00 allowed).
pub fn time(text: &str) -> Result<i64, SqlError> {
    let error =
        || SqlError::new(sqlstate::INVALID_DATETIME_FORMAT, format!("invalid input syntax for type time: \"{text}\""));
    let micros = clock(text.trim()).ok_or_else(error)?;
    if !(0..=86_400_000_000).contains(&micros) {
        return Err(SqlError::new(
            sqlstate::DATETIME_FIELD_OVERFLOW,
            format!("date/time field value out of range: \"{text}\""),
        ));
    }
    Ok(micros)
}

/// `H:MM[:SS[.f]]` as microseconds (unsigned), None if it is not that.
fn clock(text: &str) -> Option<i64> {
    let mut parts = text.split(':');
    let hours: i64 = parts.next()?.parse().ok()?;
    let minutes: i64 = parts.next()?.parse().ok()?;
    let seconds = match parts.next() {
        Some(seconds) => seconds_micros(seconds)?,
        None => 0,
    };
    if parts.next().is_some() || minutes >= 60 || seconds >= 60_000_000 || hours < 0 || minutes < 0 {
        return None;
    }
    Some((hours * 3600 + minutes * 60) * 1_000_000 + seconds)
}

/// `SS[.ffffff]` as microseconds (rounded to the microsecond).
fn seconds_micros(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut micros: i64 = whole.parse::<i64>().ok()? * 1_000_000;
    let digits: String = fraction.chars().chain(std::iter::repeat('0')).take(7).collect();
    let seven: i64 = digits.parse().ok()?;
    micros += (seven + 5) / 10;
    Some(micros)
}

/// An interval in PostgreSQL's postgres style: numbers with units
/// (`1 year 2 mons 3 days`, `90 minutes`, `1.5 hours`), a clock part
/// (`02:03:04`, `-01:00`) and `ago`.
pub fn interval(text: &str) -> Result<IntervalMonthDayNano, SqlError> {
    let error = || invalid("interval", text);
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0f64);
    let mut tokens = text.split_whitespace().peekable();
    let mut any = false;
    let mut ago = false;
    while let Some(token) = tokens.next() {
        any = true;
        if token.eq_ignore_ascii_case("ago") {
            ago = true;
            continue;
        }
        if token.contains(':') {
            let (negative, clock_text) = match token.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, token.strip_prefix('+').unwrap_or(token)),
            };
            let value = clock(clock_text).ok_or_else(error)?;
            micros += if negative { -(value as f64) } else { value as f64 };
            continue;
        }
        // A number, its unit either glued to it (`3d`, rare) or the next token.
        let split = token.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(token.len());
        let (number, glued) = token.split_at(split);
        let number: f64 = number.parse().map_err(|_| error())?;
        let unit = if glued.is_empty() { tokens.next().ok_or_else(error)? } else { glued };
        let unit = unit.to_ascii_lowercase();
        let unit = unit.trim_end_matches(',');
        let (unit_months, unit_days, unit_micros) = match unit {
            "millennium" | "millennia" | "millenniums" => (12_000.0, 0.0, 0.0),
            "century" | "centuries" => (1_200.0, 0.0, 0.0),
            "decade" | "decades" => (120.0, 0.0, 0.0),
            "y" | "yr" | "yrs" | "year" | "years" => (12.0, 0.0, 0.0),
            "mon" | "mons" | "month" | "months" => (1.0, 0.0, 0.0),
            "w" | "week" | "weeks" => (0.0, 7.0, 0.0),
            "d" | "day" | "days" => (0.0, 1.0, 0.0),
            "h" | "hr" | "hrs" | "hour" | "hours" => (0.0, 0.0, 3_600_000_000.0),
            "m" | "min" | "mins" | "minute" | "minutes" => (0.0, 0.0, 60_000_000.0),
            "s" | "sec" | "secs" | "second" | "seconds" => (0.0, 0.0, 1_000_000.0),
            "ms" | "millisecond" | "milliseconds" => (0.0, 0.0, 1_000.0),
            "us" | "microsecond" | "microseconds" => (0.0, 0.0, 1.0),
            _ => return Err(error()),
        };
        // Fractions spill down as PostgreSQL does: months to days (30), days to time.
        let whole_months = (number * unit_months).trunc();
        let spilled_days = (number * unit_months - whole_months) * 30.0 + number * unit_days;
        let whole_days = spilled_days.trunc();
        months += whole_months as i64;
        days += whole_days as i64;
        micros += (spilled_days - whole_days) * 86_400_000_000.0 + number * unit_micros;
    }
    if !any {
        return Err(error());
    }
    let sign = if ago { -1 } else { 1 };
    let months = i32::try_from(months * sign).map_err(|_| error())?;
    let days = i32::try_from(days * sign).map_err(|_| error())?;
    let nanoseconds = (micros.round() as i64).checked_mul(1_000 * sign).ok_or_else(error)?;
    Ok(IntervalMonthDayNano::new(months, days, nanoseconds))
}

/// One-dimensional arrays: `{1,2,NULL}`, `{"a b","c\"d"}`, `{}`.
fn array(texts: &StringArray, element: SqlType) -> Result<ArrayRef, SqlError> {
    let mut items = StringBuilder::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(texts.len());
    let mut count = 0i32;
    for text in texts {
        match text {
            Some(text) => {
                for item in array_items(text)? {
                    items.append_option(item);
                    count += 1;
                }
                valid.push(true);
            }
            None => valid.push(false),
        }
        offsets.push(count);
    }
    let items: ArrayRef = Arc::new(items.finish());
    let values = match from_text(&items, element) {
        Some(values) => values?,
        None if matches!(element, SqlType::Date | SqlType::Timestamp | SqlType::Timestamptz) => {
            crate::datetime::text_to_datetime(&items, &element.arrow_type())?
        }
        None => crate::dml::cast_column(&items, element).map_err(|e| {
            SqlError::new(
                sqlstate::INVALID_TEXT_REPRESENTATION,
                format!("invalid input for an array of {element}: {}", e.message()),
            )
        })?,
    };
    let field = Arc::new(Field::new_list_field(element.arrow_type(), true));
    let list = ListArray::try_new(field, OffsetBuffer::new(offsets.into()), values, Some(NullBuffer::from(valid)))
        .map_err(|e| SqlError::internal(format_args!("array input: {e}")))?;
    Ok(Arc::new(list))
}

/// The elements of an array's text (None for NULL), 22P02 if it is not one.
fn array_items(text: &str) -> Result<Vec<Option<String>>, SqlError> {
    let error = || SqlError::new(sqlstate::INVALID_TEXT_REPRESENTATION, format!("malformed array literal: \"{text}\""));
    let inner = text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(error)?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            loop {
                match chars.next().ok_or_else(error)? {
                    '"' => break,
                    '\\' => item.push(chars.next().ok_or_else(error)?),
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if matches!(c, '{' | '}' | '"') {
                    // Nested arrays are multi-dimensional: not kept.
                    return Err(error());
                }
                chars.next();
                if c == '\\' {
                    item.push(chars.next().ok_or_else(error)?);
                } else {
                    item.push(c);
                }
            }
            item = item.trim_end().to_string();
            if item.is_empty() {
                return Err(error());
            }
        }
        items.push(if !quoted && item.eq_ignore_ascii_case("null") { None } else { Some(item) });
        match chars.next() {
            None => return Ok(items),
            Some(',') => {}
            Some(_) => return Err(error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytea_reads_hex_and_escape_formats() {
        assert_eq!(bytea("\\x00ff10").unwrap(), [0, 255, 16]);
        assert_eq!(bytea("\\x00 FF").unwrap(), [0, 255]);
        assert_eq!(bytea("abc").unwrap(), b"abc");
        assert_eq!(bytea("a\\\\b\\001").unwrap(), [b'a', b'\\', b'b', 1]);
        assert_eq!(bytea("\\x0").unwrap_err().sqlstate(), "22P02");
        assert_eq!(bytea("\\q").unwrap_err().sqlstate(), "22P02");
    }

    #[test]
    fn times_and_intervals_read_as_postgres_writes_them() {
        assert_eq!(time("13:45:30").unwrap(), 49_530_000_000);
        assert_eq!(time("00:00:01.5").unwrap(), 1_500_000);
        assert_eq!(time("24:00:00").unwrap(), 86_400_000_000);
        assert_eq!(time("25:00").unwrap_err().sqlstate(), "22008");
        assert_eq!(time("noon").unwrap_err().sqlstate(), "22007");
        let hours = |h: i64| h * 3_600_000_000_000;
        assert_eq!(interval("1 day 02:03:04").unwrap(), IntervalMonthDayNano::new(0, 1, hours(2) + 184_000_000_000));
        assert_eq!(interval("-3 mons").unwrap(), IntervalMonthDayNano::new(-3, 0, 0));
        assert_eq!(interval("1 year 2 months").unwrap(), IntervalMonthDayNano::new(14, 0, 0));
        assert_eq!(interval("1.5 hours").unwrap(), IntervalMonthDayNano::new(0, 0, hours(3) / 2));
        assert_eq!(interval("2 days ago").unwrap(), IntervalMonthDayNano::new(0, -2, 0));
        assert_eq!(interval("1.5 months").unwrap(), IntervalMonthDayNano::new(1, 15, 0));
        assert_eq!(interval("soon").unwrap_err().sqlstate(), "22P02");
    }

    #[test]
    fn arrays_read_quotes_nulls_and_refuse_nesting() {
        let items = |text| array_items(text).unwrap();
        assert_eq!(items("{1, 2,NULL}"), [Some("1".into()), Some("2".into()), None]);
        assert_eq!(items(r#"{"a b","c\"d","NULL"}"#), [Some("a b".into()), Some("c\"d".into()), Some("NULL".into())]);
        assert_eq!(items("{}"), Vec::<Option<String>>::new());
        assert_eq!(array_items("{{1},{2}}").unwrap_err().sqlstate(), "22P02");
        assert_eq!(array_items("1,2").unwrap_err().sqlstate(), "22P02");
    }
}
