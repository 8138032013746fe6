//! PostgreSQL's text output of values whose Arrow text form differs:
//! floats (`1024`, `1e+20`, not `1024.0`, `100000000000000000000`),
//! timestamps (`2024-01-02 03:04:05+00`, not `2024-01-02T03:04:05Z`) and
//! intervals (`2 mons 4 days`) and arrays (`{1,2}`, `{"a b",c}`).
//!
//! The wire layer writes result values with these functions, and
//! [`crate::datetime::TextCasts`] turns casts of such values to text (`x::text`,
//! `'at ' || x`) into [`ValueToText`], so that both read the same.

use chrono::NaiveDateTime;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use std::sync::Arc;

/// float8's text form.
pub fn float8_text(value: f64) -> String {
    float_text(value, &format!("{value:e}"), FLOAT8_DIGITS)
}

/// float4's text form (its own shortest digits, not those of the float8 it widens to).
pub fn float4_text(value: f32) -> String {
    float_text(f64::from(value), &format!("{value:e}"), FLOAT4_DIGITS)
}

/// Significant digits below which PostgreSQL writes a float8 without an
/// exponent (DBL_DIG).
const FLOAT8_DIGITS: i32 = 15;
/// The same for float4 (FLT_DIG).
const FLOAT4_DIGITS: i32 = 6;

/// PostgreSQL's text form of a float (extra_float_digits 1, the default
/// since 12): the shortest digits that read back exactly, as `%g` would
/// place them: an exponent of at least two digits when the decimal exponent
/// is below -4 or at least `digits` (`1e+20`, `1.5e-05`), plain digits
/// otherwise (`1024`, `0.0001`). `scientific` is Rust's shortest `{:e}` form
/// of the value in its own width, which has the same digits.
pub fn float_text(value: f64, scientific: &str, digits: i32) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(unsigned) => ("-", unsigned),
        None => ("", mantissa),
    };
    if exponent < -4 || exponent >= digits {
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs());
    }
    let significant: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let text = if exponent >= 0 {
        let whole = exponent as usize + 1;
        if significant.len() <= whole {
            format!("{significant:0<whole$}")
        } else {
            format!("{}.{}", &significant[..whole], &significant[whole..])
        }
    } else {
        format!("0.{}{significant}", "0".repeat(exponent.unsigned_abs() as usize - 1))
    };
    format!("{sign}{text}")
}

/// PostgreSQL's text form of a timestamp: fractional seconds only when
/// non-zero, without trailing zeros (`2024-01-02 03:04:05.25`).
pub fn timestamp_text(timestamp: &NaiveDateTime, zone_suffix: &str) -> String {
    let whole = timestamp.format("%Y-%m-%d %H:%M:%S");
    let micros = timestamp.and_utc().timestamp_subsec_micros();
    if micros == 0 {
        return format!("{whole}{zone_suffix}");
    }
    let fraction = format!("{micros:06}");
    format!("{whole}.{}{zone_suffix}", fraction.trim_end_matches('0'))
}

/// Durations (what DataFusion makes of `timestamp - timestamp`) as the
/// intervals PostgreSQL gives: whole days, then the time within a day.
pub fn durations_as_intervals(values: &ArrayRef) -> DfResult<ArrayRef> {
    let micros = cast(values, &DataType::Duration(datafusion::arrow::datatypes::TimeUnit::Microsecond))?;
    let micros = micros.as_primitive::<datafusion::arrow::datatypes::DurationMicrosecondType>();
    const DAY: i64 = 86_400_000_000;
    let intervals: datafusion::arrow::array::IntervalMonthDayNanoArray =
        micros.iter().map(|v| v.map(|v| IntervalMonthDayNano::new(0, (v / DAY) as i32, (v % DAY) * 1_000))).collect();
    Ok(Arc::new(intervals))
}

/// A time of day from microseconds since midnight; None out of range.
pub fn naive_time(micros: i64) -> Option<chrono::NaiveTime> {
    let seconds = u32::try_from(micros.div_euclid(1_000_000)).ok()?;
    let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1_000).ok()?;
    chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
}

/// PostgreSQL's text form of bytea (bytea_output hex): `\x00ff`.
pub fn bytea_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + bytes.len() * 2);
    text.push_str("\\x");
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// PostgreSQL's text form of a time of day: `13:45:30`, `00:00:01.5`.
pub fn time_text(micros: i64) -> String {
    let (seconds, fraction) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let mut text = format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if fraction != 0 {
        text.push_str(format!(".{fraction:06}").trim_end_matches('0'));
    }
    text
}

/// PostgreSQL's text form of an interval (IntervalStyle postgres):
/// `1 year 2 mons 3 days 04:05:06.5`, each part signed on its own.
pub fn interval_text(interval: IntervalMonthDayNano) -> String {
    let mut parts = Vec::new();
    let (years, months) = (interval.months / 12, interval.months % 12);
    let plural = |n: i32, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years, "year", "years"));
    }
    if months != 0 {
        parts.push(plural(months, "mon", "mons"));
    }
    if interval.days != 0 {
        parts.push(plural(interval.days, "day", "days"));
    }
    let micros = interval.nanoseconds / 1_000;
    if micros != 0 || parts.is_empty() {
        let sign = if micros < 0 { "-" } else { "" };
        let micros = micros.unsigned_abs();
        let seconds = micros / 1_000_000;
        let fraction = micros % 1_000_000;
        let mut clock = format!("{sign}{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
        if fraction != 0 {
            clock.push_str(format!(".{fraction:06}").trim_end_matches('0'));
        }
        parts.push(clock);
    }
    parts.join(" ")
}

/// PostgreSQL's text form of a one-dimensional array: `{1,2}`, `{a,"b c",NULL}`.
pub fn array_text(items: &ArrayRef) -> DfResult<String> {
    let texts = to_text(items)?;
    let texts = texts.as_string::<i32>();
    let is_bool = *items.data_type() == DataType::Boolean;
    let elements: Vec<String> = (0..texts.len())
        .map(|i| match (texts.is_valid(i), is_bool) {
            (false, _) => "NULL".to_string(),
            (true, true) => if texts.value(i) == "true" { "t" } else { "f" }.to_string(),
            (true, false) => array_element(texts.value(i)),
        })
        .collect();
    Ok(format!("{{{}}}", elements.join(",")))
}

/// An array element as PostgreSQL's array output writes it: quoted when
/// empty, `NULL`, or containing a delimiter, quote, backslash or space.
fn array_element(text: &str) -> String {
    let quote = text.is_empty()
        || text.eq_ignore_ascii_case("null")
        || text.chars().any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace());
    if !quote {
        return text.to_string();
    }
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whether `data_type`'s text form is written here rather than by Arrow.
pub fn has_own_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float32
            | DataType::Float64
            | DataType::Timestamp(_, _)
            | DataType::Interval(_)
            | DataType::List(_)
            | DataType::Time64(_)
            | DataType::Binary
            | DataType::Duration(_)
    )
}

/// Values of a type [`has_own_text`] as their PostgreSQL text.
pub fn to_text(values: &ArrayRef) -> DfResult<ArrayRef> {
    let mut out = StringBuilder::new();
    match values.data_type() {
        DataType::Float32 => {
            values.as_primitive::<Float32Type>().iter().for_each(|v| out.append_option(v.map(float4_text)))
        }
        DataType::Float64 => {
            values.as_primitive::<Float64Type>().iter().for_each(|v| out.append_option(v.map(float8_text)))
        }
        DataType::Interval(_) => {
            let values = cast(values, &DataType::Interval(IntervalUnit::MonthDayNano))?;
            let values = values.as_primitive::<IntervalMonthDayNanoType>();
            values.iter().for_each(|v| out.append_option(v.map(interval_text)));
        }
        DataType::Timestamp(_, zone) => {
            let suffix = if zone.is_some() { "+00" } else { "" };
            for row in 0..values.len() {
                let at = if values.is_null(row) { None } else { crate::datetime::timestamp_at(values.as_ref(), row) };
                out.append_option(at.map(|at| timestamp_text(&at, suffix)));
            }
        }
        DataType::Time64(_) => {
            let values = cast(values, &DataType::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond))?;
            let values = values.as_primitive::<datafusion::arrow::datatypes::Time64MicrosecondType>();
            values.iter().for_each(|v| out.append_option(v.map(time_text)));
        }
        DataType::Binary => {
            values.as_binary::<i32>().iter().for_each(|v| out.append_option(v.map(bytea_text)));
        }
        DataType::Duration(_) => {
            let values = durations_as_intervals(values)?;
            values
                .as_primitive::<IntervalMonthDayNanoType>()
                .iter()
                .for_each(|v| out.append_option(v.map(interval_text)));
        }
        DataType::List(_) => {
            let lists = values.as_list::<i32>();
            for row in 0..lists.len() {
                out.append_option(if lists.is_null(row) { None } else { Some(array_text(&lists.value(row))?) });
            }
        }
        _ => return Ok(cast(values, &DataType::Utf8)?),
    }
    Ok(Arc::new(out.finish()))
}

/// A cast to text of a type [`has_own_text`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ValueToText {
    /// The session's TimeZone when the plan was made (timestamptz text is in it).
    zone: crate::datetime::Zone,
    signature: Signature,
}

impl ValueToText {
    pub fn new(zone: crate::datetime::Zone) -> ValueToText {
        ValueToText { zone, signature: Signature::any(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ValueToText {
    fn name(&self) -> &str {
        "postgres_text"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return datafusion::common::exec_err!("postgres_text takes one argument");
        };
        let scalar = matches!(value, ColumnarValue::Scalar(_));
        let values = value.to_array(if scalar { 1 } else { args.number_rows })?;
        let texts = match values.data_type() {
            DataType::Timestamp(_, Some(_)) if self.zone != crate::datetime::Zone::UTC => {
                let micros =
                    cast(&values, &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, None))?;
                let micros = micros.as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
                let texts: datafusion::arrow::array::StringArray =
                    micros.iter().map(|v| v.and_then(|v| self.zone.timestamptz_text(v))).collect();
                Arc::new(texts) as ArrayRef
            }
            _ => to_text(&values)?,
        };
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&texts, 0)?));
        }
        Ok(ColumnarValue::Array(texts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_postgres() {
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        assert_eq!(timestamp_text(&at("2024-01-02 03:04:05.000"), ""), "2024-01-02 03:04:05");
        assert_eq!(timestamp_text(&at("2024-01-02 03:04:05.250"), ""), "2024-01-02 03:04:05.25");
        assert_eq!(timestamp_text(&at("2024-01-02 03:04:05.000001"), "+00"), "2024-01-02 03:04:05.000001+00");
    }

    #[test]
    fn floats_print_like_postgres() {
        let (float8, float4) = (float8_text, float4_text);
        for (value, want) in [
            (1024.0, "1024"),
            (1e20, "1e+20"),
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.0 / 3.0, "0.3333333333333333"),
            (-0.0, "-0"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float8(value), want);
        }
        for (value, want) in [(1e6, "1e+06"), (123456.0, "123456"), (1.5e-5, "1.5e-05"), (0.1, "0.1")] {
            assert_eq!(float4(value), want);
        }
    }
}
