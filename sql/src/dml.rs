//! INSERT, UPDATE and DELETE, and Describe of any plannable statement.
//!
//! INSERT is planned by DataFusion (which resolves the column list, fills
//! omitted columns with NULL and casts to the table's types); we take the
//! `Dml` plan's input, run it as a query and write its rows ourselves.
//!
//! UPDATE and DELETE never use DataFusion's update/delete hooks (they get an
//! empty filter list when the WHERE became a join: apache/datafusion#24654).
//! Instead the statement is rewritten into a SELECT over the table's
//! row-address variant (`crate::provider::ROWS_SCHEMA`):
//!   UPDATE t SET b = b + 1 WHERE a > 0
//!   -> SELECT t.__borealis_row_address, t.a, (b + 1) FROM __borealis_rows.t AS t WHERE a > 0
//! run by DataFusion at the statement's snapshot, and the resulting rows are
//! applied to the transaction's write set. The whole result is collected
//! before any write, so a statement never sees its own changes.
//!
//! Defaults: before planning, an INSERT is rewritten so that every column it
//! omits that has a DEFAULT (SERIAL and identity columns included) gets its
//! default expression, as does every `DEFAULT` in its VALUES;
//! `DEFAULT VALUES` becomes one VALUES row of defaults
//! (`apply_defaults`). The expressions then run in DataFusion like any
//! other, once per row (nextval included), so RETURNING sees the values.
//!
//! Indexes: every row change updates the table's B+tree indexes in the same
//! write set, and unique indexes (primary keys included) refuse duplicates
//! as rows are written (`crate::index`).
//!
//! Constraints (`crate::constraint`): CHECKs are evaluated over each batch
//! of new rows before it is written; foreign keys are checked once the
//! statement's rows are all written, from the referencing side for new rows
//! and from the referenced side (with the cascades) for deleted and updated ones.

use crate::btree::{self, KeyRange};
use crate::catalog::{CatalogEntry, Identity, TableDef};
use crate::constraint::{self, RowChecks};
use crate::ddl::{normalize, qualified_name};
use crate::engine::{Described, Planned, Planner, QueryOutput, RETURNING_SCHEMA, WriteTxn, parse};
use crate::error::{SqlError, sqlstate};
use crate::heap::RowAddress;
use crate::index;
use crate::keys::row_key;
use crate::provider::{ROW_ADDRESS_COLUMN, ROWS_SCHEMA};
use crate::row::encode_row;
use crate::row::{OutputColumn, RowDecoder};
use crate::types::SqlType;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt64Array};
use datafusion::arrow::compute::{
    CastOptions, cast_with_options, concat_batches, filter_record_batch, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Delete, DoUpdate, Expr, FromTable, Ident, Insert, ObjectName, OnConflict,
    OnConflictAction, OnInsert, Query, SelectItem, SetExpr, Statement, TableFactor, TableObject, TableWithJoins,
    Update, UpdateTableFromKind, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Runs INSERT, UPDATE or DELETE in `txn`.
pub(crate) async fn run(
    planner: &mut Planner,
    txn: &mut WriteTxn,
    statement: Statement,
    params: Option<Vec<ScalarValue>>,
) -> Result<QueryOutput, SqlError> {
    match statement {
        Statement::Insert(mut insert) => {
            let returning = insert.returning.take();
            let alias = insert.table_alias.take().map(|alias| alias.alias);
            let conflict = take_conflict(&mut insert)?;
            apply_defaults(planner, &mut insert)?;
            let plan = match (conflict.is_some(), params.as_ref()) {
                // DO UPDATE may use parameters the rows do not: bind them all.
                (true, Some(values)) => Planned::Unoptimized(
                    planner.plan_unbound(Statement::Insert(insert)).await?.with_param_values(values.clone())?,
                ),
                _ => planner.plan_for("insert", Statement::Insert(insert), params.clone()).await?,
            };
            let (entry, rows) = insert_rows(planner, txn, plan, conflict, alias.clone(), params.as_deref()).await?;
            let count = rows.iter().map(RecordBatch::num_rows).sum::<usize>();
            match returning {
                None => Ok(QueryOutput::command(format!("INSERT 0 {count}"))),
                Some(items) => {
                    let alias = alias.unwrap_or_else(|| Ident::with_quote('"', entry.def.name.clone()));
                    returning_output(planner, "INSERT 0", &alias, &entry, rows, &items).await
                }
            }
        }
        Statement::Update(update) => {
            let rewrite = rewrite_update(planner, &update)?;
            let planned = planner.plan_for("update", rewrite.select, params).await?;
            let (_, batches) = planner.collect_planned(&planned).await?;
            let batches = if rewrite.joined { first_per_address(batches)? } else { batches };
            let rows = update_rows(planner, txn, &rewrite.entry, batches).await?;
            match &update.returning {
                None => Ok(QueryOutput::command(format!(
                    "UPDATE {}",
                    rows.iter().map(RecordBatch::num_rows).sum::<usize>()
                ))),
                Some(items) => returning_output(planner, "UPDATE", &rewrite.alias, &rewrite.entry, rows, items).await,
            }
        }
        Statement::Delete(delete) => {
            let rewrite = rewrite_delete(planner, &delete)?;
            let planned = planner.plan_for("delete", rewrite.select, params).await?;
            let (_, batches) = planner.collect_planned(&planned).await?;
            let batches = if rewrite.joined { first_per_address(batches)? } else { batches };
            let rows = delete_rows(planner, txn, &rewrite.entry, batches, delete.returning.is_some()).await?;
            match &delete.returning {
                None => Ok(QueryOutput::command(format!(
                    "DELETE {}",
                    rows.iter().map(RecordBatch::num_rows).sum::<usize>()
                ))),
                Some(items) => returning_output(planner, "DELETE", &rewrite.alias, &rewrite.entry, rows, items).await,
            }
        }
        other => Err(SqlError::internal(format_args!("dml::run given {other}"))),
    }
}

/// The RETURNING list of a statement evaluated over the rows it wrote.
async fn returning_output(
    planner: &Planner,
    command: &'static str,
    alias: &Ident,
    entry: &CatalogEntry,
    rows: Vec<RecordBatch>,
    items: &[SelectItem],
) -> Result<QueryOutput, SqlError> {
    let (schema, batches) = planner.returning(alias, table_schema(&entry.def), rows, items).await?;
    Ok(QueryOutput::Returning { command, schema, batches })
}

/// The Arrow schema of a table's rows as DML produces them (every column nullable).
fn table_schema(def: &TableDef) -> SchemaRef {
    let fields: Vec<Field> = def.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)).collect();
    Arc::new(Schema::new(fields))
}

/// The rows a statement's RETURNING list describes, computed over no rows.
async fn returning_schema(
    planner: &Planner,
    alias: &Ident,
    entry: &CatalogEntry,
    items: &[SelectItem],
) -> Result<SchemaRef, SqlError> {
    Ok(planner.returning(alias, table_schema(&entry.def), Vec::new(), items).await?.0)
}

/// Parameter types and result schema of a statement, planned at the planner's snapshot.
pub(crate) async fn describe(
    planner: &mut Planner,
    statement: Statement,
    declared: &[Option<DataType>],
) -> Result<Described, SqlError> {
    let (plan, overrides, returned) = match statement {
        Statement::Update(update) => {
            let rewrite = rewrite_update(planner, &update)?;
            let returned = match &update.returning {
                Some(items) => Some(returning_schema(planner, &rewrite.alias, &rewrite.entry, items).await?),
                None => None,
            };
            (planner.plan_unbound(rewrite.select).await?, rewrite.placeholder_types, returned)
        }
        Statement::Delete(delete) => {
            let rewrite = rewrite_delete(planner, &delete)?;
            let returned = match &delete.returning {
                Some(items) => Some(returning_schema(planner, &rewrite.alias, &rewrite.entry, items).await?),
                None => None,
            };
            (planner.plan_unbound(rewrite.select).await?, HashMap::new(), returned)
        }
        Statement::Insert(mut insert) => {
            let returning = insert.returning.take();
            let alias = insert.table_alias.take().map(|alias| alias.alias);
            let conflict = take_conflict(&mut insert)?;
            apply_defaults(planner, &mut insert)?;
            let plan = planner.plan_unbound(Statement::Insert(insert)).await?;
            let LogicalPlan::Dml(DmlStatement { table_name, .. }) = &plan else {
                return Err(SqlError::internal("INSERT did not plan to a DML statement"));
            };
            let entry = planner.resolve_reference(table_name)?.clone();
            let alias = alias.unwrap_or_else(|| Ident::with_quote('"', entry.def.name.clone()));
            let returned = match returning {
                Some(items) => Some(returning_schema(planner, &alias, &entry, &items).await?),
                None => None,
            };
            // The parameters DO UPDATE uses, typed as its plan over no rows types them.
            let mut overrides = HashMap::new();
            if let Some(conflict) = conflict {
                let upsert = Upsert::resolve(&entry.def, conflict, alias)?;
                if let Some((statement, types)) = upsert.update_statement(&entry.def)? {
                    let tables = upsert.tables(&entry.def, Vec::new(), Vec::new())?;
                    let update = planner.plan_over(tables, statement).await?;
                    for (name, ty) in update.get_parameter_types()? {
                        if let Some(ty) = types.get(&name).cloned().or(ty) {
                            overrides.insert(name, ty);
                        }
                    }
                }
            }
            (plan, overrides, returned)
        }
        other => {
            let plan = planner.plan_unbound(other).await?;
            let returned = match plan {
                LogicalPlan::Dml(_) => None,
                _ => Some(query_schema(&plan, declared)?),
            };
            (plan, HashMap::new(), returned)
        }
    };
    let schema = returned;
    let mut inferred = plan.get_parameter_types()?;
    for (name, ty) in overrides {
        inferred.insert(name, Some(ty));
    }
    Ok(Described { param_types: ordered_param_types(&inferred)?, schema })
}

/// The result schema of a query whose parameters have the `declared` types
/// (None: inferred). Without declarations a bare `$n` in the select list has
/// no type of its own; bound to a typed NULL it takes the declared one,
/// which is the type its value will have at Execute.
fn query_schema(plan: &LogicalPlan, declared: &[Option<DataType>]) -> Result<SchemaRef, SqlError> {
    let untyped = || Arc::new(plan.schema().as_arrow().clone());
    if declared.iter().all(Option::is_none) {
        return Ok(untyped());
    }
    let inferred = ordered_param_types(&plan.get_parameter_types()?)?;
    if inferred.len() != declared.len() {
        // Parse declared more or fewer parameters than the statement uses;
        // Bind will report the mismatch.
        return Ok(untyped());
    }
    let values = inferred
        .iter()
        .zip(declared)
        .map(|(inferred, declared)| ScalarValue::try_from(declared.as_ref().unwrap_or(inferred)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(plan.clone().with_param_values(values)?.schema().as_arrow().clone()))
}

/// Parameter types `$1..$n` in order (n = highest index used); Utf8 where unknown.
pub(crate) fn ordered_param_types(types: &HashMap<String, Option<DataType>>) -> Result<Vec<DataType>, SqlError> {
    let mut count = 0;
    for name in types.keys() {
        let index: usize = name
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| SqlError::new(sqlstate::SYNTAX_ERROR, format!("invalid parameter {name}")))?;
        count = count.max(index);
    }
    Ok((1..=count).map(|i| types.get(&format!("${i}")).cloned().flatten().unwrap_or(DataType::Utf8)).collect())
}

/// INSERT's `OVERRIDING {SYSTEM | USER} VALUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overriding {
    /// Explicit values go into GENERATED ALWAYS identity columns too.
    System,
    /// Explicit values for identity columns are replaced by their defaults.
    User,
}

/// The key under which `crate::engine::parse` leaves an INSERT's
/// OVERRIDING clause in its (otherwise unused in PostgreSQL) `settings`,
/// until [`apply_defaults`] takes it out before planning.
const OVERRIDING_SETTING: &str = "__borealis_overriding";

/// Records `overriding` on `insert` (see [`OVERRIDING_SETTING`]).
pub(crate) fn set_overriding(insert: &mut Insert, overriding: Overriding) {
    let value = if overriding == Overriding::System { "system" } else { "user" };
    insert.settings = Some(vec![datafusion::sql::sqlparser::ast::Setting {
        key: Ident::new(OVERRIDING_SETTING),
        value: Expr::value(Value::SingleQuotedString(value.into())),
    }]);
}

/// Takes the OVERRIDING clause out of `insert`.
fn take_overriding(insert: &mut Insert) -> Option<Overriding> {
    let settings = insert.settings.take_if(|s| s.iter().any(|s| s.key.value == OVERRIDING_SETTING))?;
    let system = settings.iter().any(|s| s.value.to_string() == "'system'");
    Some(if system { Overriding::System } else { Overriding::User })
}

/// Whether `expr` is the keyword DEFAULT (as VALUES and SET may hold it).
fn is_default_keyword(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}

/// A stored default expression (NULL for a column without one).
fn default_expr(def: &TableDef, column: usize) -> Result<Expr, SqlError> {
    let Some(text) = &def.columns[column].default else { return Ok(Expr::value(Value::Null)) };
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(text).map_err(|e| SqlError::syntax(&e))?;
    parser.parse_expr().map_err(|e| SqlError::syntax(&e))
}

/// 428C9 for an explicit value in a GENERATED ALWAYS identity column.
fn generated_always(def: &TableDef, column: usize) -> SqlError {
    SqlError::new(
        sqlstate::GENERATED_ALWAYS,
        format!("cannot insert a non-DEFAULT value into column \"{}\"", def.columns[column].name),
    )
}

fn column_name(def: &TableDef, column: usize) -> ObjectName {
    ObjectName::from(vec![Ident::with_quote('"', def.columns[column].name.clone())])
}

/// Rewrites an INSERT so that omitted columns and `DEFAULT` values get the
/// columns' defaults (see the module docs). Anything it cannot resolve
/// (unknown table or column) is left for the planner to report.
fn apply_defaults(planner: &Planner, insert: &mut Insert) -> Result<(), SqlError> {
    let overriding = take_overriding(insert);
    let TableObject::TableName(name) = &insert.table else { return Ok(()) };
    let found = qualified_name(name).ok().and_then(|name| planner.catalog().find_table(planner.search_path(), &name));
    let Some(entry) = found else { return Ok(()) };
    let def = Arc::clone(&entry.def);
    let has_default = |column: usize| def.columns[column].default.is_some();
    let mut named: Vec<usize> = Vec::with_capacity(insert.columns.len());
    for column in &insert.columns {
        let Some(index) =
            column.0.last().and_then(|part| part.as_ident()).and_then(|i| def.column_index(&normalize(i)))
        else {
            return Ok(());
        };
        named.push(index);
    }
    let Some(source) = insert.source.as_mut() else {
        // DEFAULT VALUES: one row of every column's default.
        let mut columns: Vec<usize> = (0..def.columns.len()).filter(|&c| has_default(c)).collect();
        if columns.is_empty() {
            columns.push(0);
        }
        let values =
            columns.iter().map(|&c| default_expr(&def, c).map(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
        insert.columns = columns.iter().map(|&c| column_name(&def, c)).collect();
        insert.source = Some(Box::new(query(&format!("VALUES ({})", values.join(", ")))?));
        return Ok(());
    };
    let explicit = !insert.columns.is_empty();
    if let SetExpr::Values(values) = source.body.as_mut() {
        let width = values.rows.iter().map(|row| row.content.len()).max().unwrap_or(0);
        if !explicit {
            named = (0..width.min(def.columns.len())).collect();
        }
        for row in &mut values.rows {
            for (position, value) in row.content.iter_mut().enumerate() {
                let Some(&column) = named.get(position) else { continue };
                let identity = def.columns[column].identity;
                if is_default_keyword(value) || (identity.is_some() && overriding == Some(Overriding::User)) {
                    *value = default_expr(&def, column)?;
                } else if identity == Some(Identity::Always) && overriding != Some(Overriding::System) {
                    return Err(generated_always(&def, column));
                }
            }
        }
        let omitted: Vec<usize> = (0..def.columns.len()).filter(|c| !named.contains(c) && has_default(*c)).collect();
        if omitted.is_empty() {
            return Ok(());
        }
        let defaults = omitted.iter().map(|&c| default_expr(&def, c)).collect::<Result<Vec<_>, _>>()?;
        for row in &mut values.rows {
            row.content.extend(defaults.iter().cloned());
        }
        insert.columns = named.iter().chain(&omitted).map(|&c| column_name(&def, c)).collect();
        return Ok(());
    }
    // INSERT ... SELECT: the query's rows, then the omitted columns' defaults.
    if overriding == Some(Overriding::User) && named.iter().any(|&c| def.columns[c].identity.is_some()) {
        return Err(SqlError::unsupported("OVERRIDING USER VALUE with a query"));
    }
    if let Some(&column) = named.iter().find(|&&c| def.columns[c].identity == Some(Identity::Always))
        && overriding != Some(Overriding::System)
    {
        return Err(generated_always(&def, column));
    }
    if !explicit {
        return Ok(());
    }
    let omitted: Vec<usize> = (0..def.columns.len()).filter(|c| !named.contains(c) && has_default(*c)).collect();
    if omitted.is_empty() {
        return Ok(());
    }
    let defaults =
        omitted.iter().map(|&c| default_expr(&def, c).map(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
    let wrapped =
        format!("SELECT \"__borealis_insert\".*, {} FROM ({source}) AS \"__borealis_insert\"", defaults.join(", "));
    **source = query(&wrapped)?;
    insert.columns = named.iter().chain(&omitted).map(|&c| column_name(&def, c)).collect();
    Ok(())
}

/// `sql` parsed as a query.
fn query(sql: &str) -> Result<Query, SqlError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(sql).map_err(|e| SqlError::syntax(&e))?;
    Ok(*parser.parse_query().map_err(|e| SqlError::syntax(&e))?)
}

/// Inserts the rows of an INSERT's plan; returns the table and the rows
/// (table columns) inserted or, by ON CONFLICT DO UPDATE, updated.
async fn insert_rows(
    planner: &Planner,
    txn: &mut WriteTxn,
    plan: Planned,
    conflict: Option<OnConflict>,
    alias: Option<Ident>,
    params: Option<&[ScalarValue]>,
) -> Result<(CatalogEntry, Vec<RecordBatch>), SqlError> {
    let (plan, optimized) = match plan {
        Planned::Optimized(plan) => (plan, true),
        Planned::Unoptimized(plan) => (plan, false),
    };
    let LogicalPlan::Dml(DmlStatement { table_name, op, input, .. }) = plan else {
        return Err(SqlError::internal("INSERT did not plan to a DML statement"));
    };
    if !matches!(op, WriteOp::Insert(InsertOp::Append)) {
        return Err(SqlError::unsupported(format_args!("{op}")));
    }
    if table_name.schema() == Some(ROWS_SCHEMA) {
        return Err(SqlError::undefined_table(&table_name.to_string()));
    }
    let entry = planner.resolve_reference(&table_name)?.clone();
    let (_, batches) =
        if optimized { planner.collect_optimized(&input).await? } else { planner.collect(&input).await? };
    if let Some(conflict) = conflict {
        let alias = alias.unwrap_or_else(|| Ident::with_quote('"', entry.def.name.clone()));
        let upsert = Upsert::resolve(&entry.def, conflict, alias)?;
        let written = upsert.run(planner, txn, &entry, batches, params).await?;
        return Ok((entry, written));
    }
    let checks = RowChecks::new(planner, planner.catalog(), &entry.def)?;
    let schema = table_schema(&entry.def);
    let mut rows = Vec::new();
    let mut written = Vec::with_capacity(batches.len());
    for batch in &batches {
        let columns = cast_columns(&entry.def, batch.columns())?;
        for row in 0..batch.num_rows() {
            rows.push(encode_row(&entry.def, &columns, row)?);
        }
        let batch = table_batch(&schema, columns, batch.num_rows())?;
        if let Some(checks) = &checks {
            checks.check_values(&batch)?;
        }
        written.push(batch);
    }
    for row in rows {
        insert_row(txn, &entry.def, row).await?;
    }
    if let Some(checks) = &checks {
        for batch in &written {
            checks.check_references(&txn.writes, batch).await?;
        }
    }
    Ok((entry, written))
}

/// Takes INSERT's ON CONFLICT clause out of `insert` (DataFusion plans the rest).
fn take_conflict(insert: &mut Insert) -> Result<Option<OnConflict>, SqlError> {
    match insert.on.take() {
        None => Ok(None),
        Some(OnInsert::OnConflict(conflict)) => Ok(Some(conflict)),
        Some(_) => Err(SqlError::unsupported("INSERT ... ON DUPLICATE KEY UPDATE (use ON CONFLICT)")),
    }
}

/// Types parameters take from the columns they are assigned to, by name (`$1`).
type PlaceholderTypes = HashMap<String, DataType>;

/// Name of the row-number column that pairs a conflicting row with the row
/// that was proposed for it, while DO UPDATE's assignments are evaluated.
const PROPOSED_ROW: &str = "__borealis_proposed";

/// INSERT ... ON CONFLICT, resolved against its table.
///
/// Each proposed row is looked up in the arbiter indexes before it is
/// written, in order, so a row conflicts with rows the same statement
/// inserted before it. DO NOTHING skips a conflicting row; DO UPDATE
/// updates the existing row, its assignments and WHERE evaluated (in one
/// query for the whole statement) over the existing row, by the table's
/// name or alias, and the proposed row as `excluded` (a bare column name is
/// ambiguous between the two, 42702, as in PostgreSQL). As in PostgreSQL, DO
/// UPDATE refuses to touch one row twice (21000), and a conflict in a
/// unique index that is not an arbiter is a unique violation.
struct Upsert {
    /// Positions in the table's indexes of the unique indexes checked.
    arbiters: Vec<usize>,
    /// DO UPDATE's assignments and WHERE; None for DO NOTHING.
    update: Option<DoUpdate>,
    /// The name DO UPDATE refers to the existing row by.
    alias: Ident,
}

impl Upsert {
    fn resolve(def: &TableDef, conflict: OnConflict, alias: Ident) -> Result<Upsert, SqlError> {
        let unique = def.indexes.iter().enumerate().filter(|(_, index)| index.unique).map(|(position, _)| position);
        let arbiters: Vec<usize> = match &conflict.conflict_target {
            None if matches!(conflict.action, OnConflictAction::DoUpdate(_)) => {
                return Err(SqlError::new(
                    sqlstate::SYNTAX_ERROR,
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                ));
            }
            None => unique.collect(),
            Some(ConflictTarget::Columns(columns)) => {
                let mut wanted = Vec::with_capacity(columns.len());
                for column in columns {
                    let name = normalize(column);
                    wanted.push(def.column_index(&name).ok_or_else(|| {
                        SqlError::new(sqlstate::UNDEFINED_COLUMN, format!("column \"{name}\" does not exist"))
                    })?);
                }
                wanted.sort_unstable();
                wanted.dedup();
                let matching: Vec<usize> = unique
                    .filter(|&position| {
                        let mut columns = def.indexes[position].columns.clone();
                        columns.sort_unstable();
                        columns == wanted
                    })
                    .collect();
                if matching.is_empty() {
                    return Err(SqlError::new(
                        sqlstate::INVALID_COLUMN_REFERENCE,
                        "there is no unique or exclusion constraint matching the ON CONFLICT specification",
                    ));
                }
                matching
            }
            Some(ConflictTarget::OnConstraint(name)) => {
                let name = name.0.last().and_then(|part| part.as_ident()).map(normalize).unwrap_or_default();
                match unique.into_iter().find(|&position| def.indexes[position].name == name) {
                    Some(position) => vec![position],
                    None => {
                        return Err(SqlError::new(
                            sqlstate::UNDEFINED_OBJECT,
                            format!("constraint \"{name}\" for table \"{}\" does not exist", def.name),
                        ));
                    }
                }
            }
        };
        let update = match conflict.action {
            OnConflictAction::DoNothing => None,
            OnConflictAction::DoUpdate(update) => Some(update),
        };
        Ok(Upsert { arbiters, update, alias })
    }

    /// The existing row a proposed row conflicts with in an arbiter index.
    async fn conflicting(
        &self,
        txn: &WriteTxn,
        def: &TableDef,
        types: &[SqlType],
        row: &[u8],
    ) -> Result<Option<RowAddress>, SqlError> {
        for &position in &self.arbiters {
            let index = &def.indexes[position];
            let (key, has_null) = row_key(types, &index.columns, row)?;
            if has_null {
                continue;
            }
            let mut found = None;
            btree::scan(&txn.writes, index.root, &KeyRange::prefix(key), |entry| {
                found = Some(btree::entry_address(entry)?);
                Ok(false)
            })
            .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The query computing DO UPDATE's new rows (a proposed-row number, then
    /// every column), and the types its parameters take from the columns
    /// they are assigned to; None for DO NOTHING.
    fn update_statement(&self, def: &TableDef) -> Result<Option<(Statement, PlaceholderTypes)>, SqlError> {
        let Some(update) = &self.update else { return Ok(None) };
        let alias = &self.alias;
        let mut values: HashMap<usize, Expr> = HashMap::new();
        let mut placeholder_types = HashMap::new();
        for assignment in &update.assignments {
            let AssignmentTarget::ColumnName(column) = &assignment.target else {
                return Err(SqlError::unsupported("tuple assignments in ON CONFLICT DO UPDATE"));
            };
            let name = column.0.last().and_then(|part| part.as_ident()).map(normalize).unwrap_or_default();
            let index = def.column_index(&name).ok_or_else(|| {
                SqlError::new(
                    sqlstate::UNDEFINED_COLUMN,
                    format!("column \"{name}\" of relation \"{}\" does not exist", def.name),
                )
            })?;
            if let Expr::Value(value) = &assignment.value
                && let Value::Placeholder(placeholder) = &value.value
            {
                placeholder_types.insert(placeholder.clone(), def.columns[index].ty.arrow_type());
            }
            let value = if is_default_keyword(&assignment.value) {
                default_expr(def, index)?
            } else {
                Upsert::refuse_bare_columns(def, &assignment.value)?;
                assignment.value.clone()
            };
            if values.insert(index, value).is_some() {
                return Err(SqlError::new(
                    sqlstate::SYNTAX_ERROR,
                    format!("multiple assignments to same column \"{name}\""),
                ));
            }
        }
        let mut items = vec![format!("excluded.\"{PROPOSED_ROW}\"")];
        for (index, column) in def.columns.iter().enumerate() {
            match values.get(&index) {
                Some(expr) => items.push(format!("({expr})")),
                None => items.push(format!("{alias}.{}", Ident::with_quote('"', column.name.clone()))),
            }
        }
        let mut sql = format!(
            "SELECT {} FROM \"{RETURNING_SCHEMA}\".\"{PROPOSED_ROW}_existing\" AS {alias} \
             JOIN \"{RETURNING_SCHEMA}\".\"{PROPOSED_ROW}_excluded\" AS excluded \
             ON {alias}.\"{PROPOSED_ROW}\" = excluded.\"{PROPOSED_ROW}\"",
            items.join(", ")
        );
        if let Some(selection) = &update.selection {
            Upsert::refuse_bare_columns(def, selection)?;
            sql.push_str(&format!(" WHERE {selection}"));
        }
        let statement = parse(&sql)?.pop().ok_or_else(|| SqlError::internal("DO UPDATE did not parse"))?;
        Ok(Some((statement, placeholder_types)))
    }

    /// 42702 if `expr` names a column of the table without qualifying it:
    /// in DO UPDATE both the existing row and `excluded` have it, and
    /// PostgreSQL refuses to guess.
    fn refuse_bare_columns(def: &TableDef, expr: &Expr) -> Result<(), SqlError> {
        let mut bare = None;
        let _ = datafusion::sql::sqlparser::ast::visit_expressions(expr, |e| {
            if let Expr::Identifier(ident) = e
                && !is_default_keyword(e)
                && def.column_index(&normalize(ident)).is_some()
            {
                bare = Some(normalize(ident));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        match bare {
            Some(name) => {
                Err(SqlError::new(sqlstate::AMBIGUOUS_COLUMN, format!("column reference \"{name}\" is ambiguous")))
            }
            None => Ok(()),
        }
    }

    /// The existing and the proposed rows (table columns and their pairing
    /// number) as the tables DO UPDATE's query reads.
    fn tables(
        &self,
        def: &TableDef,
        existing: Vec<RecordBatch>,
        proposed: Vec<RecordBatch>,
    ) -> Result<Vec<(String, SchemaRef, Vec<RecordBatch>)>, SqlError> {
        let mut fields: Vec<Field> = table_schema(def).fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(PROPOSED_ROW, DataType::UInt64, false));
        let schema = Arc::new(Schema::new(fields));
        let numbered = |batches: Vec<RecordBatch>| -> Result<Vec<RecordBatch>, SqlError> {
            let mut next = 0u64;
            batches
                .into_iter()
                .map(|batch| {
                    let rows = batch.num_rows() as u64;
                    let mut columns = batch.columns().to_vec();
                    columns.push(Arc::new(UInt64Array::from_iter_values(next..next + rows)));
                    next += rows;
                    RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| SqlError::from_arrow(&e))
                })
                .collect()
        };
        Ok(vec![
            (format!("{PROPOSED_ROW}_existing"), Arc::clone(&schema), numbered(existing)?),
            (format!("{PROPOSED_ROW}_excluded"), Arc::clone(&schema), numbered(proposed)?),
        ])
    }

    /// Writes the proposed rows (`batches`, as INSERT's plan produced them);
    /// returns the rows inserted and updated.
    async fn run(
        &self,
        planner: &Planner,
        txn: &mut WriteTxn,
        entry: &CatalogEntry,
        batches: Vec<RecordBatch>,
        params: Option<&[ScalarValue]>,
    ) -> Result<Vec<RecordBatch>, SqlError> {
        let def = &entry.def;
        let checks = RowChecks::new(planner, planner.catalog(), def)?;
        let schema = table_schema(def);
        let types = def.types();
        let mut inserted = HashSet::new();
        // Existing rows to update, in order, and the rows proposed for them.
        let mut targets: Vec<RowAddress> = Vec::new();
        let mut proposed = Vec::new();
        let mut written = Vec::new();
        // Each written row's position among the proposed ones: RETURNING
        // lists rows in that order, inserted and updated alike.
        let mut inserted_order = Vec::new();
        let mut target_order = Vec::new();
        let mut position = 0u64;
        for batch in &batches {
            let columns = cast_columns(def, batch.columns())?;
            let batch = table_batch(&schema, columns, batch.num_rows())?;
            let mut keep = Vec::with_capacity(batch.num_rows());
            let mut conflicts = Vec::new();
            for row in 0..batch.num_rows() {
                position += 1;
                let data = encode_row(def, batch.columns(), row)?;
                match self.conflicting(txn, def, &types, &data).await? {
                    None => {
                        inserted.insert(insert_row(txn, def, data).await?);
                        inserted_order.push(position);
                        keep.push(true);
                    }
                    Some(existing) => {
                        keep.push(false);
                        if self.update.is_none() {
                            continue;
                        }
                        if inserted.contains(&existing) || targets.contains(&existing) {
                            return Err(SqlError::new(
                                sqlstate::CARDINALITY_VIOLATION,
                                "ON CONFLICT DO UPDATE command cannot affect row a second time",
                            ));
                        }
                        targets.push(existing);
                        target_order.push(position);
                        conflicts.push(row as u64);
                    }
                }
            }
            let kept = filter_record_batch(&batch, &BooleanArray::from(keep)).map_err(|e| SqlError::from_arrow(&e))?;
            if let Some(checks) = &checks {
                checks.check_values(&kept)?;
                checks.check_references(&txn.writes, &kept).await?;
            }
            written.push(kept);
            if !conflicts.is_empty() {
                let rows =
                    take_record_batch(&batch, &UInt64Array::from(conflicts)).map_err(|e| SqlError::from_arrow(&e))?;
                proposed.push(rows);
            }
        }
        let Some((statement, _)) = self.update_statement(def)? else { return Ok(written) };
        if targets.is_empty() {
            return Ok(written);
        }
        let existing = stored_rows(txn, def, &targets).await?;
        let plan = planner.plan_over(self.tables(def, vec![existing], proposed)?, statement).await?;
        let plan = match params {
            Some(values) => plan.with_param_values(values.to_vec())?,
            None => plan,
        };
        let (_, results) = planner.collect(&plan).await?;
        let mut order = inserted_order;
        // The pairing number becomes the existing row's address.
        let updates = results
            .into_iter()
            .map(|batch| {
                let numbers = batch
                    .column(0)
                    .as_primitive_opt::<UInt64Type>()
                    .ok_or_else(|| SqlError::internal("DO UPDATE lost its row numbers"))?;
                order.extend(numbers.iter().flatten().map(|n| target_order[n as usize]));
                let addresses: UInt64Array = numbers.iter().map(|n| n.map(|n| targets[n as usize].to_u64())).collect();
                let mut columns = batch.columns().to_vec();
                columns[0] = Arc::new(addresses);
                let fields: Vec<Field> = std::iter::once(Field::new(ROW_ADDRESS_COLUMN, DataType::UInt64, false))
                    .chain(batch.schema().fields().iter().skip(1).map(|f| f.as_ref().clone()))
                    .collect();
                RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| SqlError::from_arrow(&e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        written.extend(update_rows(planner, txn, entry, updates).await?);
        let all = concat_batches(&schema, &written).map_err(|e| SqlError::from_arrow(&e))?;
        let mut rows: Vec<u64> = (0..all.num_rows() as u64).collect();
        rows.sort_by_key(|&row| order[row as usize]);
        Ok(vec![take_record_batch(&all, &UInt64Array::from(rows)).map_err(|e| SqlError::from_arrow(&e))?])
    }
}

/// The stored rows at `addresses`, decoded into one batch of the table's columns.
async fn stored_rows(txn: &WriteTxn, def: &TableDef, addresses: &[RowAddress]) -> Result<RecordBatch, SqlError> {
    let outputs = (0..def.columns.len()).map(OutputColumn::Stored).collect();
    let mut decoder = RowDecoder::new(def.types(), outputs);
    for &address in addresses {
        decoder.append(&stored_row(txn, address).await?, address.to_u64())?;
    }
    let options = RecordBatchOptions::new().with_row_count(Some(addresses.len()));
    RecordBatch::try_new_with_options(table_schema(def), decoder.finish()?, &options)
        .map_err(|e| SqlError::from_arrow(&e))
}

/// A batch of table rows from cast columns.
fn table_batch(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch, SqlError> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options).map_err(|e| SqlError::from_arrow(&e))
}

/// Applies UPDATE rows: batches of a row address then every column's new
/// value. Returns the new rows (table columns).
async fn update_rows(
    planner: &Planner,
    txn: &mut WriteTxn,
    entry: &CatalogEntry,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, SqlError> {
    let def = &entry.def;
    let checks = RowChecks::new(planner, planner.catalog(), def)?;
    let referenced = constraint::is_referenced(planner.catalog(), def);
    let schema = table_schema(def);
    let mut changes: Vec<(RowAddress, Vec<u8>)> = Vec::new();
    let mut written = Vec::with_capacity(batches.len());
    for batch in &batches {
        let addresses = row_addresses(batch)?;
        let columns = cast_columns(def, &batch.columns()[1..])?;
        for (row, address) in addresses.into_iter().enumerate() {
            changes.push((address, encode_row(def, &columns, row)?));
        }
        let batch = table_batch(&schema, columns, batch.num_rows())?;
        if let Some(checks) = &checks {
            checks.check_values(&batch)?;
        }
        written.push(batch);
    }
    let mut pending = Vec::new();
    let mut updated = Vec::new();
    for (address, row) in changes {
        if def.indexes.is_empty() && !referenced {
            txn.writes.update(def.first_page, address, row).await?;
            continue;
        }
        let old = stored_row(txn, address).await?;
        let moved_to = txn.writes.update(def.first_page, address, row.clone()).await?;
        pending.extend(index::update_row(&mut txn.writes, def, (&old, address), (&row, moved_to)).await?);
        if referenced {
            updated.push((old, row));
        }
    }
    index::add_pending(&mut txn.writes, def, pending).await?;
    if let Some(checks) = &checks {
        for batch in &written {
            checks.check_references(&txn.writes, batch).await?;
        }
    }
    if referenced {
        constraint::after_update(&mut txn.writes, planner.catalog(), def, updated).await?;
    }
    Ok(written)
}

/// Deletes the rows of a rewritten DELETE's result (a row address, then the
/// columns if `returning`); returns the deleted rows (table columns) if
/// `returning`, else batches of their count only.
async fn delete_rows(
    planner: &Planner,
    txn: &mut WriteTxn,
    entry: &CatalogEntry,
    batches: Vec<RecordBatch>,
    returning: bool,
) -> Result<Vec<RecordBatch>, SqlError> {
    let schema = table_schema(&entry.def);
    let referenced = constraint::is_referenced(planner.catalog(), &entry.def);
    let mut removed = Vec::new();
    let mut deleted = Vec::with_capacity(batches.len());
    for batch in &batches {
        for address in row_addresses(batch)? {
            if !entry.def.indexes.is_empty() {
                let old = stored_row(txn, address).await?;
                index::delete_row(&mut txn.writes, &entry.def, &old, address).await?;
                if referenced {
                    removed.push(old);
                }
            }
            txn.writes.delete(entry.def.first_page, address).await?;
        }
        deleted.push(if returning {
            table_batch(&schema, cast_columns(&entry.def, &batch.columns()[1..])?, batch.num_rows())?
        } else {
            table_batch(&Arc::new(Schema::empty()), Vec::new(), batch.num_rows())?
        });
    }
    // After every row is gone: a self-referencing table may be emptied in one statement.
    if referenced {
        constraint::after_delete(&mut txn.writes, planner.catalog(), &entry.def, removed).await?;
    }
    Ok(deleted)
}

/// Inserts an encoded row into the table's heap and indexes.
pub(crate) async fn insert_row(txn: &mut WriteTxn, def: &TableDef, row: Vec<u8>) -> Result<RowAddress, SqlError> {
    if def.indexes.is_empty() {
        return txn.writes.insert(def.first_page, row).await;
    }
    let address = txn.writes.insert(def.first_page, row.clone()).await?;
    index::insert_row(&mut txn.writes, def, &row, address).await?;
    Ok(address)
}

/// The stored bytes of the row at `address`, as the transaction sees it.
async fn stored_row(txn: &WriteTxn, address: RowAddress) -> Result<Vec<u8>, SqlError> {
    txn.writes.check_row(address).await?;
    let page = txn.writes.page(address.page).await?;
    page.tuple(address.slot)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| SqlError::internal(format_args!("row {}/{} vanished", address.page, address.slot)))
}

/// The row addresses in column 0 of a rewritten statement's batch.
pub(crate) fn row_addresses(batch: &RecordBatch) -> Result<Vec<RowAddress>, SqlError> {
    let column = batch.columns().first().ok_or_else(|| SqlError::internal("rewrite lost its row address"))?;
    let addresses =
        column.as_primitive_opt::<UInt64Type>().ok_or_else(|| SqlError::internal("row address column is not u64"))?;
    Ok(addresses.iter().flatten().map(RowAddress::from_u64).collect())
}

/// The rows of `batches` whose row address (column 0) comes first: a target
/// row of UPDATE ... FROM or DELETE ... USING joins once per matching row of
/// the other tables, and PostgreSQL changes it once, with the first match.
fn first_per_address(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, SqlError> {
    let mut seen = HashSet::new();
    batches
        .into_iter()
        .map(|batch| {
            let keep: BooleanArray =
                row_addresses(&batch)?.into_iter().map(|address| Some(seen.insert(address))).collect();
            if keep.true_count() == batch.num_rows() {
                return Ok(batch);
            }
            filter_record_batch(&batch, &keep).map_err(|e| SqlError::from_arrow(&e))
        })
        .collect()
}

/// Casts each value column to its table column's type (errors, not NULLs, on failure).
fn cast_columns(def: &TableDef, columns: &[ArrayRef]) -> Result<Vec<ArrayRef>, SqlError> {
    if columns.len() != def.columns.len() {
        return Err(SqlError::internal(format_args!(
            "{} values for {} columns of {}",
            columns.len(),
            def.columns.len(),
            def.name
        )));
    }
    def.columns.iter().zip(columns).map(|(column, array)| cast_column(array, column.ty)).collect()
}

/// `array` as values of type `ty` (errors, not NULLs, on failure).
pub(crate) fn cast_column(array: &ArrayRef, ty: SqlType) -> Result<ArrayRef, SqlError> {
    let target = ty.arrow_type();
    if array.data_type() == &target && ty != SqlType::Uuid {
        return Ok(Arc::clone(array));
    }
    if let Some(read) = crate::input::from_text(array, ty) {
        return read;
    }
    let options = CastOptions { safe: false, ..Default::default() };
    cast_with_options(array.as_ref(), &target, &options).map_err(|e| SqlError::from_arrow(&e))
}

/// A DML statement rewritten into a SELECT over the row-address table.
struct Rewrite {
    select: Statement,
    entry: CatalogEntry,
    /// The name the statement refers to its table by (RETURNING uses it).
    alias: Ident,
    /// `SET c = $n` gives `$n` the type of `c`.
    placeholder_types: HashMap<String, DataType>,
    /// UPDATE ... FROM or DELETE ... USING: a target row may come once per
    /// matching row of the other tables (see [`first_per_address`]).
    joined: bool,
}

/// The table INSERT, UPDATE or DELETE writes, as named; None for other
/// statements and targets of other forms (the rewrites report those).
pub(crate) fn target_name(statement: &Statement) -> Option<&ObjectName> {
    fn relation(table: &TableWithJoins) -> Option<&ObjectName> {
        match &table.relation {
            TableFactor::Table { name, .. } => Some(name),
            _ => None,
        }
    }
    match statement {
        Statement::Insert(Insert { table: TableObject::TableName(name), .. }) => Some(name),
        Statement::Update(update) => relation(&update.table),
        Statement::Delete(delete) => match &delete.from {
            FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables.first().and_then(relation),
        },
        _ => None,
    }
}

/// The single target table of UPDATE/DELETE and the name it is referred to by.
fn target(planner: &Planner, table: &TableWithJoins) -> Result<(CatalogEntry, Ident, Ident), SqlError> {
    if !table.joins.is_empty() {
        return Err(SqlError::unsupported("joins in the target of UPDATE or DELETE"));
    }
    let TableFactor::Table { name, alias, args: None, .. } = &table.relation else {
        return Err(SqlError::unsupported("this target of UPDATE or DELETE"));
    };
    let entry = planner.catalog().resolve_table(planner.search_path(), &qualified_name(name)?)?.clone();
    // The rewrite reads the row-address variant, named by table id.
    let table_ident = Ident::with_quote('"', entry.def.id.0.to_string());
    let alias = alias.as_ref().map_or_else(|| Ident::with_quote('"', entry.def.name.clone()), |a| a.name.clone());
    Ok((entry, table_ident, alias))
}

fn rewrite_update(planner: &Planner, update: &Update) -> Result<Rewrite, SqlError> {
    if update.limit.is_some() || !update.order_by.is_empty() {
        return Err(SqlError::unsupported("UPDATE with ORDER BY or LIMIT"));
    }
    let from = match &update.from {
        None => &[][..],
        Some(UpdateTableFromKind::AfterSet(tables) | UpdateTableFromKind::BeforeSet(tables)) => tables.as_slice(),
    };
    let (entry, table, alias) = target(planner, &update.table)?;
    let mut values: HashMap<usize, &Expr> = HashMap::new();
    let mut placeholder_types = HashMap::new();
    for assignment in &update.assignments {
        let AssignmentTarget::ColumnName(column) = &assignment.target else {
            return Err(SqlError::unsupported("tuple assignments in UPDATE"));
        };
        let last = column
            .0
            .last()
            .and_then(|part| part.as_ident())
            .ok_or_else(|| SqlError::unsupported("this column name"))?;
        let name = normalize(last);
        let index = entry.def.column_index(&name).ok_or_else(|| {
            SqlError::new(
                sqlstate::UNDEFINED_COLUMN,
                format!("column \"{name}\" of relation \"{}\" does not exist", entry.def.name),
            )
        })?;
        if def_identity_always(&entry.def, index) && !is_default_keyword(&assignment.value) {
            return Err(SqlError::new(
                sqlstate::GENERATED_ALWAYS,
                format!("column \"{name}\" can only be updated to DEFAULT"),
            ));
        }
        if values.insert(index, &assignment.value).is_some() {
            return Err(SqlError::new(
                sqlstate::SYNTAX_ERROR,
                format!("multiple assignments to same column \"{name}\""),
            ));
        }
        if let Expr::Value(value) = &assignment.value
            && let Value::Placeholder(placeholder) = &value.value
        {
            placeholder_types.insert(placeholder.clone(), entry.def.columns[index].ty.arrow_type());
        }
    }
    let mut items = vec![format!("{alias}.\"{ROW_ADDRESS_COLUMN}\"")];
    for (index, column) in entry.def.columns.iter().enumerate() {
        match values.get(&index) {
            Some(expr) if is_default_keyword(expr) => items.push(format!("({})", default_expr(&entry.def, index)?)),
            Some(expr) => items.push(format!("({expr})")),
            None => items.push(format!("{alias}.{}", Ident::with_quote('"', column.name.clone()))),
        }
    }
    let select = select_statement(&items, &table, &alias, from, update.selection.as_ref())?;
    Ok(Rewrite { select, entry, alias, placeholder_types, joined: !from.is_empty() })
}

fn def_identity_always(def: &TableDef, column: usize) -> bool {
    def.columns[column].identity == Some(Identity::Always)
}

fn rewrite_delete(planner: &Planner, delete: &Delete) -> Result<Rewrite, SqlError> {
    if delete.limit.is_some() || !delete.order_by.is_empty() {
        return Err(SqlError::unsupported("DELETE with ORDER BY or LIMIT"));
    }
    let using = delete.using.as_deref().unwrap_or_default();
    let tables = match &delete.from {
        FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
    };
    let [table] = tables.as_slice() else {
        return Err(SqlError::unsupported("DELETE from several tables"));
    };
    let (entry, table, alias) = target(planner, table)?;
    let mut items = vec![format!("{alias}.\"{ROW_ADDRESS_COLUMN}\"")];
    if delete.returning.is_some() {
        // The deleted rows' values, for RETURNING.
        items.extend(entry.def.columns.iter().map(|c| format!("{alias}.{}", Ident::with_quote('"', c.name.clone()))));
    }
    let select = select_statement(&items, &table, &alias, using, delete.selection.as_ref())?;
    Ok(Rewrite { select, entry, alias, placeholder_types: HashMap::new(), joined: !using.is_empty() })
}

/// `SELECT items FROM <row-address table> AS alias[, others] [WHERE selection]`.
fn select_statement(
    items: &[String],
    table: &Ident,
    alias: &Ident,
    others: &[TableWithJoins],
    selection: Option<&Expr>,
) -> Result<Statement, SqlError> {
    let mut sql = format!("SELECT {} FROM \"{ROWS_SCHEMA}\".{table} AS {alias}", items.join(", "));
    for other in others {
        sql.push_str(&format!(", {other}"));
    }
    if let Some(selection) = selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    let mut statements = parse(&sql)?;
    match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => Ok(statement),
        _ => Err(SqlError::internal("rewrite did not produce one statement")),
    }
}
