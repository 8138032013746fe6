//! json and jsonb: values, casts, operators and functions.
//!
//! Both are Arrow Utf8 holding the value's text, told apart from text by
//! field metadata ([`PG_TYPE_METADATA`]) that table columns and the
//! functions here set, so that clients are told oid 114 (json) or 3802
//! (jsonb). json keeps the text it was given (checked to be JSON); jsonb
//! keeps it normalized as PostgreSQL prints it: `{"a": 1, "b": [1, 2]}`,
//! object keys ordered by length then bytes, a repeated key's last value
//! kept. Numbers go through f64 (PostgreSQL keeps their digits), so jsonb
//! prints `1.0` as `1.0` but rounds digits beyond f64's.
//!
//! `crate::pg_rewrite` turns the PostgreSQL syntax into calls: `x::json`
//! and `x::jsonb` into `json_in(x)` and `jsonb_in(x)`, and the operators
//! `->`, `->>`, `#>`, `#>>`, `@>` and `?` into `json_get`,
//! `json_get_text`, `json_get_path`, `json_get_path_text`,
//! `jsonb_contains` and `jsonb_exists`.

use crate::error::{SqlError, sqlstate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The field metadata key naming a Utf8 field's PostgreSQL type ("json" or "jsonb").
pub const PG_TYPE_METADATA: &str = "borealis.pg_type";

/// Which of the two types a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Json,
    Jsonb,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Jsonb => "jsonb",
        }
    }

    /// A Utf8 field of this type.
    pub fn field(self, name: &str, nullable: bool) -> Field {
        Field::new(name, DataType::Utf8, nullable)
            .with_metadata(HashMap::from([(PG_TYPE_METADATA.to_string(), self.name().to_string())]))
    }

    /// The type a field holds, None for plain text and other types.
    pub fn of(field: &Field) -> Option<Kind> {
        match field.metadata().get(PG_TYPE_METADATA).map(String::as_str) {
            Some("json") => Some(Kind::Json),
            Some("jsonb") => Some(Kind::Jsonb),
            _ => None,
        }
    }

    /// `text` as a stored value of this type: checked (json) or normalized (jsonb).
    pub fn input(self, text: &str) -> Result<String, SqlError> {
        let value = parse(text)?;
        Ok(match self {
            Kind::Json => text.to_string(),
            Kind::Jsonb => jsonb_text(&value),
        })
    }
}

/// `text` parsed, or 22P02 as PostgreSQL's json input says.
pub fn parse(text: &str) -> Result<Value, SqlError> {
    serde_json::from_str(text).map_err(|_| {
        SqlError::new(sqlstate::INVALID_TEXT_REPRESENTATION, "invalid input syntax for type json")
            .with_detail(format!("Token \"{}\" is invalid.", text.trim().chars().take(40).collect::<String>()))
    })
}

/// jsonb's text form of `value` (see the module doc).
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes())));
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(key, out);
                out.push_str(": ");
                write_jsonb(&map[key], out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The text `->>` gives for a value: strings unquoted, null as SQL NULL.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(jsonb_text(other)),
    }
}

/// `value -> step`: a key of an object, or an element of an array by index
/// (negative from the end).
fn step<'a>(value: &'a Value, key: Step<'_>) -> Option<&'a Value> {
    match (value, key) {
        (Value::Object(map), Step::Key(key)) => map.get(key),
        (Value::Array(items), Step::Index(index)) => {
            let index = if index < 0 { items.len() as i64 + index } else { index };
            usize::try_from(index).ok().and_then(|i| items.get(i))
        }
        (Value::Array(items), Step::Key(key)) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(i64),
}

/// A path literal `{a,0,b}` as its steps.
fn path_steps(path: &str) -> Vec<String> {
    let inner = path.trim().trim_start_matches('{').trim_end_matches('}');
    if inner.is_empty() {
        return Vec::new();
    }
    inner.split(',').map(|part| part.trim().trim_matches('"').to_string()).collect()
}

/// Whether `container` contains `contained` (jsonb `@>`): objects by
/// their pairs, arrays by their elements in any order, scalars by equality.
fn contains(container: &Value, contained: &Value) -> bool {
    match (container, contained) {
        (Value::Object(a), Value::Object(b)) => b.iter().all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        (Value::Array(a), Value::Array(b)) => b.iter().all(|v| a.iter().any(|av| contains(av, v))),
        (Value::Array(a), scalar) if !scalar.is_array() && !scalar.is_object() => a.iter().any(|av| av == scalar),
        (a, b) => a == b,
    }
}

/// What a function computes per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Operation {
    /// `json_in(text)`, `jsonb_in(text)`.
    Input(Kind),
    /// `->`: json of the same kind as the argument.
    Get,
    /// `->>`.
    GetText,
    /// `#>`.
    GetPath,
    /// `#>>`.
    GetPathText,
    /// `@>`.
    Contains,
    /// `?`: a key of an object, or a string element of an array.
    Exists,
    /// `to_json(x)`, `to_jsonb(x)`.
    To(Kind),
}

/// A json function (see [`Operation`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonFunction {
    name: &'static str,
    operation: Operation,
    signature: Signature,
}

impl JsonFunction {
    fn new(name: &'static str, operation: Operation) -> JsonFunction {
        let arguments = match operation {
            Operation::Input(_) | Operation::To(_) => 1,
            _ => 2,
        };
        JsonFunction { name, operation, signature: Signature::any(arguments, Volatility::Immutable) }
    }

    /// The kind of the result, None for text and boolean results.
    fn result_kind(&self, first: Option<&Field>) -> Option<Kind> {
        match self.operation {
            Operation::Input(kind) | Operation::To(kind) => Some(kind),
            Operation::Get | Operation::GetPath => Some(first.and_then(Kind::of).unwrap_or(Kind::Jsonb)),
            _ => None,
        }
    }
}

impl ScalarUDFImpl for JsonFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.operation {
            Operation::Contains | Operation::Exists => DataType::Boolean,
            _ => DataType::Utf8,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let first = args.arg_fields.first().map(|f| f.as_ref());
        Ok(Arc::new(match (self.result_kind(first), self.return_type(&[])?) {
            (Some(kind), _) => kind.field(self.name, true),
            (None, data_type) => Field::new(self.name, data_type, true),
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let kind = self.result_kind(args.arg_fields.first().map(|f| f.as_ref()));
        let result = self.evaluate(&arrays, rows, kind)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

impl JsonFunction {
    fn evaluate(&self, arrays: &[ArrayRef], rows: usize, kind: Option<Kind>) -> Result<ArrayRef, SqlError> {
        let text = |array: &ArrayRef| -> Result<ArrayRef, SqlError> {
            match array.data_type() {
                DataType::Null => Ok(datafusion::arrow::array::new_null_array(&DataType::Utf8, array.len())),
                _ => crate::text_output::to_text(array).map_err(SqlError::from),
            }
        };
        let first = arrays.first().ok_or_else(|| SqlError::internal("json function without arguments"))?;
        if let Operation::To(kind) = self.operation {
            return to_json(first, kind);
        }
        let values = text(first)?;
        let values = values.as_string::<i32>();
        let second = arrays.get(1);
        let keys = second.map(text).transpose()?;
        let keys = keys.as_ref().map(|k| k.as_string::<i32>());
        let by_index = second.is_some_and(|a| a.data_type().is_integer());
        let mut texts = StringBuilder::new();
        let mut bools = BooleanBuilder::new();
        for row in 0..rows {
            let key = keys.and_then(|k| k.is_valid(row).then(|| k.value(row)));
            if values.is_null(row) || (second.is_some() && key.is_none()) {
                texts.append_null();
                bools.append_null();
                continue;
            }
            let input = values.value(row);
            if let Operation::Input(kind) = self.operation {
                texts.append_value(kind.input(input)?);
                continue;
            }
            let value = parse(input)?;
            let key = key.unwrap_or_default();
            match self.operation {
                Operation::Get | Operation::GetText => {
                    let found = step(
                        &value,
                        if by_index { Step::Index(key.parse().unwrap_or(i64::MAX)) } else { Step::Key(key) },
                    );
                    texts.append_option(match self.operation {
                        Operation::Get => found.map(|v| json_out(v, kind)),
                        _ => found.and_then(as_text),
                    });
                }
                Operation::GetPath | Operation::GetPathText => {
                    let steps = path_steps(key);
                    let found = steps.iter().try_fold(&value, |v, s| step(v, Step::Key(s)));
                    texts.append_option(match self.operation {
                        Operation::GetPath => found.map(|v| json_out(v, kind)),
                        _ => found.and_then(as_text),
                    });
                }
                Operation::Contains => bools.append_value(contains(&value, &parse(key)?)),
                Operation::Exists => bools.append_value(match &value {
                    Value::Object(map) => map.contains_key(key),
                    Value::Array(items) => items.iter().any(|i| i.as_str() == Some(key)),
                    Value::String(s) => s == key,
                    _ => false,
                }),
                Operation::Input(_) | Operation::To(_) => {}
            }
        }
        Ok(match self.operation {
            Operation::Contains | Operation::Exists => Arc::new(bools.finish()),
            _ => Arc::new(texts.finish()),
        })
    }
}

/// A value extracted by `->` or `#>` as text of the result's kind.
fn json_out(value: &Value, kind: Option<Kind>) -> String {
    match kind {
        Some(Kind::Json) => serde_json::to_string(value).unwrap_or_default(),
        _ => jsonb_text(value),
    }
}

/// `to_json(x)`: numbers and booleans as themselves, text as a JSON string.
fn to_json(values: &ArrayRef, kind: Kind) -> Result<ArrayRef, SqlError> {
    if let DataType::List(_) | DataType::LargeList(_) = values.data_type() {
        let lists = datafusion::arrow::compute::cast(
            values,
            &DataType::List(Arc::new(Field::new_list_field(list_item_type(values.data_type()), true))),
        )
        .map_err(|e| SqlError::from_arrow(&e))?;
        let lists = lists.as_list::<i32>();
        let mut out = StringBuilder::new();
        for row in 0..lists.len() {
            if lists.is_null(row) {
                out.append_null();
                continue;
            }
            let elements = to_json(&lists.value(row), kind)?;
            let elements = elements.as_string::<i32>();
            let items: Vec<&str> =
                (0..elements.len()).map(|i| if elements.is_null(i) { "null" } else { elements.value(i) }).collect();
            out.append_value(format!("[{}]", items.join(", ")));
        }
        return Ok(Arc::new(out.finish()));
    }
    let bare = values.data_type().is_numeric() || *values.data_type() == DataType::Boolean;
    let texts = match values.data_type() {
        DataType::Null => datafusion::arrow::array::new_null_array(&DataType::Utf8, values.len()),
        _ => crate::text_output::to_text(values)?,
    };
    let texts = texts.as_string::<i32>();
    let mut out = StringBuilder::new();
    for row in 0..texts.len() {
        if texts.is_null(row) {
            out.append_null();
            continue;
        }
        let text = texts.value(row);
        let value = if bare {
            serde_json::from_str(text).unwrap_or(Value::String(text.to_string()))
        } else {
            Value::String(text.to_string())
        };
        out.append_value(json_out(&value, Some(kind)));
    }
    Ok(Arc::new(out.finish()))
}

/// The element type of a list type.
fn list_item_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => item.data_type().clone(),
        other => other.clone(),
    }
}

/// `jsonb_build_object(k1, v1, ...)`: pairs of a key and a value.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for BuildObject {
    fn name(&self) -> &str {
        "jsonb_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(Arc::new(Kind::Jsonb.field(self.name(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(SqlError::new(
                sqlstate::INVALID_PARAMETER_VALUE,
                "argument list must have even number of elements",
            )
            .into());
        }
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let mut parts = Vec::with_capacity(args.args.len());
        for (arg, field) in args.args.iter().zip(&args.arg_fields) {
            let array = arg.to_array(rows)?;
            let json = match Kind::of(field) {
                Some(_) => array,
                None => to_json(&array, Kind::Jsonb)?,
            };
            parts.push(json);
        }
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let mut map = serde_json::Map::new();
            for pair in parts.chunks(2) {
                let (keys, values) = (pair[0].as_string::<i32>(), pair[1].as_string::<i32>());
                if keys.is_null(row) {
                    return Err(
                        SqlError::new(sqlstate::NULL_VALUE_NOT_ALLOWED, "argument 1: key must not be null").into()
                    );
                }
                let key = match parse(keys.value(row))? {
                    Value::String(s) => s,
                    other => jsonb_text(&other),
                };
                let value = if values.is_null(row) { Value::Null } else { parse(values.value(row))? };
                map.insert(key, value);
            }
            out.append_value(jsonb_text(&Value::Object(map)));
        }
        let result: ArrayRef = Arc::new(out.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// Registers the json functions.
pub fn register(state: &mut SessionState) -> DfResult<()> {
    let functions = [
        ("json_in", Operation::Input(Kind::Json)),
        ("jsonb_in", Operation::Input(Kind::Jsonb)),
        ("json_get", Operation::Get),
        ("json_get_text", Operation::GetText),
        ("json_get_path", Operation::GetPath),
        ("json_get_path_text", Operation::GetPathText),
        ("jsonb_contains", Operation::Contains),
        ("jsonb_exists", Operation::Exists),
        ("to_json", Operation::To(Kind::Json)),
        ("to_jsonb", Operation::To(Kind::Jsonb)),
        // Over the list `array_agg` made (see `crate::pg_rewrite`).
        ("json_agg", Operation::To(Kind::Json)),
        ("jsonb_agg", Operation::To(Kind::Jsonb)),
    ];
    for (name, operation) in functions {
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(JsonFunction::new(name, operation))))?;
    }
    let build = BuildObject { signature: Signature::variadic_any(Volatility::Immutable) };
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(build)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonb_normalizes_as_postgres() {
        let jsonb = |text: &str| Kind::Jsonb.input(text).unwrap();
        assert_eq!(jsonb(r#"{"b":[1,2],"a":1}"#), r#"{"a": 1, "b": [1, 2]}"#);
        assert_eq!(jsonb(r#"{"aa":1,"b":2,"a":3,"a":4}"#), r#"{"a": 4, "b": 2, "aa": 1}"#);
        assert_eq!(jsonb(r#" "x\ny" "#), r#""x\ny""#);
        assert_eq!(jsonb("[1.5, true, null]"), "[1.5, true, null]");
        assert_eq!(Kind::Json.input(r#"{"b":1, "a":2}"#).unwrap(), r#"{"b":1, "a":2}"#);
        let error = Kind::Json.input("{a}").unwrap_err();
        assert_eq!(error.sqlstate(), sqlstate::INVALID_TEXT_REPRESENTATION);
        assert_eq!(error.message(), "invalid input syntax for type json");
    }

    #[test]
    fn paths_and_containment() {
        let value = parse(r#"{"a": {"b": [10, 20]}, "c": "x"}"#).unwrap();
        let steps = path_steps("{a,b,1}");
        let found = steps.iter().try_fold(&value, |v, s| step(v, Step::Key(s)));
        assert_eq!(found, Some(&Value::from(20)));
        assert_eq!(step(&parse("[1,2,3]").unwrap(), Step::Index(-1)), Some(&Value::from(3)));
        assert!(contains(&value, &parse(r#"{"a": {"b": [20]}}"#).unwrap()));
        assert!(!contains(&value, &parse(r#"{"c": "y"}"#).unwrap()));
        assert_eq!(as_text(&Value::from("x")), Some("x".to_string()));
    }
}
