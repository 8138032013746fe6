//! Sequences: CREATE SEQUENCE's options, the engine's sequence state, and
//! `nextval`, `currval`, `setval`, `lastval` and `pg_get_serial_sequence`.
//!
//! A sequence is a catalog row ([`SequenceDef`]) plus a page of its own
//! holding its [`SequenceState`]. As in PostgreSQL, nextval is not
//! transactional: a value handed out is gone even if its transaction rolls
//! back. The writer keeps each sequence's current value in memory
//! ([`Sequences`]), loaded from its page on first use, and hands values out
//! from there (DataFusion calls the functions synchronously, row by row).
//!
//! Durability: the page holds a high-water mark, not the last value. When a
//! value passes the mark, the mark moves [`PREFETCH_VALUES`] values ahead (as
//! PostgreSQL logs 32 values per WAL record), and before the statement that
//! took the value returns or commits, the session writes the new mark in a
//! commit of its own (`Engine::persist_sequences`) and waits for it to be
//! durable. After a crash the next writer starts above the mark: values are
//! skipped, never repeated. A sequence created by a transaction that has not
//! committed yet keeps its mark in that transaction instead (its page does
//! not exist for anyone else).
//!
//! The functions read the catalog of the session's current statement, as
//! the `pg_catalog` functions do; a sequence is named by text
//! (`'s'`, `'public.s'`, `'"S"'`) or by its oid (`'s'::regclass`).

use crate::catalog::{Catalog, SearchPath, SequenceDef, SequenceEntry, SequenceState, TableId};
use crate::error::{SqlError, sqlstate};
use crate::pg_catalog::{FIRST_NORMAL_OID, OIDS_PER_TABLE};
use crate::provider::CatalogView;
use crate::types::SqlType;
use borealis_storage::ids::PageId;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int64Builder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::sql::sqlparser::ast::{Expr, SequenceOptions, UnaryOperator, Value};
use std::collections::HashMap;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Values the high-water mark moves ahead of the last value handed out:
/// one durable commit per this many nextval calls (PostgreSQL's
/// SEQ_LOG_VALS), and at most this many values skipped by a crash.
pub const PREFETCH_VALUES: i64 = 32;

/// The oid of a sequence (same scheme as tables: ids share one counter).
pub fn sequence_oid(def: &SequenceDef) -> i32 {
    i32::try_from(FIRST_NORMAL_OID + def.id.0 as i64 * OIDS_PER_TABLE).unwrap_or(0)
}

/// The bounds of a sequence's data type.
fn type_bounds(ty: SqlType) -> Result<(i64, i64), SqlError> {
    match ty {
        SqlType::Int2 => Ok((i16::MIN.into(), i16::MAX.into())),
        SqlType::Int4 => Ok((i32::MIN.into(), i32::MAX.into())),
        SqlType::Int8 => Ok((i64::MIN, i64::MAX)),
        _ => {
            Err(SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, "sequence type must be smallint, integer, or bigint"))
        }
    }
}

fn type_name(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Int2 => "smallint",
        SqlType::Int4 => "integer",
        _ => "bigint",
    }
}

fn option_int(expr: &Expr) -> Result<i64, SqlError> {
    let invalid = || SqlError::new(sqlstate::SYNTAX_ERROR, format!("sequence option value {expr} is not an integer"));
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => text.parse().map_err(|_| invalid()),
            _ => Err(invalid()),
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => option_int(expr)?.checked_neg().ok_or_else(invalid),
        Expr::UnaryOp { op: UnaryOperator::Plus, expr } => option_int(expr),
        Expr::Nested(expr) => option_int(expr),
        _ => Err(invalid()),
    }
}

fn invalid(message: String) -> SqlError {
    SqlError::new(sqlstate::INVALID_PARAMETER_VALUE, message)
}

/// The definition CREATE SEQUENCE `name` [AS `ty`] `options` describes
/// (PostgreSQL's defaults and checks). Id, page and uid are assigned by
/// `catalog::create_sequence`.
pub fn sequence_def(name: String, ty: SqlType, options: &[SequenceOptions]) -> Result<SequenceDef, SqlError> {
    let (type_min, type_max) = type_bounds(ty)?;
    let (mut increment, mut min, mut max, mut start, mut cache) = (1, None, None, None, 1);
    for option in options {
        match option {
            SequenceOptions::IncrementBy(expr, _) => increment = option_int(expr)?,
            SequenceOptions::MinValue(expr) => min = expr.as_ref().map(option_int).transpose()?,
            SequenceOptions::MaxValue(expr) => max = expr.as_ref().map(option_int).transpose()?,
            SequenceOptions::StartWith(expr, _) => start = Some(option_int(expr)?),
            SequenceOptions::Cache(expr) => cache = option_int(expr)?,
            SequenceOptions::Cycle(no_cycle) => {
                if !no_cycle {
                    return Err(SqlError::unsupported("CYCLE sequences"));
                }
            }
        }
    }
    if increment == 0 {
        return Err(invalid("INCREMENT must not be zero".into()));
    }
    if cache <= 0 {
        return Err(invalid(format!("CACHE ({cache}) must be greater than zero")));
    }
    let min = min.unwrap_or(if increment > 0 { 1 } else { type_min });
    let max = max.unwrap_or(if increment > 0 { type_max } else { -1 });
    for (what, value) in [("MINVALUE", min), ("MAXVALUE", max)] {
        if value < type_min || value > type_max {
            return Err(invalid(format!("{what} ({value}) is out of range for sequence data type {}", type_name(ty))));
        }
    }
    if min >= max {
        return Err(invalid(format!("MINVALUE ({min}) must be less than MAXVALUE ({max})")));
    }
    let start = start.unwrap_or(if increment > 0 { min } else { max });
    if start < min {
        return Err(invalid(format!("START value ({start}) cannot be less than MINVALUE ({min})")));
    }
    if start > max {
        return Err(invalid(format!("START value ({start}) cannot be greater than MAXVALUE ({max})")));
    }
    Ok(SequenceDef {
        id: TableId(0),
        name,
        ty,
        increment,
        min_value: min,
        max_value: max,
        start,
        cache,
        page: PageId(0),
        uid: 0,
        owned_by: None,
    })
}

/// One sequence's state in memory.
struct Live {
    def: Arc<SequenceDef>,
    /// The last value handed out (or, not `is_called`, the next one).
    last: i64,
    is_called: bool,
    /// The high-water mark to persist: no value past it was handed out.
    /// None: the state to persist is (`last`, `is_called`) itself.
    reserved: Option<i64>,
    /// What the sequence's page holds (or its creating transaction).
    persisted: SequenceState,
}

impl Live {
    fn from_state(def: Arc<SequenceDef>, state: SequenceState) -> Live {
        Live { def, last: state.last_value, is_called: state.is_called, reserved: None, persisted: state }
    }

    /// What the page must hold before any value handed out is used.
    fn wanted(&self) -> SequenceState {
        match self.reserved {
            Some(mark) => SequenceState { last_value: mark, is_called: true },
            None => SequenceState { last_value: self.last, is_called: self.is_called },
        }
    }

    fn next(&mut self) -> Result<i64, SqlError> {
        let def = &self.def;
        let next = if self.is_called { self.last.checked_add(def.increment) } else { Some(self.last) };
        let next = match next {
            Some(next) if next >= def.min_value && next <= def.max_value => next,
            _ if def.increment > 0 => {
                return Err(SqlError::new(
                    sqlstate::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                    format!("nextval: reached maximum value of sequence \"{}\" ({})", def.name, def.max_value),
                ));
            }
            _ => {
                return Err(SqlError::new(
                    sqlstate::SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                    format!("nextval: reached minimum value of sequence \"{}\" ({})", def.name, def.min_value),
                ));
            }
        };
        let covered = match self.reserved {
            Some(mark) if def.increment > 0 => next <= mark,
            Some(mark) => next >= mark,
            None => false,
        };
        if !covered {
            let ahead = def.increment.saturating_mul(PREFETCH_VALUES - 1);
            self.reserved = Some(next.saturating_add(ahead).clamp(def.min_value, def.max_value));
        }
        self.last = next;
        self.is_called = true;
        Ok(next)
    }

    fn set(&mut self, value: i64, is_called: bool) -> Result<(), SqlError> {
        let def = &self.def;
        if value < def.min_value || value > def.max_value {
            return Err(SqlError::new(
                sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
                format!(
                    "setval: value {value} is out of bounds for sequence \"{}\" ({}..{})",
                    def.name, def.min_value, def.max_value
                ),
            ));
        }
        self.last = value;
        self.is_called = is_called;
        self.reserved = None;
        Ok(())
    }
}

/// The engine's sequence state (writer), by sequence uid.
#[derive(Default)]
pub struct Sequences {
    live: Mutex<HashMap<u64, Live>>,
    /// Serialises writing high-water marks, so that a later mark never
    /// lands before an earlier one. Taken before the engine's commit lock.
    pub(crate) persist_lock: tokio::sync::Mutex<()>,
}

impl Sequences {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        self.live.lock().expect("sequence state lock poisoned")
    }

    /// The sequences of `catalog` whose state is not in memory yet.
    pub(crate) fn missing<'a>(&self, catalog: &'a Catalog) -> Vec<&'a SequenceEntry> {
        let live = self.live();
        catalog.sequences().filter(|entry| !live.contains_key(&entry.def.uid)).collect()
    }

    /// Takes a sequence's state as read from its page (unless another session loaded it first).
    pub(crate) fn insert_loaded(&self, def: Arc<SequenceDef>, state: SequenceState) {
        self.live().entry(def.uid).or_insert_with(|| Live::from_state(def, state));
    }

    /// The sequences of `catalog` whose page must be written: (uid, page, state).
    pub(crate) fn unpersisted(&self, catalog: &Catalog) -> Vec<(u64, PageId, SequenceState)> {
        let live = self.live();
        catalog
            .sequences()
            .filter_map(|entry| live.get(&entry.def.uid))
            .filter(|live| live.wanted() != live.persisted)
            .map(|live| (live.def.uid, live.def.page, live.wanted()))
            .collect()
    }

    /// Whether any sequence in memory has a mark to write.
    pub(crate) fn any_unpersisted(&self) -> bool {
        self.live().values().any(|live| live.wanted() != live.persisted)
    }

    /// Forgets what every sequence's page holds, so that each is written
    /// again: after ROLLBACK TO SAVEPOINT restored a write set in which the
    /// page of a sequence created by that transaction holds an older mark.
    pub(crate) fn forget_persisted(&self) {
        for live in self.live().values_mut() {
            live.persisted = SequenceState { last_value: i64::MIN, is_called: false };
        }
    }

    /// Records that the page of sequence `uid` holds `state`.
    pub(crate) fn persisted(&self, uid: u64, state: SequenceState) {
        if let Some(live) = self.live().get_mut(&uid) {
            live.persisted = state;
        }
    }

    fn with<T>(&self, def: &SequenceDef, f: impl FnOnce(&mut Live) -> Result<T, SqlError>) -> Result<T, SqlError> {
        let mut live = self.live();
        let live = live
            .get_mut(&def.uid)
            .ok_or_else(|| SqlError::internal(format_args!("sequence {} used before it was loaded", def.name)))?;
        f(live)
    }
}

/// What the session remembers of sequences (currval, lastval).
#[derive(Default)]
struct SessionValues {
    /// By sequence uid.
    current: HashMap<u64, i64>,
    last: Option<(u64, i64)>,
}

/// What the sequence functions of one session work with.
pub struct SequenceContext {
    sequences: Arc<Sequences>,
    view: Arc<CatalogView>,
    read_only: bool,
    values: Mutex<SessionValues>,
    /// nextval or setval ran since [`SequenceContext::take_used`] last looked.
    used: AtomicBool,
}

impl SequenceContext {
    pub fn new(sequences: Arc<Sequences>, view: Arc<CatalogView>, read_only: bool) -> SequenceContext {
        SequenceContext {
            sequences,
            view,
            read_only,
            values: Mutex::new(SessionValues::default()),
            used: AtomicBool::new(false),
        }
    }

    /// Whether nextval or setval ran since the last call: the session then
    /// has high-water marks to write before its statement returns. (Other
    /// sessions' marks are theirs to write: a plain query never waits for
    /// any lock.)
    pub fn take_used(&self) -> bool {
        self.used.swap(false, Ordering::Relaxed)
    }

    /// The catalog view the functions read (the session planner's).
    pub fn view(&self) -> Arc<CatalogView> {
        Arc::clone(&self.view)
    }

    fn values(&self) -> std::sync::MutexGuard<'_, SessionValues> {
        self.values.lock().expect("session sequence values lock poisoned")
    }

    fn refuse_on_reader(&self, function: &str) -> Result<(), SqlError> {
        if self.read_only {
            return Err(SqlError::new(
                sqlstate::READ_ONLY_SQL_TRANSACTION,
                format!("cannot execute {function}() in a read-only transaction"),
            ));
        }
        Ok(())
    }

    fn nextval(&self, def: &SequenceDef) -> Result<i64, SqlError> {
        self.refuse_on_reader("nextval")?;
        self.used.store(true, Ordering::Relaxed);
        let value = self.sequences.with(def, Live::next)?;
        let mut values = self.values();
        values.current.insert(def.uid, value);
        values.last = Some((def.uid, value));
        Ok(value)
    }

    fn currval(&self, def: &SequenceDef) -> Result<i64, SqlError> {
        self.values().current.get(&def.uid).copied().ok_or_else(|| {
            SqlError::new(
                sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("currval of sequence \"{}\" is not yet defined in this session", def.name),
            )
        })
    }

    fn setval(&self, def: &SequenceDef, value: i64, is_called: bool) -> Result<i64, SqlError> {
        self.refuse_on_reader("setval")?;
        self.used.store(true, Ordering::Relaxed);
        self.sequences.with(def, |live| live.set(value, is_called))?;
        if is_called {
            self.values().current.insert(def.uid, value);
        }
        Ok(value)
    }

    fn lastval(&self) -> Result<i64, SqlError> {
        self.values().last.map(|(_, value)| value).ok_or_else(|| {
            SqlError::new(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, "lastval is not yet defined in this session")
        })
    }
}

/// The sequence argument `arg` of row `row` names: by name (text) or oid (regclass).
fn resolve(
    catalog: &Catalog,
    path: &SearchPath,
    array: &ArrayRef,
    row: usize,
) -> Result<Option<Arc<SequenceDef>>, SqlError> {
    if array.is_null(row) {
        return Ok(None);
    }
    if array.data_type().is_integer() {
        let oids = cast(array, &DataType::Int64).map_err(|e| SqlError::from_arrow(&e))?;
        let oid = oids.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(row);
        return catalog
            .sequences()
            .find(|entry| i64::from(sequence_oid(&entry.def)) == oid)
            .map(|entry| Some(Arc::clone(&entry.def)))
            .ok_or_else(|| SqlError::new(sqlstate::UNDEFINED_TABLE, format!("no sequence with oid {oid}")));
    }
    let texts = cast(array, &DataType::Utf8).map_err(|e| SqlError::from_arrow(&e))?;
    let name = crate::ddl::text_name(texts.as_string::<i32>().value(row));
    if let Some(entry) = catalog.find_sequence(path, &name) {
        return Ok(Some(Arc::clone(&entry.def)));
    }
    if catalog.find_relation(path, &name).is_some() {
        return Err(SqlError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a sequence")));
    }
    Err(SqlError::undefined_table(&name.to_string()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Function {
    Nextval,
    Currval,
    Setval,
    Lastval,
    SerialSequence,
}

/// A sequence function of one session.
struct SequenceFunction {
    name: &'static str,
    function: Function,
    signature: Signature,
    context: Arc<SequenceContext>,
}

crate::functions::identified_by_name!(SequenceFunction);

impl ScalarUDFImpl for SequenceFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.function {
            Function::SerialSequence => DataType::Utf8,
            _ => DataType::Int64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // One call per row even when every argument is a constant: each row
        // of `SELECT nextval('s') FROM t` takes its own value.
        let rows = args.number_rows;
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let catalog = self.context.view.get();
        let path = self.context.view.path();
        let context = &self.context;
        if self.function == Function::SerialSequence {
            let mut out = StringBuilder::new();
            for row in 0..rows {
                out.append_option(serial_sequence(&catalog, &path, &arrays, row)?);
            }
            return Ok(ColumnarValue::Array(Arc::new(out.finish())));
        }
        let mut out = Int64Builder::with_capacity(rows);
        for row in 0..rows {
            let value = match self.function {
                Function::Lastval => Some(context.lastval()?),
                _ => match resolve(&catalog, &path, &arrays[0], row)? {
                    None => None,
                    Some(def) => match self.function {
                        Function::Nextval => Some(context.nextval(&def)?),
                        Function::Currval => Some(context.currval(&def)?),
                        _ => {
                            let values = cast(&arrays[1], &DataType::Int64)?;
                            let values: &Int64Array = values.as_primitive();
                            if values.is_null(row) {
                                None
                            } else {
                                let is_called = match arrays.get(2) {
                                    Some(flags) => {
                                        let flags = cast(flags, &DataType::Boolean)?;
                                        let flags = flags.as_boolean();
                                        flags.is_null(row) || flags.value(row)
                                    }
                                    None => true,
                                };
                                Some(context.setval(&def, values.value(row), is_called)?)
                            }
                        }
                    },
                },
            };
            out.append_option(value);
        }
        let result: ArrayRef = Arc::new(out.finish());
        if rows == 1 && args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// pg_get_serial_sequence(table, column): `public.t_col_seq` for a SERIAL
/// or identity column, NULL for any other column.
fn serial_sequence(
    catalog: &Catalog,
    path: &SearchPath,
    arrays: &[ArrayRef],
    row: usize,
) -> Result<Option<String>, SqlError> {
    let texts: Vec<ArrayRef> = arrays
        .iter()
        .map(|a| cast(a, &DataType::Utf8))
        .collect::<Result<_, _>>()
        .map_err(|e| SqlError::from_arrow(&e))?;
    if texts.iter().any(|a| a.is_null(row)) {
        return Ok(None);
    }
    let table = crate::ddl::text_name(texts[0].as_string::<i32>().value(row));
    let column = texts[1].as_string::<i32>().value(row);
    let entry = catalog.resolve_table(path, &table)?;
    if entry.def.column_index(column).is_none() {
        return Err(SqlError::new(
            sqlstate::UNDEFINED_COLUMN,
            format!("column \"{column}\" of relation \"{table}\" does not exist"),
        ));
    }
    let owner = Some((entry.def.id, column.to_string()));
    Ok(catalog.sequences().find(|s| s.def.owned_by == owner).map(|s| {
        let schema = crate::pg_catalog::quote_ident(&s.schema_name);
        format!("{schema}.{}", crate::pg_catalog::quote_ident(&s.def.name))
    }))
}

/// Registers the sequence functions of a session.
pub fn register(state: &mut SessionState, context: &Arc<SequenceContext>) -> DfResult<()> {
    let any = |counts: &[usize]| {
        Signature::one_of(counts.iter().map(|&n| TypeSignature::Any(n)).collect(), Volatility::Volatile)
    };
    let functions = [
        ("nextval", Function::Nextval, any(&[1])),
        ("currval", Function::Currval, any(&[1])),
        ("setval", Function::Setval, any(&[2, 3])),
        ("lastval", Function::Lastval, Signature::nullary(Volatility::Volatile)),
        ("pg_get_serial_sequence", Function::SerialSequence, any(&[2])),
    ];
    for (name, function, signature) in functions {
        let udf = SequenceFunction { name, function, signature, context: Arc::clone(context) };
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(udf)))?;
    }
    Ok(())
}
