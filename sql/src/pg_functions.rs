//! PostgreSQL's catalog functions, as DataFusion scalar functions: what
//! psql's meta-commands and drivers call next to the `pg_catalog` tables
//! (`pg_get_indexdef`, `format_type`, `pg_table_is_visible`, privileges, ...).
//!
//! Functions that look at relations read the catalog the session's current
//! statement sees through the [`CatalogView`], so they agree with the
//! `pg_catalog` tables of the same statement (see `crate::pg_catalog` for the
//! oid scheme). `regclassin`, `regclassout`, `regtypeout` and
//! `regnamespaceout` serve the casts `crate::pg_rewrite` turns
//! `::regclass`, `::regtype` and `::regnamespace` into.
//!
//! There is one database, one role and one user schema, every relation is
//! visible and the only role holds every privilege, so the visibility and
//! privilege functions answer true for any non-null argument.

use crate::catalog::{Catalog, SearchPath, TableDef};
use crate::ddl::text_name;
use crate::error::SqlError;
use crate::heap::Snapshot;
use crate::pg_catalog::{self, Relation};
use crate::provider::CatalogView;
use borealis_storage::page::PAGE_SIZE;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Int32Builder, Int64Array, ListBuilder, StringArray, StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

use std::sync::Arc;

/// The arguments of one call, each cast to the forms the bodies read.
struct Args {
    ints: Vec<Option<Int64Array>>,
    texts: Vec<Option<StringArray>>,
    arrays: Vec<ArrayRef>,
    /// The session's search path (names resolve, and relations are visible, through it).
    path: SearchPath,
}

impl Args {
    fn new(arrays: Vec<ArrayRef>) -> Args {
        let ints = arrays.iter().map(|a| cast(a, &DataType::Int64).ok().map(|a| a.as_primitive().clone())).collect();
        let texts =
            arrays.iter().map(|a| cast(a, &DataType::Utf8).ok().map(|a| a.as_string::<i32>().clone())).collect();
        Args { ints, texts, arrays, path: SearchPath::public() }
    }

    /// Argument `arg` of row `row` as an integer (None if null, absent or not a number).
    fn int(&self, arg: usize, row: usize) -> Option<i64> {
        let array = self.ints.get(arg)?.as_ref()?;
        array.is_valid(row).then(|| array.value(row))
    }

    /// Argument `arg` of row `row` as text.
    fn text(&self, arg: usize, row: usize) -> Option<&str> {
        let array = self.texts.get(arg)?.as_ref()?;
        array.is_valid(row).then(|| array.value(row))
    }

    fn is_null(&self, arg: usize, row: usize) -> bool {
        self.arrays.get(arg).is_none_or(|a| a.is_null(row))
    }
}

/// What a function returns per row.
enum Body {
    Text(fn(&Catalog, &Args, usize) -> Result<Option<String>, SqlError>),
    Bool(fn(&Catalog, &Args, usize) -> Option<bool>),
    Oid(fn(&Catalog, &Args, usize) -> Result<Option<i32>, SqlError>),
    TextList(fn(&Catalog, &Args, usize) -> Option<Vec<&'static str>>),
}

/// A PostgreSQL function evaluated row by row.
struct PgFunction {
    name: &'static str,
    signature: Signature,
    view: Arc<CatalogView>,
    body: Body,
}

crate::functions::identified_by_name!(PgFunction);

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.body {
            Body::Text(_) => DataType::Utf8,
            Body::Bool(_) => DataType::Boolean,
            Body::Oid(_) => DataType::Int32,
            Body::TextList(_) => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let mut args = Args::new(arrays);
        args.path = self.view.path();
        let catalog = self.view.get();
        let result: ArrayRef = match self.body {
            Body::Text(f) => {
                let mut b = StringBuilder::new();
                for row in 0..rows {
                    b.append_option(f(&catalog, &args, row)?);
                }
                Arc::new(b.finish())
            }
            Body::Bool(f) => {
                let mut b = BooleanBuilder::new();
                (0..rows).for_each(|row| b.append_option(f(&catalog, &args, row)));
                Arc::new(b.finish())
            }
            Body::Oid(f) => {
                let mut b = Int32Builder::new();
                for row in 0..rows {
                    b.append_option(f(&catalog, &args, row)?);
                }
                Arc::new(b.finish())
            }
            Body::TextList(f) => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for row in 0..rows {
                    match f(&catalog, &args, row) {
                        Some(items) => b.append_value(items.into_iter().map(Some)),
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// True for a non-null first argument.
fn true_if_given(_: &Catalog, args: &Args, row: usize) -> Option<bool> {
    (!args.is_null(0, row)).then_some(true)
}

/// A relation's name as regclass shows it: qualified by its schema when
/// the search path does not find it by its name alone.
fn shown_name(catalog: &Catalog, path: &SearchPath, oid: i64, def: &TableDef, name: &str) -> String {
    if pg_catalog::is_visible(catalog, path, oid) {
        return pg_catalog::quote_ident(name);
    }
    let schema = catalog.table_by_id(def.id).map_or(crate::catalog::PUBLIC_SCHEMA, |e| &e.schema_name);
    format!("{}.{}", pg_catalog::quote_ident(schema), pg_catalog::quote_ident(name))
}

/// pg_table_is_visible(oid): whether the relation's unqualified name finds it through the search path.
fn table_is_visible(catalog: &Catalog, args: &Args, row: usize) -> Option<bool> {
    args.int(0, row).map(|oid| pg_catalog::is_visible(catalog, &args.path, oid))
}

/// True once every argument is given (privilege checks: the one role holds every privilege).
fn true_if_all_given(_: &Catalog, args: &Args, row: usize) -> Option<bool> {
    (0..args.arrays.len()).all(|arg| !args.is_null(arg, row)).then_some(true)
}

fn null_text(_: &Catalog, _: &Args, _: usize) -> Result<Option<String>, SqlError> {
    Ok(None)
}

fn userbyid(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    Ok(args.int(0, row).map(|oid| pg_catalog::role_name(catalog, oid)))
}

fn format_type(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    Ok(args.int(0, row).map(|oid| pg_catalog::format_type(oid, args.int(1, row))))
}

/// pg_get_indexdef(index oid [, column, pretty]): the CREATE INDEX, or with
/// a column number above 0 that key column's name.
fn indexdef(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    let Some(Relation::Index(def, position)) =
        args.int(0, row).and_then(|oid| pg_catalog::relation_by_oid(catalog, oid))
    else {
        return Ok(None);
    };
    let index = &def.indexes[position];
    match args.int(1, row).unwrap_or(0) {
        0 => {
            let schema = catalog.table_by_id(def.id).map_or(crate::catalog::PUBLIC_SCHEMA, |e| e.schema_name.as_str());
            Ok(Some(pg_catalog::index_definition(schema, def, index)))
        }
        column => Ok(usize::try_from(column - 1)
            .ok()
            .and_then(|at| index.columns.get(at))
            .map(|&i| pg_catalog::quote_ident(&def.columns[i].name))),
    }
}

fn constraintdef(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    let Some(oid) = args.int(0, row) else { return Ok(None) };
    let pretty = args.int(1, row).is_some_and(|p| p != 0);
    if let Some(constraint) =
        catalog.constraints().find(|c| i64::from(pg_catalog::check_or_foreign_key_oid(&c.def)) == oid)
    {
        return Ok(crate::constraint::definition(catalog, &constraint.def, pretty));
    }
    let half = pg_catalog::OIDS_PER_TABLE / 2;
    // A constraint's oid is its index's oid moved up by half the table's range.
    let index_oid = oid - half + 1;
    Ok(match pg_catalog::relation_by_oid(catalog, index_oid) {
        Some(Relation::Index(def, position)) if pg_catalog::constraint_oid(def, position) as i64 == oid => {
            Some(pg_catalog::constraint_definition(def, &def.indexes[position]))
        }
        _ => None,
    })
}

/// pg_get_expr(expression text, relation oid [, pretty]): expressions are stored as their text.
fn get_expr(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    Ok(args.text(0, row).map(str::to_string))
}

fn encoding_to_char(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    Ok(args.int(0, row).map(|e| if e == i64::from(pg_catalog::UTF8_ENCODING) { "UTF8" } else { "" }.to_string()))
}

fn quote_ident(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    Ok(args.text(0, row).map(pg_catalog::quote_ident))
}

fn superuser(_: &Catalog, _: &Args, _: usize) -> Result<Option<String>, SqlError> {
    Ok(Some(crate::functions::SUPERUSER_NAME.to_string()))
}

fn to_regclass(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<i32>, SqlError> {
    Ok(args.text(0, row).and_then(|text| pg_catalog::relation_oid_by_name(catalog, &args.path, &text_name(text))))
}

/// to_regtype(name): the type's oid, NULL if there is no such type (drivers
/// ask for extension types such as hstore this way).
fn to_regtype(_: &Catalog, args: &Args, row: usize) -> Result<Option<i32>, SqlError> {
    Ok(args.text(0, row).and_then(pg_catalog::type_oid_by_name))
}

/// `'name'::regclass`: the relation's oid, 42P01 if there is none; a number is taken as an oid.
fn regclassin(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<i32>, SqlError> {
    let Some(text) = args.text(0, row) else { return Ok(None) };
    if let Ok(oid) = text.trim().parse::<i32>() {
        return Ok(Some(oid));
    }
    let name = text_name(text);
    pg_catalog::relation_oid_by_name(catalog, &args.path, &name)
        .map(Some)
        .ok_or_else(|| SqlError::undefined_table(&name.to_string()))
}

/// `oid::regclass` shown as text: the relation's name, or the number if there is none.
fn regclassout(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    let Some(oid) = args.int(0, row) else { return Ok(None) };
    Ok(Some(match pg_catalog::relation_by_oid(catalog, oid) {
        Some(Relation::Table(def)) => shown_name(catalog, &args.path, oid, def, &def.name),
        Some(Relation::Index(def, position)) => shown_name(catalog, &args.path, oid, def, &def.indexes[position].name),
        Some(Relation::System(table)) => table.name.to_string(),
        None => oid.to_string(),
    }))
}

fn regtypeout(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    let Some(oid) = args.int(0, row) else { return Ok(None) };
    Ok(Some(pg_catalog::type_name(oid).unwrap_or_else(|| oid.to_string())))
}

fn regnamespaceout(catalog: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    let Some(oid) = args.int(0, row) else { return Ok(None) };
    Ok(Some(pg_catalog::namespace_name(catalog, oid).unwrap_or_else(|| oid.to_string())))
}

/// current_schemas(include implicit): the search path, pg_catalog first when asked.
fn current_schemas(_: &Catalog, args: &Args, row: usize) -> Option<Vec<&'static str>> {
    let implicit = args.text(0, row)?;
    Some(if implicit == "true" { vec!["pg_catalog", "public"] } else { vec!["public"] })
}

fn backend_pid(_: &Catalog, _: &Args, _: usize) -> Result<Option<i32>, SqlError> {
    Ok(i32::try_from(std::process::id()).ok())
}

/// array_upper(array, dimension): the upper bound of a one-dimensional array, NULL when empty.
fn array_upper(_: &Catalog, args: &Args, row: usize) -> Result<Option<i32>, SqlError> {
    let Some(list) = args.arrays.first().and_then(|a| a.as_list_opt::<i32>()) else { return Ok(None) };
    if list.is_null(row) || args.int(1, row) != Some(1) {
        return Ok(None);
    }
    Ok(Some(list.value_length(row)).filter(|&n| n > 0))
}

/// current_setting(name [, missing_ok]): the parameter's default value.
/// Functions see the catalog, not the session, so a session's SET shows in
/// SHOW but not here; clients call this for server-wide parameters
/// (SQLAlchemy: default_table_access_method).
fn current_setting(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    let Some(name) = args.text(0, row) else { return Ok(None) };
    let name = name.to_lowercase();
    if let Some((_, value, _)) = crate::settings::defaults().find(|(known, _, _)| *known == name) {
        return Ok(Some(value.to_string()));
    }
    if args.text(1, row).is_some_and(|missing_ok| missing_ok == "true") {
        return Ok(None);
    }
    Err(SqlError::new(
        crate::error::sqlstate::UNDEFINED_OBJECT,
        format!("unrecognized configuration parameter \"{name}\""),
    ))
}

/// json_build_object(key, value, ...): the object as JSON text. Numbers and
/// booleans are written bare, NULL as null, every other value as a string.
/// PostgreSQL returns type json; the text is the same.
fn json_build_object(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    if !args.arrays.len().is_multiple_of(2) {
        return Err(SqlError::new(
            crate::error::sqlstate::INVALID_PARAMETER_VALUE,
            "argument list must have even number of elements",
        ));
    }
    let mut members = Vec::with_capacity(args.arrays.len() / 2);
    for pair in 0..args.arrays.len() / 2 {
        let Some(key) = args.text(2 * pair, row) else {
            return Err(SqlError::new(
                crate::error::sqlstate::INVALID_PARAMETER_VALUE,
                "null value not allowed for object key",
            ));
        };
        let at = 2 * pair + 1;
        let value = match args.text(at, row) {
            None => "null".to_string(),
            Some(text) if is_json_bare(args.arrays[at].data_type()) => text.to_string(),
            Some(text) => json_string(text),
        };
        members.push(format!("{} : {value}", json_string(key)));
    }
    Ok(Some(format!("{{{}}}", members.join(", "))))
}

/// Whether values of `data_type` are written without quotes in JSON.
fn is_json_bare(data_type: &DataType) -> bool {
    data_type.is_numeric() || *data_type == DataType::Boolean
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// pg_size_pretty(bigint): a size with a unit, as PostgreSQL writes it:
/// bytes below 10 kB, else the largest unit (up to PB) that keeps the number
/// below 20480, rounded half away from zero.
fn size_pretty(_: &Catalog, args: &Args, row: usize) -> Result<Option<String>, SqlError> {
    /// (unit, limit, rounded, bits), PostgreSQL's `size_pretty_units`.
    const UNITS: [(&str, u64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let Some(mut size) = args.int(0, row) else { return Ok(None) };
    for (at, &(name, limit, rounded, bits)) in UNITS.iter().enumerate() {
        let next = UNITS.get(at + 1);
        if next.is_none() || size.unsigned_abs() < limit {
            if rounded {
                size = (size + size.signum()) / 2;
            }
            return Ok(Some(format!("{size} {name}")));
        }
        let (_, _, next_rounded, next_bits) = next.expect("checked above");
        size /= 1i64 << (next_bits - bits - u32::from(*next_rounded) + u32::from(rounded));
    }
    unreachable!("the last unit always answers")
}

/// Which size a relation size function reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SizeOf {
    /// pg_relation_size: the relation's own pages (a table's heap chain, an index's tree).
    Relation,
    /// pg_table_size: the same (no TOAST, free space or visibility map forks are stored).
    Table,
    /// pg_indexes_size: a table's indexes.
    Indexes,
    /// pg_total_relation_size: a table and its indexes.
    Total,
}

/// The relation size functions: pages × 8192 bytes at the statement's
/// snapshot, counted by walking the heap chain or the index tree (no page
/// count is stored), so they cost a read of the relation's pages. NULL for
/// an oid that names no relation, as in PostgreSQL. Async, because pages
/// are read from the volume.
struct RelationSize {
    name: &'static str,
    signature: Signature,
    view: Arc<CatalogView>,
    of: SizeOf,
}

crate::functions::identified_by_name!(RelationSize);

impl ScalarUDFImpl for RelationSize {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        datafusion::common::internal_err!("{} runs only through its async form", self.name)
    }
}

#[async_trait::async_trait]
impl AsyncScalarUDFImpl for RelationSize {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<DfResult<Vec<_>>>()?;
        let mut args = Args::new(arrays);
        args.path = self.view.path();
        let catalog = self.view.get();
        let snapshot = self.view.snapshot().ok_or_else(|| SqlError::internal("size function without a snapshot"))?;
        let mut sizes = datafusion::arrow::array::Int64Builder::with_capacity(rows);
        for row in 0..rows {
            // An oid, or a name as `'name'::regclass` reads it.
            let oid = match args.int(0, row) {
                Some(oid) => Some(oid),
                None => regclassin(&catalog, &args, row)?.map(i64::from),
            };
            let main_fork = match args.text(1, row) {
                None | Some("main") => true,
                Some("fsm" | "vm" | "init") => false,
                Some(other) => return Err(invalid_fork(other).into()),
            };
            let pages = match oid {
                Some(oid) if main_fork => relation_pages(&catalog, &snapshot, oid, self.of).await?,
                Some(_) => Some(0),
                None => None,
            };
            sizes.append_option(pages.map(|pages| pages.saturating_mul(PAGE_SIZE as u64) as i64));
        }
        let result: ArrayRef = Arc::new(sizes.finish());
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

fn invalid_fork(name: &str) -> SqlError {
    SqlError::new(crate::error::sqlstate::INVALID_PARAMETER_VALUE, format!("invalid fork name \"{name}\""))
}

/// Pages of the relation `oid` that `of` counts, at `snapshot`; None if no relation has that oid.
async fn relation_pages(catalog: &Catalog, snapshot: &Snapshot, oid: i64, of: SizeOf) -> Result<Option<u64>, SqlError> {
    let index_pages = |def: &TableDef, position: usize| crate::btree::page_count(snapshot, def.indexes[position].root);
    Ok(Some(match pg_catalog::relation_by_oid(catalog, oid) {
        Some(Relation::Table(def)) => {
            let heap = if of == SizeOf::Indexes { 0 } else { snapshot.chain_pages(def.first_page).await? };
            let mut indexes = 0;
            if matches!(of, SizeOf::Indexes | SizeOf::Total) {
                for position in 0..def.indexes.len() {
                    indexes += index_pages(def, position).await?;
                }
            }
            heap + indexes
        }
        Some(Relation::Index(_, _)) if of == SizeOf::Indexes => 0,
        Some(Relation::Index(def, position)) => index_pages(def, position).await?,
        Some(Relation::System(_)) => 0,
        // A sequence is one page.
        None if catalog.sequences().any(|s| i64::from(crate::sequence::sequence_oid(&s.def)) == oid) => 1,
        None => return Ok(None),
    }))
}

/// `pg_expandarray(a)`: the elements of a one-dimensional array with their
/// subscripts, as a list of `{x, n}` structs (n from 1). Unnested, this is
/// PostgreSQL's `information_schema._pg_expandarray(a)`, which returns the
/// set of records `(x, n)`; `crate::pg_rewrite` turns calls of the one into
/// `unnest` of the other. pgjdbc numbers key columns with it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl ExpandArray {
    fn item_fields(element: &DataType) -> datafusion::arrow::datatypes::Fields {
        vec![Field::new("x", element.clone(), true), Field::new("n", DataType::Int32, false)].into()
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        let [DataType::List(item)] = arg_types else {
            return datafusion::common::plan_err!("pg_expandarray takes one array, not {arg_types:?}");
        };
        let fields = ExpandArray::item_fields(item.data_type());
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Struct(fields), true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{ListArray, StructArray};
        let [argument] = args.args.as_slice() else {
            return datafusion::common::exec_err!("pg_expandarray takes one argument");
        };
        let scalar = matches!(argument, ColumnarValue::Scalar(_));
        let array = argument.to_array(if scalar { 1 } else { args.number_rows })?;
        let Some(list) = array.as_list_opt::<i32>() else {
            return datafusion::common::exec_err!("pg_expandarray takes an array");
        };
        let offsets = list.offsets();
        let mut subscripts = vec![0i32; list.values().len()];
        for row in 0..list.len() {
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            for (at, subscript) in subscripts[start..end].iter_mut().zip(1..) {
                *at = subscript;
            }
        }
        let fields = ExpandArray::item_fields(&list.value_type());
        let subscripts: ArrayRef = Arc::new(datafusion::arrow::array::Int32Array::from(subscripts));
        let items = StructArray::try_new(fields.clone(), vec![Arc::clone(list.values()), subscripts], None)?;
        let item = Arc::new(Field::new_list_field(DataType::Struct(fields), true));
        let result: ArrayRef =
            Arc::new(ListArray::try_new(item, offsets.clone(), Arc::new(items), list.nulls().cloned())?);
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// Registers the functions on `state`; those reading relations read `view`.
pub fn register(state: &mut SessionState, view: &Arc<CatalogView>) -> DfResult<()> {
    let any = || Signature::variadic_any(Volatility::Stable);
    let none = || Signature::nullary(Volatility::Stable);
    let functions: Vec<(&'static str, Signature, Body)> = vec![
        ("pg_get_userbyid", any(), Body::Text(userbyid)),
        ("format_type", any(), Body::Text(format_type)),
        ("pg_get_indexdef", any(), Body::Text(indexdef)),
        ("pg_get_constraintdef", any(), Body::Text(constraintdef)),
        ("pg_get_expr", any(), Body::Text(get_expr)),
        ("pg_get_viewdef", any(), Body::Text(null_text)),
        // No column owns a sequence.
        ("json_build_object", any(), Body::Text(json_build_object)),
        ("current_setting", any(), Body::Text(current_setting)),
        ("pg_get_statisticsobjdef_columns", any(), Body::Text(null_text)),
        ("obj_description", any(), Body::Text(null_text)),
        ("col_description", any(), Body::Text(null_text)),
        ("shobj_description", any(), Body::Text(null_text)),
        ("pg_encoding_to_char", any(), Body::Text(encoding_to_char)),
        ("quote_ident", any(), Body::Text(quote_ident)),
        ("pg_size_pretty", any(), Body::Text(size_pretty)),
        ("regclassout", any(), Body::Text(regclassout)),
        ("regtypeout", any(), Body::Text(regtypeout)),
        ("regnamespaceout", any(), Body::Text(regnamespaceout)),
        ("current_user", none(), Body::Text(superuser)),
        ("session_user", none(), Body::Text(superuser)),
        ("user", none(), Body::Text(superuser)),
        ("pg_table_is_visible", any(), Body::Bool(table_is_visible)),
        ("pg_type_is_visible", any(), Body::Bool(true_if_given)),
        ("pg_function_is_visible", any(), Body::Bool(true_if_given)),
        ("pg_collation_is_visible", any(), Body::Bool(true_if_given)),
        ("pg_relation_is_publishable", any(), Body::Bool(|_, _, _| Some(false))),
        ("has_table_privilege", any(), Body::Bool(true_if_all_given)),
        ("has_schema_privilege", any(), Body::Bool(true_if_all_given)),
        ("has_database_privilege", any(), Body::Bool(true_if_all_given)),
        ("has_column_privilege", any(), Body::Bool(true_if_all_given)),
        ("has_any_column_privilege", any(), Body::Bool(true_if_all_given)),
        ("has_function_privilege", any(), Body::Bool(true_if_all_given)),
        ("has_sequence_privilege", any(), Body::Bool(true_if_all_given)),
        ("to_regclass", any(), Body::Oid(to_regclass)),
        ("to_regtype", any(), Body::Oid(to_regtype)),
        ("regclassin", any(), Body::Oid(regclassin)),
        ("pg_backend_pid", none(), Body::Oid(backend_pid)),
        ("array_upper", any(), Body::Oid(array_upper)),
        ("current_schemas", any(), Body::TextList(current_schemas)),
    ];
    for (name, signature, body) in functions {
        let function = PgFunction { name, signature, view: Arc::clone(view), body };
        state.register_udf(Arc::new(ScalarUDF::new_from_impl(function)))?;
    }
    let sizes = [
        ("pg_relation_size", SizeOf::Relation),
        ("pg_table_size", SizeOf::Table),
        ("pg_indexes_size", SizeOf::Indexes),
        ("pg_total_relation_size", SizeOf::Total),
    ];
    for (name, of) in sizes {
        // Volatile: never folded at planning, where no snapshot is set yet.
        let signature = Signature::variadic_any(Volatility::Volatile);
        let function = RelationSize { name, signature, view: Arc::clone(view), of };
        state.register_udf(Arc::new(AsyncScalarUDF::new(Arc::new(function)).into_scalar_udf()))?;
    }
    let expand = ExpandArray { signature: Signature::any(1, Volatility::Immutable) };
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(expand)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::QualifiedName;

    #[test]
    fn regclass_literals_fold_like_identifiers() {
        let name =
            |schema: Option<&str>, name: &str| QualifiedName { schema: schema.map(str::to_string), name: name.into() };
        assert_eq!(text_name("Accounts"), name(None, "accounts"));
        assert_eq!(text_name("public.\"Mixed\""), name(Some("public"), "Mixed"));
        assert_eq!(text_name("pg_catalog.pg_class"), name(Some("pg_catalog"), "pg_class"));
    }

    #[test]
    fn json_objects_quote_strings_only() {
        let args = Args::new(vec![
            Arc::new(StringArray::from(vec!["name", "n"])),
            Arc::new(StringArray::from(vec![Some("C \"x\""), None])),
            Arc::new(StringArray::from(vec!["k", "k"])),
            Arc::new(Int64Array::from(vec![1, 2])),
        ]);
        let catalog = Catalog::default();
        assert_eq!(json_build_object(&catalog, &args, 0).unwrap().unwrap(), r#"{"name" : "C \"x\"", "k" : 1}"#);
        assert_eq!(json_build_object(&catalog, &args, 1).unwrap().unwrap(), r#"{"n" : null, "k" : 2}"#);
    }

    #[test]
    fn sizes_print_as_postgres_prints_them() {
        let sizes = [0, 8191, 10239, 10240, 16384, 20_971_000, 10_485_760 * 1024, -10240, i64::MAX];
        let args = Args::new(vec![Arc::new(Int64Array::from(sizes.to_vec()))]);
        let catalog = Catalog::default();
        let shown: Vec<String> =
            (0..sizes.len()).map(|row| size_pretty(&catalog, &args, row).unwrap().unwrap()).collect();
        assert_eq!(
            shown,
            ["0 bytes", "8191 bytes", "10239 bytes", "10 kB", "16 kB", "20 MB", "10 GB", "-10 kB", "8192 PB"]
        );
    }

    #[test]
    fn type_names_resolve_like_to_regtype() {
        assert_eq!(pg_catalog::type_oid_by_name("int4"), Some(23));
        assert_eq!(pg_catalog::type_oid_by_name("integer"), Some(23));
        assert_eq!(pg_catalog::type_oid_by_name("pg_catalog.varchar"), Some(1043));
        assert_eq!(pg_catalog::type_oid_by_name("character varying"), Some(1043));
        assert_eq!(pg_catalog::type_oid_by_name("text[]"), Some(1009));
        assert_eq!(pg_catalog::type_oid_by_name("hstore"), None);
    }
}
