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

use crate::volume::Volume;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use std::sync::Arc;

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
    let volume = Arc::clone(volume);
    let udf = create_udf(
        "borealis_replica_lag",
        vec![],
        datafusion::arrow::datatypes::DataType::Float64,
        Volatility::Volatile,
        Arc::new(move |_args: &[ColumnarValue]| {
            let lag = volume.replica_lag().map(|lag| lag.as_secs_f64() * 1000.0);
            Ok(ColumnarValue::Scalar(ScalarValue::Float64(lag)))
        }),
    );
    state.register_udf(Arc::new(udf))?;
    Ok(())
}
