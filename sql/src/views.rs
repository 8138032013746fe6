//! Views: CREATE [OR REPLACE] VIEW, DROP VIEW, and their expansion.
//!
//! A view is a catalog row holding its query's text ([`ViewDef`]), with the
//! relation names in it qualified by the schema they resolved to when the
//! view was created, so that a later search path does not change what the
//! view reads (PostgreSQL binds a view to the relations' oids; renaming a
//! relation a view reads is not tracked here).
//!
//! A statement that names a view reads its query: before planning,
//! [`expand`] replaces each such table reference with the view's query as a
//! derived table under the view's name (or the reference's alias), its
//! columns named as the view's. Views over views expand in turn. DataFusion
//! then plans and optimises the whole as one query, so filters reach the
//! tables under a view (and their indexes) as they would without it.
//!
//! Views are read-only: INSERT, UPDATE and DELETE on a view fail with
//! PostgreSQL's SQLSTATE for a wrong object type. Dropping a relation a
//! view reads needs CASCADE, which drops the view too.

use crate::catalog::{self, Catalog, QualifiedName, SearchPath, TableId, ViewDef, ViewEntry};
use crate::ddl::{normalize, qualified_name};
use crate::engine::{Planner, QueryOutput, WriteTxn};
use crate::error::{SqlError, sqlstate};
use datafusion::arrow::datatypes::DataType;
use datafusion::sql::sqlparser::ast::{
    CreateView, Ident, ObjectName, ObjectNamePart, Query, Statement, TableAlias, TableAliasColumnDef, TableFactor,
    VisitMut, Visitor, VisitorMut,
};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Nested view expansions allowed in one statement (a cycle of views made
/// with OR REPLACE would otherwise never end).
const EXPANSIONS_MAX: usize = 256;

/// CREATE [OR REPLACE] VIEW name [(columns)] AS query.
pub(crate) async fn create(
    txn: &mut WriteTxn,
    planner: &Planner,
    catalog: &Catalog,
    path: &SearchPath,
    create: &CreateView,
) -> Result<QueryOutput, SqlError> {
    if create.materialized || create.temporary || create.to.is_some() || create.or_alter {
        return Err(SqlError::unsupported("materialized, temporary and ALTER views"));
    }
    let name = qualified_name(&create.name)?;
    let schema = catalog.creation_schema(path, &name)?;
    let replacing = catalog.view(&schema, &name.name);
    if replacing.is_some() && create.if_not_exists {
        crate::notice::raise(format!("relation \"{}\" already exists, skipping", name.name));
        return Ok(QueryOutput::command("CREATE VIEW"));
    }
    if (replacing.is_some() && !create.or_replace)
        || (replacing.is_none() && catalog.relation_exists(&schema, &name.name))
    {
        return Err(catalog::relation_exists(&name.name));
    }
    let mut query = (*create.query).clone();
    let depends_on = qualify(&mut query, catalog, path)?;
    let mut expanded = Statement::Query(Box::new(query.clone()));
    expand(&mut expanded, catalog, path)?;
    let plan = planner.plan_unbound(expanded).await?;
    let fields = plan.schema().fields();
    if create.columns.len() > fields.len() {
        return Err(SqlError::new(sqlstate::SYNTAX_ERROR, "CREATE VIEW specifies more column names than columns"));
    }
    let mut columns = Vec::with_capacity(fields.len());
    for (position, field) in fields.iter().enumerate() {
        let name = create.columns.get(position).map_or_else(|| field.name().clone(), |column| normalize(&column.name));
        if columns.iter().any(|(taken, _)| *taken == name) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_COLUMN,
                format!("column \"{name}\" specified more than once"),
            ));
        }
        columns.push((name, type_oid(field.data_type())));
    }
    if let Some(old) = replacing {
        // PostgreSQL: a replacement may add columns at the end, nothing else.
        let kept = old.def.columns.iter().zip(&columns).all(|(old, new)| old == new);
        if !kept || columns.len() < old.def.columns.len() {
            return Err(SqlError::new(
                sqlstate::INVALID_TABLE_DEFINITION,
                "cannot change the columns of a view (only add columns at the end)",
            ));
        }
    }
    txn.private_ddl = true;
    let def = ViewDef { id: TableId(0), name: name.name.clone(), query: query.to_string(), columns, depends_on };
    catalog::create_view(&mut txn.writes, catalog, &schema, def, replacing).await?;
    Ok(QueryOutput::command("CREATE VIEW"))
}

/// DROP VIEW [IF EXISTS] names [CASCADE | RESTRICT].
pub(crate) async fn drop(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    path: &SearchPath,
    (if_exists, cascade): (bool, bool),
    names: &[ObjectName],
) -> Result<QueryOutput, SqlError> {
    let mut views: Vec<ViewEntry> = Vec::new();
    for name in names {
        let name = qualified_name(name)?;
        if !if_exists {
            catalog.check_schema(&name)?;
        }
        match catalog.find_view(path, &name) {
            Some(view) => views.push(view.clone()),
            None if if_exists => crate::notice::raise(format!("view \"{name}\" does not exist, skipping")),
            None if catalog.find_relation(path, &name).is_some() => {
                return Err(SqlError::new(sqlstate::WRONG_OBJECT_TYPE, format!("\"{name}\" is not a view")));
            }
            None => return Err(SqlError::new(sqlstate::UNDEFINED_TABLE, format!("view \"{name}\" does not exist"))),
        }
    }
    let ids: Vec<TableId> = views.iter().map(|view| view.def.id).collect();
    drop_readers(txn, catalog, &ids, cascade, "view").await?;
    for view in &views {
        catalog::drop_view(&mut txn.writes, catalog, view).await?;
    }
    Ok(QueryOutput::command("DROP VIEW"))
}

/// Before relations `dropped` (tables or views, of `kind`) go: the views
/// reading them, and the views reading those, are dropped with CASCADE and
/// refuse the drop (2BP01, PostgreSQL's message) without it.
pub(crate) async fn drop_readers(
    txn: &mut WriteTxn,
    catalog: &Catalog,
    dropped: &[TableId],
    cascade: bool,
    kind: &str,
) -> Result<(), SqlError> {
    let mut gone: Vec<TableId> = dropped.to_vec();
    let mut readers: Vec<&ViewEntry> = Vec::new();
    let mut at = 0;
    while at < gone.len() {
        let id = gone[at];
        at += 1;
        for view in catalog.views_reading(id) {
            if gone.contains(&view.def.id) {
                continue;
            }
            if !cascade {
                let name = relation_name(catalog, id).unwrap_or_default();
                return Err(SqlError::new(
                    sqlstate::DEPENDENT_OBJECTS_STILL_EXIST,
                    format!("cannot drop {kind} {name} because other objects depend on it"),
                )
                .with_detail(format!("view {} depends on {kind} {name}", view.def.name)));
            }
            crate::notice::raise(format!("drop cascades to view {}", view.def.name));
            gone.push(view.def.id);
            readers.push(view);
        }
    }
    for view in readers {
        catalog::drop_view(&mut txn.writes, catalog, view).await?;
    }
    Ok(())
}

/// The name of table or view `id`.
fn relation_name(catalog: &Catalog, id: TableId) -> Option<String> {
    catalog
        .table_by_id(id)
        .map(|entry| entry.def.name.clone())
        .or_else(|| catalog.views().find(|view| view.def.id == id).map(|view| view.def.name.clone()))
}

/// Qualifies the relation names of `query` that resolve to tables or views
/// by their schema; returns the ids of those relations.
fn qualify(query: &mut Query, catalog: &Catalog, path: &SearchPath) -> Result<Vec<TableId>, SqlError> {
    let ctes = cte_names(&Statement::Query(Box::new(query.clone())));
    let mut depends_on = Vec::new();
    let mut failed = None;
    let _ = datafusion::sql::sqlparser::ast::visit_relations_mut(query, |name| {
        let Ok(qualified) = qualified_name(name) else { return ControlFlow::<()>::Continue(()) };
        if qualified.schema.is_none() && ctes.contains(&qualified.name) {
            return ControlFlow::Continue(());
        }
        let found = match catalog.find_view(path, &qualified) {
            Some(view) => Some((view.def.id, view.schema_name.clone())),
            None => catalog.find_table(path, &qualified).map(|table| (table.def.id, table.schema_name.clone())),
        };
        match found {
            Some((id, schema)) => {
                if !depends_on.contains(&id) {
                    depends_on.push(id);
                }
                *name = ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
                    ObjectNamePart::Identifier(Ident::with_quote('"', qualified.name)),
                ]);
            }
            None if qualified.schema.is_some() => failed = Some(qualified),
            None => {}
        }
        ControlFlow::Continue(())
    });
    match failed {
        Some(name) if catalog.check_schema(&name).is_err() => {
            Err(SqlError::undefined_schema(name.schema.as_deref().unwrap_or_default()))
        }
        _ => Ok(depends_on),
    }
}

/// The names the statement's WITH clauses define (they hide views of the same name).
fn cte_names(statement: &Statement) -> HashSet<String> {
    struct Ctes(HashSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            if let Some(with) = &query.with {
                self.0.extend(with.cte_tables.iter().map(|cte| normalize(&cte.alias.name)));
            }
            ControlFlow::Continue(())
        }
    }
    let mut ctes = Ctes(HashSet::new());
    let _ = datafusion::sql::sqlparser::ast::Visit::visit(statement, &mut ctes);
    ctes.0
}

/// Replaces every reference to a view in `statement` by the view's query
/// (see the module docs). A no-op, without walking, when there are no views.
pub(crate) fn expand(statement: &mut Statement, catalog: &Catalog, path: &SearchPath) -> Result<(), SqlError> {
    if catalog.views().next().is_none() {
        return Ok(());
    }
    struct Expander<'a> {
        catalog: &'a Catalog,
        path: &'a SearchPath,
        ctes: HashSet<String>,
        expansions: usize,
        error: Option<SqlError>,
    }
    impl VisitorMut for Expander<'_> {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            let TableFactor::Table { name, alias, args: None, .. } = factor else { return ControlFlow::Continue(()) };
            let Ok(qualified) = qualified_name(name) else { return ControlFlow::Continue(()) };
            if qualified.schema.is_none() && self.ctes.contains(&qualified.name) {
                return ControlFlow::Continue(());
            }
            let Some(view) = self.catalog.find_view(self.path, &qualified) else { return ControlFlow::Continue(()) };
            self.expansions += 1;
            if self.expansions > EXPANSIONS_MAX {
                self.error = Some(SqlError::new(
                    "42P17",
                    format!("infinite recursion detected in rules for relation \"{}\"", view.def.name),
                ));
                return ControlFlow::Break(());
            }
            let query = match crate::engine::parse(&view.def.query).map(|mut s| s.pop()) {
                Ok(Some(Statement::Query(query))) => query,
                _ => {
                    self.error = Some(SqlError::corrupt(format_args!("view {} holds no query", view.def.name)));
                    return ControlFlow::Break(());
                }
            };
            let mut alias = alias.clone().unwrap_or_else(|| TableAlias {
                explicit: true,
                name: Ident::with_quote('"', view.def.name.clone()),
                columns: Vec::new(),
                at: None,
            });
            // Columns the reference does not rename keep the view's names.
            for (column, _) in view.def.columns.iter().skip(alias.columns.len()) {
                alias
                    .columns
                    .push(TableAliasColumnDef { name: Ident::with_quote('"', column.clone()), data_type: None });
            }
            *factor = TableFactor::Derived { lateral: false, subquery: query, alias: Some(alias), sample: None };
            ControlFlow::Continue(())
        }
    }
    let mut expander = Expander { catalog, path, ctes: cte_names(statement), expansions: 0, error: None };
    let _ = statement.visit(&mut expander);
    match expander.error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// 42809 for a write to a view (views are read-only here).
pub(crate) fn refuse_write(catalog: &Catalog, path: &SearchPath, name: &QualifiedName) -> Result<(), SqlError> {
    match catalog.find_view(path, name) {
        Some(view) => Err(SqlError::new(
            sqlstate::WRONG_OBJECT_TYPE,
            format!("cannot change view \"{}\": views are read-only", view.def.name),
        )),
        None => Ok(()),
    }
}

/// The PostgreSQL type oid of a view column of Arrow type `ty`.
fn type_oid(ty: &DataType) -> i32 {
    match ty {
        DataType::Boolean => 16,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 17,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => 20,
        DataType::Int16 | DataType::Int8 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Float32 | DataType::Float16 => 700,
        DataType::Float64 => 701,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Time32(_) | DataType::Time64(_) => 1083,
        DataType::Timestamp(_, None) => 1114,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Interval(_) | DataType::Duration(_) => 1186,
        DataType::Decimal128(..) | DataType::Decimal256(..) => 1700,
        _ => 25,
    }
}
