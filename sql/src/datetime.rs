//! PostgreSQL's date and time semantics where DataFusion's differ: text
//! input of dates and timestamps, `to_char` templates, and `age`.
//!
//! Input: Arrow's string-to-timestamp cast wants seconds and `+hh:mm`
//! offsets; PostgreSQL also reads `2024-03-05 10:00`, a bare date, a `T`
//! separator, `+hh`, `Z` and `UTC`. [`TextCasts`] (an analyzer rule that runs
//! after type coercion) turns every cast from text to a date or timestamp,
//! including typed literals (`timestamp '...'`), the casts coercion inserts
//! and the casts of INSERT's VALUES, into [`text_to_datetime`], and COPY
//! parses its fields with the same function. A timestamp without time zone
//! ignores an offset, as PostgreSQL does; a timestamp with time zone is
//! stored as UTC.
//!
//! Output as PostgreSQL writes values is `crate::text_output`'s.

use crate::error::{SqlError, sqlstate};
use crate::text_output;
use crate::types::SqlType;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Array, IntervalMonthDayNanoBuilder, PrimitiveArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, IntervalMonthDayNano, IntervalUnit, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Cast, ColumnarValue, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::Expr;
use std::sync::Arc;

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// A date and time read from text, with the offset it named if any.
#[derive(Debug, PartialEq)]
struct Parsed {
    at: NaiveDateTime,
    offset_seconds: Option<i32>,
}

/// Why text is not a date or timestamp: PostgreSQL tells a malformed value
/// (22007) from a well-formed one with a field out of range (22008).
#[derive(Debug, PartialEq)]
enum Invalid {
    Syntax,
    OutOfRange,
}

/// A run of ASCII digits at the start of `text`, and the rest.
fn digits(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    text.split_at(end)
}

fn number(text: &str) -> Result<u32, Invalid> {
    text.parse().map_err(|_| Invalid::Syntax)
}

/// Reads `YYYY-MM-DD[( |T)HH:MM[:SS[.fraction]]][ ][zone]`, where zone is
/// `Z`, `UTC`, `GMT` or `±hh[[:]mm[[:]ss]]`; also `epoch`.
fn parse(text: &str) -> Result<Parsed, Invalid> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("epoch") {
        let at = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid").and_time(NaiveTime::MIN);
        return Ok(Parsed { at, offset_seconds: Some(0) });
    }
    let (year, rest) = digits(text);
    let rest = rest.strip_prefix('-').ok_or(Invalid::Syntax)?;
    let (month, rest) = digits(rest);
    let rest = rest.strip_prefix('-').ok_or(Invalid::Syntax)?;
    let (day, rest) = digits(rest);
    if year.len() < 4 || !(1..=2).contains(&month.len()) || !(1..=2).contains(&day.len()) {
        return Err(Invalid::Syntax);
    }
    let date =
        NaiveDate::from_ymd_opt(number(year)? as i32, number(month)?, number(day)?).ok_or(Invalid::OutOfRange)?;
    let (time, rest) = match rest.strip_prefix(['T', 't']).or_else(|| {
        let trimmed = rest.trim_start();
        (trimmed.len() < rest.len() && trimmed.starts_with(|c: char| c.is_ascii_digit())).then_some(trimmed)
    }) {
        Some(clock) => parse_time(clock)?,
        None => (NaiveTime::MIN, rest),
    };
    let offset_seconds = parse_zone(rest.trim())?;
    Ok(Parsed { at: date.and_time(time), offset_seconds })
}

/// `HH:MM[:SS[.fraction]]` at the start of `text`, and the rest.
fn parse_time(text: &str) -> Result<(NaiveTime, &str), Invalid> {
    let (hour, rest) = digits(text);
    let rest = rest.strip_prefix(':').ok_or(Invalid::Syntax)?;
    let (minute, mut rest) = digits(rest);
    if !(1..=2).contains(&hour.len()) || minute.len() != 2 {
        return Err(Invalid::Syntax);
    }
    let (mut second, mut micros) = (0, 0);
    if let Some(after) = rest.strip_prefix(':') {
        let (whole, after) = digits(after);
        if whole.len() != 2 {
            return Err(Invalid::Syntax);
        }
        second = number(whole)?;
        rest = after;
        if let Some(after) = rest.strip_prefix('.') {
            let (fraction, after) = digits(after);
            // Rounded to microseconds, as PostgreSQL stores them.
            let scaled = format!("{fraction:0<7}");
            let seven: u32 = number(&scaled[..7])?;
            micros = (seven + 5) / 10;
            rest = after;
        }
    }
    let (hour, minute) = (number(hour)?, number(minute)?);
    if hour > 24 || minute > 59 || second > 60 || (hour == 24 && (minute, second, micros) != (0, 0, 0)) {
        return Err(Invalid::OutOfRange);
    }
    let seconds = hour * 3600 + minute * 60 + second;
    let time = NaiveTime::MIN
        + chrono::Duration::seconds(i64::from(seconds))
        + chrono::Duration::microseconds(i64::from(micros));
    // 24:00:00 and a rounded-up fraction wrap to the next day in chrono;
    // PostgreSQL keeps 24:00:00 as the end of the day, which is rare
    // enough to refuse rather than misplace.
    if seconds >= 86_400 || (micros >= 1_000_000 && seconds + 1 >= 86_400) {
        return Err(Invalid::OutOfRange);
    }
    Ok((time, rest))
}

/// A zone suffix as seconds east of UTC (None when absent).
fn parse_zone(text: &str) -> Result<Option<i32>, Invalid> {
    if text.is_empty() {
        return Ok(None);
    }
    if ["z", "utc", "gmt", "zulu"].iter().any(|name| text.eq_ignore_ascii_case(name)) {
        return Ok(Some(0));
    }
    let sign = match text.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(Invalid::Syntax),
    };
    let body = &text[1..];
    let parts: Vec<&str> = if body.contains(':') {
        body.split(':').collect()
    } else {
        // hh, hhmm or hhmmss.
        if !body.bytes().all(|b| b.is_ascii_digit()) || !body.len().is_multiple_of(2) && body.len() != 1 {
            return Err(Invalid::Syntax);
        }
        if body.len() <= 2 {
            vec![body]
        } else {
            body.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).expect("ascii")).collect()
        }
    };
    if parts.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
        return Err(Invalid::Syntax);
    }
    let mut seconds = 0;
    for (part, scale) in parts.iter().zip([3600, 60, 1]) {
        seconds += number(part)? as i32 * scale;
    }
    if seconds > 15 * 3600 + 59 * 60 + 59 {
        return Err(Invalid::OutOfRange);
    }
    Ok(Some(sign * seconds))
}

/// The PostgreSQL name of a date or timestamp Arrow type, for messages.
fn type_name(target: &DataType) -> &'static str {
    match target {
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
        _ => "timestamp",
    }
}

fn invalid(invalid: Invalid, target: &DataType, text: &str) -> SqlError {
    match invalid {
        Invalid::Syntax => SqlError::new(
            sqlstate::INVALID_DATETIME_FORMAT,
            format!("invalid input syntax for type {}: \"{text}\"", type_name(target)),
        ),
        Invalid::OutOfRange => {
            SqlError::new(sqlstate::DATETIME_FIELD_OVERFLOW, format!("date/time field value out of range: \"{text}\""))
        }
    }
}

/// Microseconds since 1970-01-01 00:00 (UTC for `with_zone`) of the
/// timestamp `text`.
pub fn timestamp_micros(text: &str, with_zone: bool) -> Result<i64, SqlError> {
    timestamp_micros_in(text, with_zone.then_some(Zone::UTC))
}

/// [`timestamp_micros`]; a timestamptz (`zone` given) without an offset is
/// wall-clock time in `zone` (the session's TimeZone).
pub fn timestamp_micros_in(text: &str, zone: Option<Zone>) -> Result<i64, SqlError> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, zone.map(|_| "+00:00".into()));
    let parsed = parse(text).map_err(|e| invalid(e, &target, text))?;
    let micros = parsed.at.and_utc().timestamp_micros();
    match (zone, parsed.offset_seconds) {
        (Some(_), Some(offset)) => Ok(micros - i64::from(offset) * MICROS_PER_SECOND),
        (Some(Zone::Fixed(offset)), None) => Ok(micros - i64::from(offset.local_minus_utc()) * MICROS_PER_SECOND),
        (Some(zone), None) => Ok(zone.utc_of(parsed.at)?.timestamp_micros()),
        (None, _) => Ok(micros),
    }
}

/// Days since 1970-01-01 of the date `text` (a time after it is ignored).
pub fn date_days(text: &str) -> Result<i32, SqlError> {
    let parsed = parse(text).map_err(|e| invalid(e, &DataType::Date32, text))?;
    Ok(parsed.at.date().num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
}

/// `texts` as values of `target` (a date or timestamp type), read as
/// PostgreSQL reads them; any other target is Arrow's cast.
pub fn text_to_datetime(texts: &ArrayRef, target: &DataType) -> Result<ArrayRef, SqlError> {
    text_to_datetime_in(texts, target, Zone::UTC)
}

/// [`text_to_datetime`], timestamptz text without an offset read in `session_zone`.
pub fn text_to_datetime_in(texts: &ArrayRef, target: &DataType, session_zone: Zone) -> Result<ArrayRef, SqlError> {
    let texts = cast(texts, &DataType::Utf8).map_err(|e| SqlError::from_arrow(&e))?;
    let texts = texts.as_string::<i32>();
    let values = |with_zone: bool| {
        let zone = with_zone.then_some(session_zone);
        texts.iter().map(move |t| t.map(|t| timestamp_micros_in(t, zone)).transpose())
    };
    let array: ArrayRef = match target {
        DataType::Date32 => {
            Arc::new(texts.iter().map(|t| t.map(date_days).transpose()).collect::<Result<Date32Array, _>>()?)
        }
        DataType::Timestamp(unit, zone) => {
            let micros: PrimitiveArray<TimestampMicrosecondType> =
                values(zone.is_some()).collect::<Result<_, SqlError>>()?;
            let scaled: ArrayRef = match unit {
                TimeUnit::Microsecond => Arc::new(micros),
                TimeUnit::Second => Arc::new(micros.unary::<_, TimestampSecondType>(|m| m.div_euclid(1_000_000))),
                TimeUnit::Millisecond => Arc::new(micros.unary::<_, TimestampMillisecondType>(|m| m.div_euclid(1_000))),
                TimeUnit::Nanosecond => Arc::new(micros.unary::<_, TimestampNanosecondType>(|m| m * 1_000)),
            };
            match zone {
                Some(zone) => cast(&scaled, &DataType::Timestamp(*unit, Some(zone.clone())))
                    .map_err(|e| SqlError::from_arrow(&e))?,
                None => scaled,
            }
        }
        other => {
            let texts: ArrayRef = Arc::new(texts.clone());
            return match input_type(other).and_then(|ty| crate::input::from_text(&texts, ty)) {
                // Same values; the target may name its list field differently.
                Some(read) => cast(&read?, other).map_err(|e| SqlError::from_arrow(&e)),
                None => cast(&texts, other).map_err(|e| SqlError::from_arrow(&e)),
            };
        }
    };
    Ok(array)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_datetime(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Date32 | DataType::Timestamp(_, _))
}

/// The column type of `data_type` if its text input is `crate::input`'s
/// (interval, time, bytea, arrays).
fn input_type(data_type: &DataType) -> Option<SqlType> {
    let ty = SqlType::from_arrow(&datafusion::arrow::datatypes::Field::new("", data_type.clone(), true)).ok()?;
    matches!(ty, SqlType::Interval | SqlType::Time | SqlType::Bytea | SqlType::Array(_)).then_some(ty)
}

/// Casts from text to a date, timestamp, interval, time, bytea or array
/// become [`TextToDatetime`] calls
/// (see the module doc), and casts to text of values whose text PostgreSQL
/// writes differently from Arrow become [`text_output::ValueToText`] calls,
/// as do casts of json to text (which DataFusion would drop, keeping the
/// json type).
#[derive(Debug)]
pub struct TextCasts {
    zone: SessionZone,
}

impl AnalyzerRule for TextCasts {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let mut schema = DFSchema::empty();
            for input in plan.inputs() {
                schema.merge(input.schema());
            }
            let preserver = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let name = preserver.save(&expr);
                let zone = *self.zone.read().unwrap_or_else(|poisoned| poisoned.into_inner());
                Ok(expr.transform_up(|expr| rewrite_cast(expr, &schema, zone))?.update_data(|expr| name.restore(expr)))
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "postgres_casts"
    }
}

fn rewrite_cast(expr: Expr, schema: &DFSchema, zone: Zone) -> DfResult<Transformed<Expr>> {
    if let Expr::ScalarFunction(call) = &expr
        && zone != Zone::UTC
        && matches!(call.func.name(), "date_trunc" | "date_part")
    {
        return in_session_zone(expr, schema, zone);
    }
    let Expr::Cast(Cast { expr: inner, field }) = &expr else { return Ok(Transformed::no(expr)) };
    let data_type = field.data_type();
    let Ok(from) = inner.get_type(schema) else { return Ok(Transformed::no(expr)) };
    let function = if (is_datetime(data_type) || input_type(data_type).is_some()) && is_text(&from) {
        ScalarUDF::new_from_impl(TextToDatetime::new(data_type.clone(), zone))
    } else if *data_type == DataType::Utf8
        && (text_output::has_own_text(&from)
            || inner.to_field(schema).is_ok_and(|(_, field)| crate::json::Kind::of(&field).is_some()))
    {
        ScalarUDF::new_from_impl(text_output::ValueToText::new(zone))
    } else {
        return Ok(Transformed::no(expr));
    };
    let function = Arc::new(function);
    Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(function, vec![inner.as_ref().clone()]))))
}

/// `date_trunc` and `date_part` (`extract`) of a timestamptz work on its
/// wall-clock time in the session's TimeZone, as PostgreSQL's do: the
/// argument is retagged with the zone (Arrow's functions honour it), and a
/// truncated timestamptz is tagged back, so the plan's types stay.
fn in_session_zone(expr: Expr, schema: &DFSchema, zone: Zone) -> DfResult<Transformed<Expr>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = &expr else { return Ok(Transformed::no(expr)) };
    let Some(value) = args.get(1) else { return Ok(Transformed::no(expr)) };
    let Ok(DataType::Timestamp(unit, Some(original))) = value.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let local = DataType::Timestamp(unit, Some(zone.arrow_name().into()));
    let mut local_args = args.clone();
    local_args[1] = Expr::Cast(Cast::new(Box::new(value.clone()), local));
    let call = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(func), local_args));
    let result = match expr.get_type(schema)? {
        DataType::Timestamp(unit, Some(_)) => {
            Expr::Cast(Cast::new(Box::new(call), DataType::Timestamp(unit, Some(original))))
        }
        _ => call,
    };
    Ok(Transformed::yes(result))
}

/// Text read as a date or timestamp of one Arrow type, as PostgreSQL reads
/// it (or as an interval, time, bytea or array: see `crate::input`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToDatetime {
    name: String,
    target: DataType,
    /// The session's TimeZone when the plan was made.
    zone: Zone,
    signature: Signature,
}

impl TextToDatetime {
    fn new(target: DataType, zone: Zone) -> TextToDatetime {
        let name = match input_type(&target) {
            Some(ty) => format!("text_to_{ty}"),
            None => format!("text_to_{}", type_name(&target)),
        }
        .replace(' ', "_");
        let signature =
            Signature::uniform(1, vec![DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View], Volatility::Immutable);
        TextToDatetime { name, target, zone, signature }
    }
}

impl ScalarUDFImpl for TextToDatetime {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [text] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{} takes one argument", self.name);
        };
        let scalar = matches!(text, ColumnarValue::Scalar(_));
        let texts = text.to_array(if scalar { 1 } else { args.number_rows })?;
        let result = text_to_datetime_in(&texts, &self.target, self.zone)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// Installs [`TextCasts`] after DataFusion's analyzer rules (type coercion
/// places the casts it rewrites), reading the session's TimeZone from `zone`.
pub fn install(builder: SessionStateBuilder, zone: SessionZone) -> SessionStateBuilder {
    builder.with_analyzer_rule(Arc::new(TextCasts { zone }))
}

/// Registers `to_char`, `to_date` and `to_timestamp` (over DataFusion's,
/// which take strftime formats), `age` and `clock_timestamp`.
pub fn register(state: &mut SessionState) -> DfResult<()> {
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(ToChar::new())))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(Age::new())))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(Timezone {
        signature: Signature::any(2, Volatility::Immutable),
    })))?;
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(ClockTimestamp {
        signature: Signature::nullary(Volatility::Volatile),
    })))?;
    let one_or_two = || Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Immutable);
    for name in ["to_date", "to_timestamp"] {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(FromText { name, signature: one_or_two() })))?;
    }
    Ok(())
}

/// `timezone(zone, value)`, which `value AT TIME ZONE zone` becomes: a
/// timestamptz as the wall-clock time in `zone` (a timestamp), or a
/// timestamp read as wall-clock time in `zone` (a timestamptz). Zones are
/// IANA names (`Europe/Paris`), `UTC`, or offsets in ISO 8601's sign
/// (`+02:00` is east of Greenwich).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Timezone {
    signature: Signature,
}

impl ScalarUDFImpl for Timezone {
    fn name(&self) -> &str {
        "timezone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        Ok(match args.get(1) {
            Some(DataType::Timestamp(_, Some(_))) => DataType::Timestamp(TimeUnit::Microsecond, None),
            _ => DataType::Timestamp(TimeUnit::Microsecond, Some(crate::types::UTC.into())),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let to_local = matches!(args.args.get(1).map(ColumnarValue::data_type), Some(DataType::Timestamp(_, Some(_))));
        per_row(&args, |arrays| {
            let [zones, values] = arrays else { return Err(SqlError::internal("timezone takes two arguments")) };
            let zones = cast(zones, &DataType::Utf8).map_err(|e| SqlError::from_arrow(&e))?;
            let zones = zones.as_string::<i32>();
            let values = if is_text(values.data_type()) {
                text_to_datetime(values, &DataType::Timestamp(TimeUnit::Microsecond, None))?
            } else {
                Arc::clone(values)
            };
            let mut out = Vec::with_capacity(values.len());
            for row in 0..values.len() {
                let (Some(at), true) = (timestamp_at(values.as_ref(), row), zones.is_valid(row)) else {
                    out.push(None);
                    continue;
                };
                let zone = time_zone(zones.value(row))?;
                let micros = if to_local {
                    zone.local_of(at.and_utc()).and_utc().timestamp_micros()
                } else {
                    zone.utc_of(at)?.timestamp_micros()
                };
                out.push(Some(micros));
            }
            let micros = PrimitiveArray::<TimestampMicrosecondType>::from(out);
            Ok(if to_local { Arc::new(micros) } else { Arc::new(micros.with_timezone(crate::types::UTC)) })
        })
    }
}

/// A time zone: of AT TIME ZONE, or the session's TimeZone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    Fixed(chrono::FixedOffset),
    Named(chrono_tz::Tz),
}

/// The session's TimeZone, shared by a session's settings and the
/// functions its plans use (see [`TextCasts`]).
pub type SessionZone = Arc<std::sync::RwLock<Zone>>;

impl Zone {
    pub const UTC: Zone = Zone::Fixed(chrono::FixedOffset::east_opt(0).expect("zero offset"));

    /// The zone as an Arrow timestamp's time zone names it.
    pub fn arrow_name(&self) -> String {
        match self {
            Zone::Named(zone) => zone.name().to_string(),
            Zone::Fixed(offset) => {
                let seconds = offset.local_minus_utc();
                let sign = if seconds < 0 { '-' } else { '+' };
                format!("{sign}{:02}:{:02}", seconds.abs() / 3600, seconds.abs() % 3600 / 60)
            }
        }
    }

    /// Seconds east of Greenwich at the instant `at`.
    pub fn offset_at(&self, at: chrono::DateTime<chrono::Utc>) -> i32 {
        use chrono::Offset;
        match self {
            Zone::Fixed(offset) => offset.local_minus_utc(),
            Zone::Named(zone) => at.with_timezone(zone).offset().fix().local_minus_utc(),
        }
    }

    /// PostgreSQL's text of the instant `micros` (UTC) as wall-clock time
    /// in this zone with its offset: `2024-02-29 14:45:30+01`, `+05:30`.
    pub fn timestamptz_text(&self, micros: i64) -> Option<String> {
        let at = chrono::DateTime::from_timestamp_micros(micros)?;
        let offset = self.offset_at(at);
        let local = (at + chrono::Duration::seconds(i64::from(offset))).naive_utc();
        let (sign, offset) = if offset < 0 { ('-', -offset) } else { ('+', offset) };
        let mut suffix = format!("{sign}{:02}", offset / 3600);
        if offset % 3600 != 0 {
            suffix.push_str(&format!(":{:02}", offset % 3600 / 60));
        }
        Some(text_output::timestamp_text(&local, &suffix))
    }

    /// The wall-clock time in the zone at the instant `at`.
    fn local_of(&self, at: chrono::DateTime<chrono::Utc>) -> NaiveDateTime {
        match self {
            Zone::Fixed(offset) => at.with_timezone(offset).naive_local(),
            Zone::Named(zone) => at.with_timezone(zone).naive_local(),
        }
    }

    /// The instant the wall-clock time `local` in the zone is (the earlier
    /// of two in a fall-back hour; a spring-forward gap counts as the
    /// offset before it, as PostgreSQL does).
    fn utc_of(&self, local: NaiveDateTime) -> Result<chrono::DateTime<chrono::Utc>, SqlError> {
        use chrono::TimeZone;
        let utc = match self {
            Zone::Fixed(offset) => offset.from_local_datetime(&local).earliest().map(|at| at.to_utc()),
            Zone::Named(zone) => match zone.from_local_datetime(&local).earliest() {
                Some(at) => Some(at.to_utc()),
                None => {
                    let before = zone.from_local_datetime(&(local - chrono::Duration::hours(1))).earliest();
                    before.map(|at| at.to_utc() + chrono::Duration::hours(1))
                }
            },
        };
        utc.ok_or_else(|| SqlError::new(sqlstate::DATETIME_FIELD_OVERFLOW, "timestamp out of range"))
    }
}

/// The zone `name` names; 22023 if none.
pub fn time_zone(name: &str) -> Result<Zone, SqlError> {
    let trimmed = name.trim();
    if trimmed.eq_ignore_ascii_case("utc") || trimmed.eq_ignore_ascii_case("z") || trimmed.eq_ignore_ascii_case("gmt") {
        return Ok(Zone::Fixed(chrono::FixedOffset::east_opt(0).expect("zero offset")));
    }
    if let Ok(zone) = trimmed.parse::<chrono_tz::Tz>() {
        return Ok(Zone::Named(zone));
    }
    if let Some(seconds) = offset_seconds(trimmed)
        && let Some(offset) = chrono::FixedOffset::east_opt(seconds)
    {
        return Ok(Zone::Fixed(offset));
    }
    Err(SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, format!("time zone \"{name}\" not recognized")))
}

/// `+HH[:MM]` / `-HH[:MM]` as seconds east of Greenwich.
fn offset_seconds(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':').unwrap_or((rest, "0"));
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours <= 15 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// Runs `body` per row over the arguments as arrays, keeping a call on
/// scalars scalar.
pub(crate) fn per_row(
    args: &ScalarFunctionArgs,
    body: impl Fn(&[ArrayRef]) -> Result<ArrayRef, SqlError>,
) -> DfResult<ColumnarValue> {
    let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let rows = if scalar { 1 } else { args.number_rows };
    let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
    let result = body(&arrays)?;
    if scalar {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
    }
    Ok(ColumnarValue::Array(result))
}

/// Reads `text` by a `to_char` template (`to_date`, `to_timestamp`): each
/// numeric pattern takes up to its width in digits, month and day names
/// match in any case, FM is ignored, and any other template character skips
/// one character of input (PostgreSQL's default, non-FX, reading).
pub fn parse_with_template(text: &str, template: &str) -> Result<NaiveDateTime, SqlError> {
    let bad = || {
        SqlError::new(
            sqlstate::INVALID_DATETIME_FORMAT,
            format!("invalid value \"{text}\" for template \"{template}\""),
        )
    };
    let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut micros) = (1, 1, 1, 0, 0, 0, 0);
    let mut pm = None;
    let mut input = text;
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("FM").or_else(|| rest.strip_prefix("fm")) {
            rest = after;
            continue;
        }
        let Some(pattern) = PATTERNS.iter().find(|p| rest.starts_with(**p)) else {
            let c = rest.chars().next().expect("non-empty");
            rest = &rest[c.len_utf8()..];
            if let Some(skipped) = input.chars().next()
                && !skipped.is_ascii_digit()
            {
                input = &input[skipped.len_utf8()..];
            }
            continue;
        };
        rest = &rest[pattern.len()..];
        input = input.trim_start();
        let upper = pattern.to_ascii_uppercase();
        let names: Option<Vec<&str>> = match upper.as_str() {
            "MONTH" => Some(MONTHS.to_vec()),
            "MON" => Some(MONTHS.iter().map(|m| &m[..3]).collect()),
            "DAY" => Some(DAYS.to_vec()),
            "DY" => Some(DAYS.iter().map(|d| &d[..3]).collect()),
            _ => None,
        };
        if let Some(names) = names {
            let index = names
                .iter()
                .position(|name| input.get(..name.len()).is_some_and(|head| head.eq_ignore_ascii_case(name)))
                .ok_or_else(bad)?;
            input = &input[names[index].len()..];
            if upper.starts_with("MON") {
                month = index as u32 + 1;
            }
            continue;
        }
        if matches!(upper.as_str(), "AM" | "PM" | "A.M." | "P.M.") {
            let head = input.get(..upper.len()).ok_or_else(bad)?.to_ascii_uppercase();
            pm = Some(head.starts_with('P'));
            input = &input[upper.len()..];
            continue;
        }
        let width = match upper.as_str() {
            "YYYY" => 4,
            "DDD" | "YYY" | "MS" => 3,
            "US" => 6,
            "Q" => 1,
            _ => 2,
        };
        let end = input.char_indices().take(width).take_while(|(_, c)| c.is_ascii_digit()).count();
        let value: u32 = input[..end].parse().map_err(|_| bad())?;
        input = &input[end..];
        match upper.as_str() {
            "YYYY" => year = value as i32,
            "YY" => year = 2000 + value as i32,
            "MM" => month = value,
            "DD" => day = value,
            "HH24" | "HH12" | "HH" => hour = value,
            "MI" => minute = value,
            "SS" => second = value,
            "MS" => micros = value * 1_000,
            "US" => micros = value,
            _ => {}
        }
    }
    if let Some(pm) = pm {
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let out_of_range =
        || SqlError::new(sqlstate::DATETIME_FIELD_OVERFLOW, format!("date/time field value out of range: \"{text}\""));
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(out_of_range)?;
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros).ok_or_else(out_of_range)?;
    Ok(date.and_time(time))
}

/// `to_date(text, template)`, `to_timestamp(text, template)` and
/// `to_timestamp(seconds since 1970)`, over DataFusion's (which take
/// strftime formats).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FromText {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for FromText {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.name {
            "to_date" => DataType::Date32,
            _ => DataType::Timestamp(TimeUnit::Microsecond, Some(crate::types::UTC.into())),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let to_date = self.name == "to_date";
        per_row(&args, |arrays| {
            if let [seconds] = arrays {
                let seconds = cast(seconds, &DataType::Float64).map_err(|e| SqlError::from_arrow(&e))?;
                let micros: PrimitiveArray<TimestampMicrosecondType> = seconds
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|s| s.map(|s| (s * 1_000_000.0).round() as i64))
                    .collect();
                return Ok(Arc::new(micros.with_timezone(crate::types::UTC)) as ArrayRef);
            }
            let [texts, templates] = arrays else {
                return Err(SqlError::new(
                    sqlstate::UNDEFINED_FUNCTION,
                    format!("function {} does not exist", self.name),
                ));
            };
            let texts = cast(texts, &DataType::Utf8).map_err(|e| SqlError::from_arrow(&e))?;
            let templates = cast(templates, &DataType::Utf8).map_err(|e| SqlError::from_arrow(&e))?;
            let (texts, templates) = (texts.as_string::<i32>(), templates.as_string::<i32>());
            let mut parsed = Vec::with_capacity(texts.len());
            for (text, template) in texts.iter().zip(templates.iter()) {
                parsed.push(match text.zip(template) {
                    Some((text, template)) => Some(parse_with_template(text, template)?),
                    None => None,
                });
            }
            if to_date {
                let days: Date32Array =
                    parsed.iter().map(|p| p.map(|p| p.date().num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)).collect();
                return Ok(Arc::new(days) as ArrayRef);
            }
            let micros: PrimitiveArray<TimestampMicrosecondType> =
                parsed.iter().map(|p| p.map(|p| p.and_utc().timestamp_micros())).collect();
            Ok(Arc::new(micros.with_timezone(crate::types::UTC)) as ArrayRef)
        })
    }
}

/// `clock_timestamp()`: the time of the call, unlike `now()` (the
/// statement's start).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ClockTimestamp {
    signature: Signature,
}

impl ScalarUDFImpl for ClockTimestamp {
    fn name(&self) -> &str {
        "clock_timestamp"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, Some(crate::types::UTC.into())))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let micros = chrono::Utc::now().timestamp_micros();
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(Some(micros), Some(crate::types::UTC.into()))))
    }
}

/// `to_char(value, template)` for dates, timestamps and numbers.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToChar {
    signature: Signature,
}

impl ToChar {
    fn new() -> ToChar {
        ToChar { signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for ToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        per_row(&args, |arrays| {
            let [values, templates] = arrays else { return Err(SqlError::internal("to_char takes two arguments")) };
            let templates = cast(templates, &DataType::Utf8).map_err(|e| SqlError::from_arrow(&e))?;
            let templates = templates.as_string::<i32>();
            let numbers = match values.data_type() {
                DataType::Date32 | DataType::Timestamp(_, _) => None,
                DataType::Null => Some(cast(values, &DataType::Float64).map_err(|e| SqlError::from_arrow(&e))?),
                other if other.is_numeric() => {
                    Some(cast(values, &DataType::Float64).map_err(|e| SqlError::from_arrow(&e))?)
                }
                other => {
                    return Err(SqlError::new(
                        sqlstate::UNDEFINED_FUNCTION,
                        format!("function to_char({other}, text) does not exist"),
                    ));
                }
            };
            let mut out = StringBuilder::new();
            for row in 0..values.len() {
                if values.is_null(row) || templates.is_null(row) {
                    out.append_null();
                    continue;
                }
                let template = templates.value(row);
                match &numbers {
                    Some(numbers) => {
                        out.append_value(format_number(numbers.as_primitive::<Float64Type>().value(row), template))
                    }
                    None => {
                        out.append_option(timestamp_at(values.as_ref(), row).map(|t| format_timestamp(&t, template)))
                    }
                }
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// `age(later, earlier)`, and `age(t)` from midnight of today.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Age {
    signature: Signature,
}

impl Age {
    fn new() -> Age {
        Age { signature: Signature::one_of(vec![TypeSignature::Any(1), TypeSignature::Any(2)], Volatility::Stable) }
    }
}

impl ScalarUDFImpl for Age {
    fn name(&self) -> &str {
        "age"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        if let Some(other) = arg_types.iter().find(|t| !is_datetime(t) && !t.is_null()) {
            return Err(
                SqlError::new(sqlstate::UNDEFINED_FUNCTION, format!("function age({other}) does not exist")).into()
            );
        }
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        per_row(&args, |arrays| {
            let midnight = chrono::Utc::now().date_naive().and_time(NaiveTime::MIN);
            let mut out = IntervalMonthDayNanoBuilder::new();
            for row in 0..arrays.first().map_or(0, |a| a.len()) {
                let at = |index: usize| {
                    let array = arrays.get(index)?;
                    if array.is_null(row) { None } else { timestamp_at(array.as_ref(), row) }
                };
                let pair = match arrays.len() {
                    1 => at(0).map(|earlier| (midnight, earlier)),
                    _ => at(0).zip(at(1)),
                };
                out.append_option(pair.map(|(later, earlier)| age(later, earlier)));
            }
            Ok(Arc::new(out.finish()) as ArrayRef)
        })
    }
}

/// Days in `month` (1-12) of `year`.
fn days_in_month(year: i32, month: u32) -> i32 {
    let next =
        if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    match (first, next) {
        (Some(first), Some(next)) => (next - first).num_days() as i32,
        _ => 30,
    }
}

/// `age(later, earlier)`: the difference as years, months and days of the
/// calendar (PostgreSQL's timestamp_age), not as a number of days.
pub fn age(later: NaiveDateTime, earlier: NaiveDateTime) -> IntervalMonthDayNano {
    let negative = later < earlier;
    let field = |t: &NaiveDateTime| {
        [
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
            i64::from(t.hour()),
            i64::from(t.minute()),
            i64::from(t.second()),
            i64::from(t.nanosecond() / 1_000),
        ]
    };
    let (a, b) = (field(&later), field(&earlier));
    let mut d: [i64; 7] = std::array::from_fn(|i| a[i] - b[i]);
    if negative {
        d.iter_mut().for_each(|v| *v = -*v);
    }
    let [year, month, day, hour, minute, second, micros] = &mut d;
    while *micros < 0 {
        *micros += MICROS_PER_SECOND;
        *second -= 1;
    }
    while *second < 0 {
        *second += 60;
        *minute -= 1;
    }
    while *minute < 0 {
        *minute += 60;
        *hour -= 1;
    }
    while *hour < 0 {
        *hour += 24;
        *day -= 1;
    }
    while *day < 0 {
        // Borrow the length of the earlier timestamp's month, as PostgreSQL does.
        let from = if negative { &later } else { &earlier };
        *day += i64::from(days_in_month(from.year(), from.month()));
        *month -= 1;
    }
    while *month < 0 {
        *month += 12;
        *year -= 1;
    }
    let sign = if negative { -1 } else { 1 };
    let time_micros = ((*hour * 60 + *minute) * 60 + *second) * MICROS_PER_SECOND + *micros;
    IntervalMonthDayNano::new(
        sign * (*year * 12 + *month) as i32,
        sign * *day as i32,
        i64::from(sign) * time_micros * 1_000,
    )
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// The template patterns `to_char` knows for dates and times, longest first
/// so that `MONTH` is not read as `MON` followed by `TH`.
const PATTERNS: [&str; 32] = [
    "MONTH", "Month", "month", "HH24", "HH12", "YYYY", "DAY", "Day", "day", "MON", "Mon", "mon", "DDD", "A.M.", "P.M.",
    "a.m.", "p.m.", "YYY", "HH", "MI", "SS", "MS", "US", "YY", "MM", "DD", "DY", "Dy", "dy", "AM", "PM", "Q",
];

/// `to_char(timestamp, template)` with PostgreSQL's template patterns:
/// YYYY, YY, MM, DD, DDD, D, HH24, HH12, HH, MI, SS, MS, US, AM/PM, Q,
/// Month/Mon/Day/Dy in three cases, the FM prefix (no padding) and
/// double-quoted literal text; anything else is copied.
pub fn format_timestamp(at: &NaiveDateTime, template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        let fill = !(rest.starts_with("FM") || rest.starts_with("fm"));
        if !fill {
            rest = &rest[2..];
        }
        if let Some(after) = rest.strip_prefix('"') {
            let end = after.find('"').unwrap_or(after.len());
            out.push_str(&after[..end]);
            rest = after.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some(after) = rest.strip_prefix('D').filter(|a| !a.starts_with(['D', 'A', 'Y', 'a', 'y'])) {
            out.push_str(&(at.weekday().num_days_from_sunday() + 1).to_string());
            rest = after;
            continue;
        }
        let Some(pattern) = PATTERNS.iter().find(|p| rest.starts_with(**p)) else {
            let c = rest.chars().next().expect("non-empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        };
        rest = &rest[pattern.len()..];
        out.push_str(&pattern_value(at, pattern, fill));
    }
    out
}

fn pattern_value(at: &NaiveDateTime, pattern: &str, fill: bool) -> String {
    let number = |value: u32, width: usize| if fill { format!("{value:0width$}") } else { value.to_string() };
    let word = |name: &str, width: usize| {
        let name = match pattern.chars().take(2).collect::<String>().as_str() {
            two if two.chars().all(|c| c.is_ascii_uppercase()) => name.to_ascii_uppercase(),
            two if two.chars().all(|c| c.is_ascii_lowercase()) => name.to_ascii_lowercase(),
            _ => name.to_string(),
        };
        if fill { format!("{name:width$}") } else { name }
    };
    let hour12 = match at.hour() % 12 {
        0 => 12,
        h => h,
    };
    let month = MONTHS[at.month0() as usize];
    let day = DAYS[at.weekday().num_days_from_sunday() as usize];
    let pm = at.hour() >= 12;
    match pattern {
        "YYYY" => number(at.year().unsigned_abs(), 4),
        "YYY" => number(at.year().unsigned_abs() % 1000, 3),
        "YY" => number(at.year().unsigned_abs() % 100, 2),
        "MM" => number(at.month(), 2),
        "DD" => number(at.day(), 2),
        "DDD" => number(at.ordinal(), 3),
        "HH24" => number(at.hour(), 2),
        "HH12" | "HH" => number(hour12, 2),
        "MI" => number(at.minute(), 2),
        "SS" => number(at.second(), 2),
        "MS" => number(at.nanosecond() / 1_000_000, 3),
        "US" => number(at.nanosecond() / 1_000, 6),
        "Q" => at.month0().div_euclid(3).wrapping_add(1).to_string(),
        "MONTH" | "Month" | "month" => word(month, 9),
        "MON" | "Mon" | "mon" => word(&month[..3], 3),
        "DAY" | "Day" | "day" => word(day, 9),
        "DY" | "Dy" | "dy" => word(&day[..3], 3),
        "AM" | "PM" => (if pm { "PM" } else { "AM" }).to_string(),
        "A.M." | "P.M." => (if pm { "P.M." } else { "A.M." }).to_string(),
        "a.m." | "p.m." => (if pm { "p.m." } else { "a.m." }).to_string(),
        _ => (if pm { "pm" } else { "am" }).to_string(),
    }
}

/// `to_char(number, template)` with the patterns 9 (digit, blank when a
/// leading zero), 0 (digit), `.` or D (decimal point), `,` or G (group
/// separator, blank before the first digit) and the FM prefix (no padding,
/// no trailing fractional zeros from 9s). The sign takes one position
/// before the first digit; a value wider than the template prints as `#`s.
pub fn format_number(value: f64, template: &str) -> String {
    let fill = !(template.starts_with("FM") || template.starts_with("fm"));
    let template = if fill { template } else { &template[2..] };
    let point = template.find(['.', 'D']);
    let (integer_part, fraction_part) = match point {
        Some(at) => (&template[..at], &template[at + 1..]),
        None => (template, ""),
    };
    let integer_digits = integer_part.chars().filter(|c| matches!(c, '9' | '0')).count();
    let fraction_digits = fraction_part.chars().filter(|c| matches!(c, '9' | '0')).count();
    let rounded = format!("{:.*}", fraction_digits, value.abs());
    let (whole, fraction) = rounded.split_once('.').unwrap_or((&rounded, ""));
    let whole = whole.trim_start_matches('0');
    if whole.len() > integer_digits || !value.is_finite() {
        let hashes: String = template.chars().map(|c| if matches!(c, '9' | '0') { '#' } else { c }).collect();
        return if fill { format!(" {hashes}") } else { hashes };
    }
    let padded = format!("{whole:0>integer_digits$}");
    let mut digits = padded.chars();
    let mut out = String::new();
    let mut started = false;
    let integer_chars: Vec<char> = integer_part.chars().collect();
    let last_digit = integer_chars.iter().rposition(|c| matches!(c, '9' | '0'));
    for (index, c) in integer_chars.iter().enumerate() {
        match c {
            '9' | '0' => {
                let digit = digits.next().unwrap_or('0');
                // A zero value with no fraction still shows its last digit.
                let last_shown = Some(index) == last_digit && point.is_none();
                if digit != '0' || *c == '0' || last_shown {
                    started = true;
                }
                out.push(if started { digit } else { ' ' });
            }
            ',' | 'G' => out.push(if started { ',' } else { ' ' }),
            other => out.push(*other),
        }
    }
    if point.is_some() {
        out.push('.');
    }
    let mut fraction_digits = fraction.chars();
    let mut fraction_out = String::new();
    let mut trimmable = 0;
    for c in fraction_part.chars() {
        match c {
            '9' | '0' => {
                let digit = fraction_digits.next().unwrap_or('0');
                fraction_out.push(digit);
                trimmable = if c == '0' || digit != '0' { 0 } else { trimmable + 1 };
            }
            other => {
                fraction_out.push(other);
                trimmable = 0;
            }
        }
    }
    if !fill {
        fraction_out.truncate(fraction_out.len() - trimmable);
    }
    out.push_str(&fraction_out);
    let sign = if value < 0.0 && (whole.chars().chain(fraction.chars()).any(|c| c != '0')) {
        "-"
    } else if fill {
        " "
    } else {
        ""
    };
    let first = out.find(|c: char| c != ' ').unwrap_or(out.len());
    out.insert_str(first, sign);
    if fill { out } else { out.trim_start().to_string() }
}

/// A timestamp value of `array` at `row` as a date and time (UTC for zoned ones).
pub fn timestamp_at(array: &dyn Array, row: usize) -> Option<NaiveDateTime> {
    let micros = match array.data_type() {
        DataType::Date32 => {
            let days = array.as_primitive::<datafusion::arrow::datatypes::Date32Type>().value(row);
            return NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
                .map(|d| d.and_time(NaiveTime::MIN));
        }
        DataType::Timestamp(TimeUnit::Second, _) => array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.as_primitive::<TimestampMicrosecondType>().value(row),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            array.as_primitive::<TimestampNanosecondType>().value(row).div_euclid(1_000)
        }
        _ => return None,
    };
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").expect("test timestamp")
    }

    #[test]
    fn timestamps_read_in_postgres_forms() {
        let micros = |text: &str| at(text).and_utc().timestamp_micros();
        for (input, want) in [
            ("2024-03-05 10:00", "2024-03-05 10:00:00"),
            ("2024-03-05", "2024-03-05 00:00:00"),
            ("2024-03-05T10:00:01.5", "2024-03-05 10:00:01.5"),
            (" 2024-3-5 1:02:03.0000005 ", "2024-03-05 01:02:03.000001"),
            ("2024-03-05 10:00+05", "2024-03-05 10:00:00"),
            ("epoch", "1970-01-01 00:00:00"),
        ] {
            assert_eq!(timestamp_micros(input, false).unwrap(), micros(want), "{input}");
        }
        for (input, want) in [
            ("2024-01-01 00:00+00", "2024-01-01 00:00:00"),
            ("2024-01-01 05:30:00+05:30", "2024-01-01 00:00:00"),
            ("2024-01-01T00:00:00Z", "2024-01-01 00:00:00"),
            ("2024-01-01 00:00:00 -0100", "2024-01-01 01:00:00"),
            ("2024-01-01 00:00 UTC", "2024-01-01 00:00:00"),
            ("2024-01-01", "2024-01-01 00:00:00"),
        ] {
            assert_eq!(timestamp_micros(input, true).unwrap(), micros(want), "{input}");
        }
    }

    #[test]
    fn bad_timestamps_fail_as_postgres() {
        for input in ["", "2024", "2024-03", "10:00", "2024-03-05 10", "2024-03-05 10:00 +x"] {
            let error = timestamp_micros(input, false).unwrap_err();
            assert_eq!(error.sqlstate(), sqlstate::INVALID_DATETIME_FORMAT, "{input}");
        }
        assert_eq!(
            timestamp_micros("abc", true).unwrap_err().message(),
            r#"invalid input syntax for type timestamp with time zone: "abc""#
        );
        for input in ["2024-13-01", "2024-02-30", "2024-01-01 25:00"] {
            assert_eq!(date_days(input).unwrap_err().sqlstate(), sqlstate::DATETIME_FIELD_OVERFLOW, "{input}");
        }
        assert_eq!(date_days("2024-03-05 10:00").unwrap(), 19_787);
    }

    #[test]
    fn age_counts_calendar_months() {
        let text = |later: &str, earlier: &str| crate::text_output::interval_text(age(at(later), at(earlier)));
        assert_eq!(text("2024-03-05 00:00:00", "2024-01-01 00:00:00"), "2 mons 4 days");
        assert_eq!(text("2024-01-01 00:00:00", "2024-03-05 10:00:01"), "-2 mons -4 days -10:00:01");
        assert_eq!(text("2023-01-31 00:00:00", "2022-12-30 00:00:00"), "1 mon 1 day");
        assert_eq!(text("2024-03-01 00:00:00", "2000-02-29 12:00:00.25"), "24 years 11:59:59.75");
        assert_eq!(text("2024-03-01 00:00:00", "2024-03-01 00:00:00"), "00:00:00");
    }

    #[test]
    fn timestamps_format_with_templates() {
        let t = at("2024-03-05 14:07:09.5");
        assert_eq!(format_timestamp(&t, "YYYY-MM-DD"), "2024-03-05");
        assert_eq!(
            format_timestamp(&t, "YYYY-MM-DD HH24:MI:SS Mon Month Day Dy FMMonth FMDD HH12 AM pm MS US DDD Q"),
            "2024-03-05 14:07:09 Mar March     Tuesday   Tue March 5 02 PM pm 500 500000 065 1"
        );
        assert_eq!(format_timestamp(&t, "\"day\" D, MONTH dy"), "day 3, MARCH     tue");
    }

    #[test]
    fn templates_read_dates() {
        assert_eq!(parse_with_template("05 Mar 2024", "DD Mon YYYY").unwrap(), at("2024-03-05 00:00:00"));
        assert_eq!(
            parse_with_template("2024-03-05 02:07:09 PM", "YYYY-MM-DD HH12:MI:SS AM").unwrap(),
            at("2024-03-05 14:07:09")
        );
        assert_eq!(parse_with_template("20240305", "YYYYMMDD").unwrap(), at("2024-03-05 00:00:00"));
        assert_eq!(parse_with_template("x", "YYYY").unwrap_err().sqlstate(), sqlstate::INVALID_DATETIME_FORMAT);
        assert_eq!(
            parse_with_template("2024-02-30", "YYYY-MM-DD").unwrap_err().sqlstate(),
            sqlstate::DATETIME_FIELD_OVERFLOW
        );
    }

    #[test]
    fn numbers_format_with_templates() {
        assert_eq!(format_number(1234.5, "9,999.99"), " 1,234.50");
        assert_eq!(format_number(-12.3, "000.00"), "-012.30");
        assert_eq!(format_number(5.0, "FM999"), "5");
        assert_eq!(format_number(123456.0, "999"), " ###");
        assert_eq!(format_number(0.5, "9.99"), "  .50");
        assert_eq!(format_number(1234.567, "FM9999.00"), "1234.57");
        assert_eq!(format_number(1.5, "FM9.99"), "1.5");
        assert_eq!(format_number(0.0, "999"), "   0");
        assert_eq!(format_number(-5.0, "999"), "  -5");
    }
}
