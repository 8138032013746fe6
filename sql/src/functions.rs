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
//! - `borealis_buffer_cache()`: the instance's buffer cache counters as JSON
//!   (hits, misses, hit_ratio, evictions, bytes, capacity_bytes).

use crate::volume::Volume;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
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
            datafusion::arrow::datatypes::DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(value.clone()))),
        );
        state.register_udf(Arc::new(udf))?;
    }
    Ok(())
}

/// Registers the functions that ask the instance's volume.
pub fn register_volume(state: &mut SessionState, volume: &Arc<dyn Volume>) -> DfResult<()> {
    use datafusion::arrow::datatypes::DataType;
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
