//! PostgreSQL functions that clients and ORMs call at connect time and that
//! DataFusion lacks or answers differently.
//!
//! - `version()`: drivers (e.g. SQLAlchemy) parse "PostgreSQL N.M" from it;
//!   DataFusion's own answers "Apache DataFusion ...".
//! - `current_schema()`, `current_database()`: constants for the spine
//!   (one database, one schema).
//! - `borealis_replica_lag()`: on a reader, milliseconds from the writer
//!   acknowledging the newest commit to this reader's read point passing it
//!   (NULL on the writer).
//! - `gen_random_uuid()`: DataFusion's `uuid()` (a random version 4 UUID,
//!   as text) under PostgreSQL's name.
//! - `format(template, args...)`: `%s`, `%I`, `%L` and `%%`, the values
//!   written as PostgreSQL writes them (`crate::text_output`).
//! - `div(a, b)`: the quotient truncated toward zero.
//! - `borealis_buffer_cache()`: the instance's buffer cache counters as JSON
//!   (hits, misses, hit_ratio, evictions, bytes, capacity_bytes).

use crate::error::{SqlError, sqlstate};
use crate::volume::Volume;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, create_udf,
};
use std::sync::Arc;

/// Debug, PartialEq, Eq and Hash for a UDF struct with a `name` field:
/// functions are identified by name (one instance per name and session).
macro_rules! identified_by_name {
    ($udf:ident) => {
        impl std::fmt::Debug for $udf {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($udf)).field("name", &self.name).finish()
            }
        }

        impl PartialEq for $udf {
            fn eq(&self, other: &Self) -> bool {
                self.name == other.name
            }
        }

        impl Eq for $udf {}

        impl std::hash::Hash for $udf {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.name.hash(state);
            }
        }
    };
}
pub(crate) use identified_by_name;

/// The PostgreSQL version Borealis speaks (what `server_version` should report too).
pub const POSTGRES_VERSION: &str = "16.6";
/// The one database name.
pub const DATABASE_NAME: &str = "postgres";
/// The one role, a superuser.
pub const SUPERUSER_NAME: &str = "postgres";

/// Registers the functions on a session's DataFusion state.
pub fn register(state: &mut SessionState) -> DfResult<()> {
    let version = format!(
        "PostgreSQL {POSTGRES_VERSION} (Borealis {}) on {}, compiled by rustc",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    for (name, value) in
        [("version", version), ("current_schema", "public".into()), ("current_database", DATABASE_NAME.into())]
    {
        let value = ScalarValue::Utf8(Some(value));
        let udf = create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
        );
        state.register_udf(Arc::new(udf))?;
    }
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(Format {
        signature: Signature::variadic_any(Volatility::Immutable),
    })))?;
    let div = create_udf(
        "div",
        vec![DataType::Float64, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let [a, b] = arrays.as_slice() else { return exec_err!("div takes two arguments") };
            let (a, b) = (a.as_primitive::<Float64Type>(), b.as_primitive::<Float64Type>());
            let mut out = Float64Builder::new();
            for (a, b) in a.iter().zip(b.iter()) {
                match (a, b) {
                    (Some(_), Some(0.0)) => {
                        return Err(SqlError::new(sqlstate::DIVISION_BY_ZERO, "division by zero").into());
                    }
                    (Some(a), Some(b)) => out.append_value((a / b).trunc()),
                    _ => out.append_null(),
                }
            }
            let result: ArrayRef = Arc::new(out.finish());
            if scalar {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
            }
            Ok(ColumnarValue::Array(result))
        }),
    );
    state.register_udf(Arc::new(div))?;
    crate::json::register(state)?;
    let uuid = datafusion::functions::string::uuid().as_ref().clone().with_aliases(["gen_random_uuid"]);
    state.register_udf(Arc::new(uuid))?;
    for strings in [datafusion::functions::unicode::character_length(), datafusion::functions::string::octet_length()] {
        let name = if strings.name() == "octet_length" { "octet_length" } else { "length" };
        let signature = Signature::any(1, Volatility::Immutable);
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(BytesLength { name, strings, signature })))?;
    }
    Ok(())
}

/// `length` and `octet_length` of bytea (its bytes), over DataFusion's,
/// which take strings only and still answer for them.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BytesLength {
    name: &'static str,
    strings: Arc<ScalarUDF>,
    signature: Signature,
}

impl BytesLength {
    fn is_bytes(data_type: &DataType) -> bool {
        matches!(data_type, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
    }
}

impl ScalarUDFImpl for BytesLength {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> DfResult<DataType> {
        match args {
            [one] if Self::is_bytes(one) => Ok(DataType::Int32),
            _ => {
                let coerced = self.strings.coerce_types(args).unwrap_or_else(|_| args.to_vec());
                self.strings.return_type(&coerced)
            }
        }
    }

    fn coerce_types(&self, args: &[DataType]) -> DfResult<Vec<DataType>> {
        match args {
            [one] if Self::is_bytes(one) => Ok(vec![DataType::Binary]),
            _ => self.strings.coerce_types(args).or_else(|_| Ok(args.to_vec())),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{} takes one argument", self.name);
        };
        if !Self::is_bytes(&value.data_type()) {
            return self.strings.invoke_with_args(args);
        }
        crate::datetime::per_row(&args, |arrays| {
            let bytes = datafusion::arrow::compute::cast(&arrays[0], &DataType::Binary)
                .map_err(|e| SqlError::from_arrow(&e))?;
            let lengths: datafusion::arrow::array::Int32Array =
                bytes.as_binary::<i32>().iter().map(|b| b.map(|b| b.len() as i32)).collect();
            Ok(Arc::new(lengths) as ArrayRef)
        })
    }
}

/// `format(template, args...)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: Signature,
}

impl ScalarUDFImpl for Format {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let mut texts = Vec::with_capacity(args.args.len());
        for arg in &args.args {
            let array = arg.to_array(rows)?;
            let text = match array.data_type() {
                DataType::Null => datafusion::arrow::array::new_null_array(&DataType::Utf8, rows),
                _ => crate::text_output::to_text(&array)?,
            };
            texts.push(text);
        }
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let value = |index: usize| {
                texts.get(index).and_then(|a| {
                    let a = a.as_string::<i32>();
                    a.is_valid(row).then(|| a.value(row))
                })
            };
            let Some(template) = value(0) else {
                out.append_null();
                continue;
            };
            out.append_value(format_row(template, texts.len() - 1, |i| value(i + 1))?);
        }
        let result: ArrayRef = Arc::new(out.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// One `format` result: `%s` the value (NULL as nothing), `%I` an
/// identifier quoted when needed, `%L` a literal quoted (NULL unquoted).
fn format_row<'a>(template: &str, count: usize, value: impl Fn(usize) -> Option<&'a str>) -> Result<String, SqlError> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let kind = chars
            .next()
            .ok_or_else(|| SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, "unterminated format() type specifier"))?;
        if kind == '%' {
            out.push('%');
            continue;
        }
        if next >= count {
            return Err(SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, "too few arguments for format()"));
        }
        let argument = value(next);
        next += 1;
        match (kind, argument) {
            ('s', argument) => out.push_str(argument.unwrap_or("")),
            ('I', Some(name)) => out.push_str(&crate::pg_catalog::quote_ident(name)),
            ('I', None) => {
                return Err(SqlError::new(
                    sqlstate::NULL_VALUE_NOT_ALLOWED,
                    "null values cannot be formatted as an SQL identifier",
                ));
            }
            ('L', Some(literal)) => out.push_str(&format!("'{}'", literal.replace('\'', "''"))),
            ('L', None) => out.push_str("NULL"),
            (other, _) => {
                return Err(SqlError::new(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("unrecognized format() type specifier \"{other}\""),
                ));
            }
        }
    }
    Ok(out)
}

/// Registers the functions that ask the instance's volume.
pub fn register_volume(state: &mut SessionState, volume: &Arc<dyn Volume>) -> DfResult<()> {
    let lag = |volume: &dyn Volume| ScalarValue::Float64(volume.replica_lag().map(|lag| lag.as_secs_f64() * 1000.0));
    let cache = |volume: &dyn Volume| {
        ScalarValue::Utf8(volume.cache_stats().map(|s| {
            format!(
                r#"{{"hits": {}, "misses": {}, "hit_ratio": {:.4}, "evictions": {}, "bytes": {}, "capacity_bytes": {}}}"#,
                s.hits,
                s.misses,
                s.hit_ratio(),
                s.evictions,
                s.bytes,
                s.capacity_bytes
            )
        }))
    };
    type Answer = fn(&dyn Volume) -> ScalarValue;
    let functions: [(&str, DataType, Answer); 2] =
        [("borealis_replica_lag", DataType::Float64, lag), ("borealis_buffer_cache", DataType::Utf8, cache)];
    for (name, data_type, answer) in functions {
        let volume = Arc::clone(volume);
        let udf = create_udf(
            name,
            vec![],
            data_type,
            Volatility::Volatile,
            Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(answer(volume.as_ref())))),
        );
        state.register_udf(Arc::new(udf))?;
    }
    Ok(())
}
