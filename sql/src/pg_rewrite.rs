//! Rewrites of PostgreSQL catalog-query syntax that DataFusion does not
//! plan, applied to a read statement's AST before planning.
//!
//! Clients such as psql (`\d`, `\dt`, `\du`, ...) and drivers introspect
//! the database with queries written for PostgreSQL's catalogs. Each rewrite
//! keeps the query's meaning for the catalogs Borealis has:
//!
//! | PostgreSQL | becomes | why |
//! |---|---|---|
//! | `x COLLATE c` | `x` | strings compare bytewise (the C collation) everywhere |
//! | `a OPERATOR(pg_catalog.~) b` | `a ~ b` (any built-in operator) | the schema-qualified operator form |
//! | `pg_catalog.f(...)` | `f(...)` | DataFusion does not resolve qualified function names |
//! | `x::regclass` | `regclassout(x)` (the relation's name) | regclass prints as a name |
//! | `'name'::regclass`, `$1::regclass` | `regclassin('name')` (its oid) | a literal regclass is looked up |
//! | `x::json`, `x::jsonb` | `json_in(x)`, `jsonb_in(x)` | types DataFusion lacks (`crate::json`) |
//! | `a -> b`, `->>`, `#>`, `#>>`, `@>`, `?` | `json_get(a, b)`, ... | the json operators as functions |
//! | `'{1,"a b"}'::t[]` | `make_array(CAST('1' AS t), CAST('a b' AS t))` | DataFusion cannot cast text to a list |
//! | `mod(a, b)` | `a % b` | the same operation under PostgreSQL's function name |
//! | `x::varchar(n)`, `x::char(n)` | `left(x::text, n)`, `rpad(x::text, n)` | explicit casts cut to the length |
//! | `x::regtype`, `x::regnamespace` | `regtypeout(x)`, `regnamespaceout(x)` | print as names |
//! | `::oid`, `::name`, `::"char"`, `::pg_catalog.int2[]`, ... | int, text, smallint[] ... | system types Borealis represents with its own |
//! | `mod(a, b)` | `(a) % (b)` | DataFusion has the operator, not the function |
//! | `x > ALL (SELECT ...)`, `x = ANY (SELECT ...)` | `... (SELECT * FROM (SELECT ...) AS any_all_subquery)` | the subquery's column gets a name of its own (see `own_name_subquery`) |
//! | `generate_subscripts(a, d)` | `unnest(generate_series(1, array_length(a, d)))` | the set-returning form DataFusion has |
//! | `information_schema._pg_expandarray(a)` | `unnest(pg_expandarray(a))` | the set of (x, n) records as an unnested struct list |
//! | `(record).field` | `get_field(record, 'field')` | field selection from a composite value |
//! | `generate_series(...) g`, `unnest(...) u` | `... g(g)`, `... u(u)` | a one-column function's alias names its column too |
//! | `information_schema.table_constraints` (and the other constraint views) | `pg_catalog.table_constraints` | DataFusion's information_schema has no constraints |
//! | `x IN (SELECT pg_partition_ancestors(t) UNION ALL VALUES (t))` | `x IN (t)` | no table is a partition |
//! | `ARRAY(SELECT e ...)` | `(SELECT '{' \|\| coalesce(string_agg(e::text, ','), '') \|\| '}' ...)` | PostgreSQL's text form of the array |
//!
//! The last one changes the result type from an array to text; clients that
//! read the value as text (psql) see PostgreSQL's output for simple
//! elements (names without commas, quotes or braces).
//!
//! [`provably_empty`] answers for queries DataFusion still cannot plan: if
//! every branch of the query reads, through inner joins, a system table that
//! Borealis always keeps empty (policies, publications, inheritance,
//! extended statistics, ...), the result has no rows whatever the rest of
//! the query says, so the engine may answer with zero rows. psql's `\d`
//! footer queries are of this kind.

use datafusion::sql::sqlparser::ast::BinaryOperator;
use datafusion::sql::sqlparser::ast::{
    ArrayElemTypeDef, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident,
    JoinOperator, ObjectName, ObjectNamePart, OrderByKind, Query, Select, SelectItem, SetExpr, SetOperator, Statement,
    TableAliasColumnDef, TableFactor, TableWithJoins, Value, ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// System tables that are empty in Borealis (see `crate::pg_catalog`), and
/// one that is not but whose correlated subqueries DataFusion cannot plan
/// (`pg_sequence`: SQLAlchemy's identity options read as NULL). Plain
/// queries on it see its rows.
const EMPTY_SYSTEM_TABLES: &[&str] = &[
    "pg_description",
    "pg_auth_members",
    "pg_inherits",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_trigger",
    "pg_extension",
    "pg_views",
    "pg_sequence",
];

/// Applies every rewrite to `statement` in place.
pub fn rewrite(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        rewrite_expr(expr);
        ControlFlow::<()>::Continue(())
    });
    let _ = statement.visit(&mut InformationSchemaViews);
    alias_function_columns(statement);
}

/// `information_schema.table_constraints` and the other constraint views
/// Borealis computes become `pg_catalog.x` (see
/// `crate::pg_catalog::INFORMATION_SCHEMA_VIEWS`): DataFusion answers the
/// schema `information_schema` itself, with its own tables only.
struct InformationSchemaViews;

impl VisitorMut for InformationSchemaViews {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &mut ObjectName) -> ControlFlow<()> {
        let [schema, table] = relation.0.as_slice() else { return ControlFlow::Continue(()) };
        let is_information_schema =
            schema.as_ident().is_some_and(|ident| ident.value.eq_ignore_ascii_case("information_schema"));
        let view = table.as_ident().map(|ident| ident.value.to_lowercase());
        if is_information_schema
            && let Some(view) = view
            && crate::pg_catalog::INFORMATION_SCHEMA_VIEWS.contains(&view.as_str())
        {
            *relation = ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new(view)]);
        }
        ControlFlow::Continue(())
    }
}

/// The one rewrite writes need too (`INSERT … SELECT g FROM generate_series(1, 9) g`).
pub fn alias_function_columns(statement: &mut Statement) {
    let _ = statement.visit(&mut FunctionAliases);
}

/// The casts writes need rewritten too (`INSERT … VALUES ('abc'::varchar(2))`):
/// those to types DataFusion lacks or plans differently.
pub fn rewrite_casts(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Cast { kind: CastKind::DoubleColon | CastKind::Cast, expr: inner, data_type, .. } = expr
            && let Some(rewritten) = value_cast(inner, data_type)
        {
            *expr = rewritten;
        }
        if let Some(rewritten) = json_operator(expr) {
            *expr = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `json_agg(x [ORDER BY ...])` (and `jsonb_agg`) as `json_agg(array_agg(x
/// [ORDER BY ...]))`: the outer call is `crate::json`'s function of the
/// same name over the aggregated list (which also names the column as
/// PostgreSQL does).
fn json_aggregate(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Expr> {
    let [ObjectNamePart::Identifier(name)] = function.name.0.as_slice() else { return None };
    let name = name.value.to_ascii_lowercase();
    // The outer call of an earlier rewrite takes the list array_agg makes.
    let over_list = match &function.args {
        FunctionArguments::List(list) => matches!(
            list.args.first(),
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Function(inner))))
                if inner.name.0.last().and_then(|part| part.as_ident()).is_some_and(|n| n.value.eq_ignore_ascii_case("array_agg"))
        ),
        _ => false,
    };
    if !matches!(name.as_str(), "json_agg" | "jsonb_agg") || over_list {
        return None;
    }
    let mut inner = function.clone();
    inner.name = ObjectName::from(vec![Ident::new("array_agg")]);
    parse_expr(&format!("{name}({inner})"))
}

/// `a -> b` and the other json operators as calls of `crate::json`'s functions.
fn json_operator(expr: &Expr) -> Option<Expr> {
    let Expr::BinaryOp { left, op, right } = expr else { return None };
    let function = match op {
        BinaryOperator::Arrow => "json_get",
        BinaryOperator::LongArrow => "json_get_text",
        BinaryOperator::HashArrow => "json_get_path",
        BinaryOperator::HashLongArrow => "json_get_path_text",
        BinaryOperator::AtArrow => "jsonb_contains",
        BinaryOperator::Question => "jsonb_exists",
        _ => return None,
    };
    parse_expr(&format!("{function}({left}, {right})"))
}

/// In PostgreSQL the alias of a function returning one column also names
/// that column: `SELECT g FROM generate_series(1, 3) g`.
struct FunctionAliases;

impl VisitorMut for FunctionAliases {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        // `pg_catalog.generate_series(1, 32) pos(n)`: table functions are not qualified in DataFusion.
        if let TableFactor::Table { name, args: Some(_), .. } = factor
            && name.0.len() == 2
            && is_pg_catalog(&name.0[0])
        {
            name.0.remove(0);
        }
        if let TableFactor::Table { name, args: Some(_), alias: Some(alias), .. } = factor
            && alias.columns.is_empty()
            && table_name(name).is_some_and(|n| n == "generate_series" || n == "unnest")
        {
            alias.columns = vec![TableAliasColumnDef::from_name(alias.name.value.clone())];
        }
        ControlFlow::Continue(())
    }
}

fn rewrite_expr(expr: &mut Expr) {
    match expr {
        Expr::Collate { expr: inner, .. } => *expr = std::mem::replace(inner.as_mut(), null()),
        // PostgreSQL's own spelling of AT TIME ZONE (and its column name).
        Expr::AtTimeZone { timestamp, time_zone } => {
            if let Some(call) = parse_expr(&format!("timezone({time_zone}, {timestamp})")) {
                *expr = call;
            }
        }
        Expr::BinaryOp { .. } if json_operator(expr).is_some() => {
            if let Some(rewritten) = json_operator(expr) {
                *expr = rewritten;
            }
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(builtin) = parts.last().and_then(|name| builtin_operator(name))
            {
                *op = builtin;
            }
        }
        Expr::Function(function) if json_aggregate(function).is_some() => {
            if let Some(rewritten) = json_aggregate(function) {
                *expr = rewritten;
            }
        }
        Expr::Function(function) => {
            if function.name.0.len() == 2 && is_pg_catalog(&function.name.0[0]) {
                function.name.0.remove(0);
            }
            if is_expandarray(&function.name)
                && let FunctionArguments::List(list) = &function.args
                && let [array] = list.args.as_slice()
                && let Some(rewritten) = parse_expr(&format!("unnest(pg_expandarray({array}))"))
            {
                *expr = rewritten;
                return;
            }
            if let Some(rewritten) = generate_subscripts(function).or_else(|| modulo(function)) {
                *expr = rewritten;
                return;
            }
            let is_array = function.name.to_string().eq_ignore_ascii_case("array");
            if is_array && let FunctionArguments::Subquery(query) = &function.args {
                let query = query.as_ref().clone();
                if let Some(rewritten) = array_subquery(query) {
                    *expr = rewritten;
                }
            }
        }
        Expr::CompoundFieldAccess { root, access_chain } if matches!(root.as_ref(), Expr::Nested(_)) => {
            if let Some(rewritten) = field_access(root, access_chain) {
                *expr = rewritten;
            }
        }
        Expr::InSubquery { expr: left, subquery, negated } => {
            if let Some(list) = partition_ancestors_or_self(subquery) {
                *expr = Expr::InList { expr: left.clone(), list, negated: *negated };
            }
        }
        Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
            if let Expr::Subquery(query) = right.as_mut() {
                own_name_subquery(query);
            }
        }
        Expr::Subquery(query) if query_is_empty(query) => *expr = null(),
        Expr::Subquery(query) => single_row_subquery(query),
        Expr::Cast { kind: CastKind::DoubleColon | CastKind::Cast, expr: inner, data_type, .. } => {
            if let Some(rewritten) = cast(inner, data_type) {
                *expr = rewritten;
            }
        }
        _ => {}
    }
}

/// `information_schema._pg_expandarray`, with or without its schema.
fn is_expandarray(name: &ObjectName) -> bool {
    let parts: Vec<String> = name.0.iter().filter_map(|p| p.as_ident()).map(|i| i.value.to_lowercase()).collect();
    matches!(
        parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
        ["_pg_expandarray"] | ["information_schema", "_pg_expandarray"]
    )
}

/// `(record).field.field`: PostgreSQL's field selection from a composite
/// value, as DataFusion's `get_field` on a struct. None for any other
/// access (subscripts), which DataFusion plans itself.
fn field_access(root: &Expr, chain: &[datafusion::sql::sqlparser::ast::AccessExpr]) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::AccessExpr;
    let Expr::Nested(inner) = root else { return None };
    let mut text = inner.to_string();
    for access in chain {
        let AccessExpr::Dot(Expr::Identifier(field)) = access else { return None };
        let field = if field.quote_style.is_some() { field.value.clone() } else { field.value.to_lowercase() };
        text = format!("get_field({text}, '{}')", field.replace('\'', "''"));
    }
    parse_expr(&text)
}

/// `generate_subscripts(a, d)` in a select list: the subscripts 1..n of
/// dimension `d` as a set, which is `unnest` of the series 1..n. Next to
/// `unnest(a)` in the same list the two zip row by row, as they do in
/// PostgreSQL (drivers number an index's key columns this way).
fn generate_subscripts(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Expr> {
    if !function.name.to_string().eq_ignore_ascii_case("generate_subscripts") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else { return None };
    let [array, dimension] = list.args.as_slice() else { return None };
    parse_expr(&format!("unnest(generate_series(1, CAST(array_length({array}, {dimension}) AS BIGINT)))"))
}

/// The subquery of `x op ANY (...)` / `x op ALL (...)` read from a derived
/// table of its own. DataFusion moves the comparison into the subquery, and
/// when the subquery reads the outer query's table under the same name
/// (`salary > ALL (SELECT salary FROM emp ...)` in a query on emp) both
/// sides of `emp.salary > emp.salary` resolve to the inner column: every
/// row passes or none does. Behind a derived table the column is
/// `any_all_subquery.salary`, which cannot be taken for the outer one.
/// DataFusion plans no outer reference inside a derived table, so a
/// subquery that names another query's table (`o.dept`) stays as it is.
fn own_name_subquery(query: &mut Box<Query>) {
    if !is_self_contained(query) {
        return;
    }
    let text = format!("SELECT * FROM ({query}) AS any_all_subquery");
    let wrapped =
        Parser::new(&PostgreSqlDialect {}).try_with_sql(&text).ok().and_then(|mut parser| parser.parse_query().ok());
    if let Some(wrapped) = wrapped {
        *query = wrapped;
    }
}

/// Whether every qualified column in `query` names a table of its own FROM.
fn is_self_contained(query: &Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else { return false };
    let own: Vec<String> = select
        .from
        .iter()
        .flat_map(|from| std::iter::once(&from.relation).chain(from.joins.iter().map(|join| &join.relation)))
        .filter_map(|factor| match factor {
            TableFactor::Table { alias: Some(alias), .. } | TableFactor::Derived { alias: Some(alias), .. } => {
                Some(alias.name.value.to_lowercase())
            }
            TableFactor::Table { name, alias: None, .. } => table_name(name).map(|name| name.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut contained = true;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(query, |expr| {
        if let Expr::CompoundIdentifier(parts) = expr
            && let [.., qualifier, _] = parts.as_slice()
            && !own.contains(&qualifier.value.to_lowercase())
        {
            contained = false;
        }
        ControlFlow::<()>::Continue(())
    });
    contained
}

/// `mod(a, b)`: PostgreSQL's function form of `%`, same types and the same
/// 22012 for a zero divisor.
fn modulo(function: &datafusion::sql::sqlparser::ast::Function) -> Option<Expr> {
    if !function.name.to_string().eq_ignore_ascii_case("mod") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else { return None };
    let [dividend, divisor] = list.args.as_slice() else { return None };
    parse_expr(&format!("(({dividend}) % ({divisor}))"))
}

fn null() -> Expr {
    Expr::Value(ValueWithSpan::from(Value::Null))
}

fn is_pg_catalog(part: &ObjectNamePart) -> bool {
    part.as_ident().is_some_and(|ident| ident.value.eq_ignore_ascii_case("pg_catalog"))
}

fn builtin_operator(name: &str) -> Option<BinaryOperator> {
    Some(match name {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "~~" => BinaryOperator::PGLikeMatch,
        "=" => BinaryOperator::Eq,
        "<>" | "!=" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        "<=" => BinaryOperator::LtEq,
        ">" => BinaryOperator::Gt,
        ">=" => BinaryOperator::GtEq,
        "||" => BinaryOperator::StringConcat,
        "+" => BinaryOperator::Plus,
        "-" => BinaryOperator::Minus,
        _ => return None,
    })
}

/// The rewritten cast of `inner` to `data_type`, None to keep it.
fn cast(inner: &mut Box<Expr>, data_type: &mut DataType) -> Option<Expr> {
    if let Some(rewritten) = value_cast(inner, data_type) {
        return Some(rewritten);
    }
    let name = type_name(data_type)?;
    // A parameter cast to regclass is given as a name, like a literal.
    let literal = matches!(
        inner.as_ref(),
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(_) | Value::Placeholder(_), .. })
    );
    let function = match name.as_str() {
        "regclass" if literal => "regclassin",
        "regclass" => "regclassout",
        "regtype" if !literal => "regtypeout",
        "regnamespace" if !literal => "regnamespaceout",
        _ => {
            *data_type = replacement_type(data_type)?;
            return None;
        }
    };
    parse_expr(&format!("{function}({inner})"))
}

/// The rewritten cast of `inner` to a value type DataFusion casts
/// differently, None to keep it.
fn value_cast(inner: &Expr, data_type: &DataType) -> Option<Expr> {
    match data_type {
        DataType::JSON => parse_expr(&format!("json_in({inner})")),
        DataType::JSONB => parse_expr(&format!("jsonb_in({inner})")),
        DataType::Array(ArrayElemTypeDef::SquareBracket(element, _)) if !matches!(**element, DataType::Custom(..)) => {
            array_literal(inner, element)
        }
        _ => length_cast(inner, data_type),
    }
}

/// `'{1,2}'::int[]`: an array literal as `make_array` of its elements
/// cast to the element type (DataFusion cannot cast text to a list).
/// Elements may be double-quoted (with backslash escapes); an unquoted
/// NULL is NULL. The empty array is left to DataFusion.
fn array_literal(inner: &Expr, element: &DataType) -> Option<Expr> {
    let Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(text), .. }) = inner else { return None };
    let elements = array_elements(text)?;
    if elements.is_empty() {
        return None;
    }
    let items: Vec<String> = elements
        .into_iter()
        .map(|item| match item {
            Some(item) => format!("CAST('{}' AS {element})", item.replace('\'', "''")),
            None => format!("CAST(NULL AS {element})"),
        })
        .collect();
    parse_expr(&format!("make_array({})", items.join(", ")))
}

/// The elements of PostgreSQL's text form of a one-dimensional array, None
/// if `text` is not one.
fn array_elements(text: &str) -> Option<Vec<Option<String>>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    let mut elements = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut item = String::new();
        let quoted = chars.next_if_eq(&'"').is_some();
        if quoted {
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => item.push(chars.next()?),
                    c => item.push(c),
                }
            }
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                if matches!(c, '{' | '}' | '"') {
                    return None;
                }
                item.push(c);
            }
            item = item.trim().to_string();
        }
        let null = !quoted && item.eq_ignore_ascii_case("null");
        elements.push((!null).then_some(item));
        match chars.next() {
            None => return Some(elements),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// An explicit cast to `varchar(n)` keeps the first n characters, one to
/// `char(n)` pads or cuts to n (PostgreSQL truncates on explicit casts,
/// where an INSERT of a longer value fails); DataFusion drops the length.
fn length_cast(inner: &Expr, data_type: &DataType) -> Option<Expr> {
    use datafusion::sql::sqlparser::ast::CharacterLength;
    let (function, length) = match data_type {
        DataType::Varchar(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::CharacterVarying(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::CharVarying(Some(CharacterLength::IntegerLength { length, .. })) => ("left", length),
        DataType::Char(Some(CharacterLength::IntegerLength { length, .. }))
        | DataType::Character(Some(CharacterLength::IntegerLength { length, .. })) => ("rpad", length),
        _ => return None,
    };
    parse_expr(&format!("{function}(CAST({inner} AS text), {length})"))
}

/// The lower-case name of a custom (or regclass) type, without `pg_catalog.`.
fn type_name(data_type: &DataType) -> Option<String> {
    match data_type {
        DataType::Regclass => Some("regclass".into()),
        DataType::Custom(name, modifiers) if modifiers.is_empty() => match name.0.as_slice() {
            [part] => part.as_ident().map(|i| i.value.to_lowercase()),
            [schema, part] if is_pg_catalog(schema) => part.as_ident().map(|i| i.value.to_lowercase()),
            _ => None,
        },
        DataType::Array(ArrayElemTypeDef::SquareBracket(inner, _)) => type_name(inner).map(|name| format!("{name}[]")),
        _ => None,
    }
}

/// A DataFusion type for a PostgreSQL system type, None if it is not one.
fn replacement_type(data_type: &DataType) -> Option<DataType> {
    let name = type_name(data_type)?;
    let (base, array) = match name.strip_suffix("[]") {
        Some(base) => (base.to_string(), "[]"),
        None => (name, ""),
    };
    let ours = match base.as_str() {
        "text" | "name" | "char" | "bpchar" | "regproc" | "regprocedure" | "regoper" | "regrole" => "text",
        "varchar" => "varchar",
        "oid" | "int4" | "xid" | "cid" => "int",
        "int2" => "smallint",
        "int8" => "bigint",
        "bool" => "boolean",
        "float4" => "real",
        "float8" => "double precision",
        "numeric" => "numeric",
        "date" => "date",
        "timestamp" => "timestamp",
        _ => return None,
    };
    Parser::new(&PostgreSqlDialect {}).try_with_sql(&format!("{ours}{array}")).ok()?.parse_data_type().ok()
}

fn parse_expr(text: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {}).try_with_sql(text).ok()?.parse_expr().ok()
}

/// A scalar subquery over system tables only, `(SELECT e FROM pg_x ...)`,
/// becomes `(SELECT max(e) FROM pg_x ...)`: DataFusion plans a correlated
/// scalar subquery only when it is aggregated. PostgreSQL fails such a
/// subquery that returns more than one row; the catalog subqueries clients
/// send (a column's default, its collation) return at most one.
fn single_row_subquery(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else { return };
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    let only_system_tables = !select.from.is_empty()
        && select.from.iter().all(|from| {
            std::iter::once(&from.relation).chain(from.joins.iter().map(|join| &join.relation)).all(
                |factor| matches!(factor, TableFactor::Table { name, args: None, .. } if is_system_table_name(name)),
            )
        });
    if grouped || !only_system_tables || select.distinct.is_some() {
        return;
    }
    let [item] = select.projection.as_mut_slice() else { return };
    let (SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) = item else { return };
    if has_aggregate(&SelectItem::UnnamedExpr(expr.clone())) {
        return;
    }
    if let Some(aggregated) = parse_expr(&format!("max({expr})")) {
        *expr = aggregated;
    }
    if let Some(selection) = select.selection.take() {
        let inner = inner_names(&select.from);
        let selection = drop_implied_has_default(selection, &select.from, &inner);
        select.selection = Some(uncorrelate_filters(selection, &inner));
    }
}

/// psql's "Referenced by:" asks for constraints whose `confrelid IN (SELECT
/// pg_partition_ancestors(t) UNION ALL VALUES (t))`. Borealis has no
/// partitions, and pg_partition_ancestors of a table that is not a
/// partition returns no rows, so the first branch goes and the VALUES
/// become an IN list: `confrelid IN (t)`.
fn partition_ancestors_or_self(query: &Query) -> Option<Vec<Expr>> {
    let SetExpr::SetOperation { op: SetOperator::Union, left, right, .. } = query.body.as_ref() else { return None };
    let SetExpr::Select(select) = left.as_ref() else { return None };
    let ancestors = select.from.is_empty()
        && matches!(select.projection.as_slice(), [SelectItem::UnnamedExpr(Expr::Function(function))]
            if function.name.0.last().and_then(|part| part.as_ident())
                .is_some_and(|name| name.value.eq_ignore_ascii_case("pg_partition_ancestors")));
    let SetExpr::Values(values) = right.as_ref() else { return None };
    if !ancestors || values.rows.iter().any(|row| row.content.len() != 1) {
        return None;
    }
    Some(values.rows.iter().map(|row| row.content[0].clone()).collect())
}

/// psql's Default column reads `(SELECT pg_get_expr(d.adbin, ...) FROM
/// pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND
/// a.atthasdef)`. The last conjunct tests only the outer row, which
/// DataFusion cannot decorrelate; it is implied by the others (a column has
/// a pg_attrdef row exactly when its atthasdef is true), so it goes.
fn drop_implied_has_default(selection: Expr, from: &[TableWithJoins], inner: &[String]) -> Expr {
    let reads_attrdef = from.iter().any(
        |f| matches!(&f.relation, TableFactor::Table { name, .. } if table_name(name).as_deref() == Some("pg_attrdef")),
    );
    if !reads_attrdef {
        return selection;
    }
    let mut conjuncts = Vec::new();
    split_conjunction(selection, &mut conjuncts);
    // `a.atthasdef` or `pg_catalog.pg_attribute.atthasdef` (SQLAlchemy), naming an outer relation.
    let implied = |conjunct: &Expr| {
        matches!(conjunct, Expr::CompoundIdentifier(parts)
            if parts.len() >= 2
                && parts[parts.len() - 1].value == "atthasdef"
                && !inner.contains(&parts[parts.len() - 2].value))
    };
    conjuncts
        .into_iter()
        .filter(|conjunct| !implied(conjunct))
        .reduce(|left, right| Expr::BinaryOp { left: Box::new(left), op: BinaryOperator::And, right: Box::new(right) })
        .unwrap_or_else(|| Expr::Value(ValueWithSpan::from(Value::Boolean(true))))
}

/// The names a FROM list binds (aliases, else table names).
fn inner_names(from: &[TableWithJoins]) -> Vec<String> {
    from.iter()
        .flat_map(|from| std::iter::once(&from.relation).chain(from.joins.iter().map(|join| &join.relation)))
        .filter_map(|factor| match factor {
            TableFactor::Table { alias: Some(alias), .. } => Some(alias.name.value.clone()),
            TableFactor::Table { name, .. } => table_name(name),
            _ => None,
        })
        .collect()
}

/// In a WHERE of conjuncts, an outer column that a conjunct equates to an
/// inner column (`c.oid = a.attcollation`) is replaced by that inner column
/// in the other conjuncts (`a.attcollation <> t.typcollation` becomes
/// `c.oid <> t.typcollation`). The rows are the same; DataFusion can then
/// decorrelate the subquery, as it handles correlated equalities only.
fn uncorrelate_filters(selection: Expr, inner: &[String]) -> Expr {
    let mut conjuncts = Vec::new();
    split_conjunction(selection, &mut conjuncts);
    let qualifier = |expr: &Expr| match expr {
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => Some(parts[0].value.clone()),
        _ => None,
    };
    let is_inner = |expr: &Expr| qualifier(expr).is_some_and(|q| inner.contains(&q));
    let is_outer = |expr: &Expr| qualifier(expr).is_some_and(|q| !inner.contains(&q));
    let mut equal: Vec<(String, Expr)> = Vec::new();
    for conjunct in &conjuncts {
        if let Expr::BinaryOp { left, op: BinaryOperator::Eq, right } = conjunct {
            if is_inner(left) && is_outer(right) {
                equal.push((right.to_string(), left.as_ref().clone()));
            } else if is_outer(left) && is_inner(right) {
                equal.push((left.to_string(), right.as_ref().clone()));
            }
        }
    }
    let defining = |conjunct: &Expr| {
        matches!(conjunct, Expr::BinaryOp { left, op: BinaryOperator::Eq, right }
            if (is_inner(left) && is_outer(right)) || (is_outer(left) && is_inner(right)))
    };
    let rewritten = conjuncts.into_iter().map(|mut conjunct| {
        if !defining(&conjunct) {
            let _ = visit_expressions_mut(&mut conjunct, |expr| {
                if let Some((_, replacement)) = equal.iter().find(|(outer, _)| *outer == expr.to_string()) {
                    *expr = replacement.clone();
                }
                ControlFlow::<()>::Continue(())
            });
        }
        conjunct
    });
    rewritten
        .reduce(|left, right| Expr::BinaryOp { left: Box::new(left), op: BinaryOperator::And, right: Box::new(right) })
        .unwrap_or_else(null)
}

fn split_conjunction(expr: Expr, into: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            split_conjunction(*left, into);
            split_conjunction(*right, into);
        }
        Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: BinaryOperator::And, .. }) => {
            split_conjunction(*inner, into)
        }
        other => into.push(other),
    }
}

fn is_system_table_name(name: &ObjectName) -> bool {
    table_name(name).is_some_and(|table| crate::pg_catalog::is_system_table(&table))
}

/// `ARRAY(SELECT e FROM ... [ORDER BY ...])` as a scalar subquery giving the array's text form.
fn array_subquery(mut query: Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_mut() else { return None };
    let [item] = select.projection.as_slice() else { return None };
    let element = match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    let mut order = String::new();
    if let Some(order_by) = query.order_by.take() {
        let OrderByKind::Expressions(items) = order_by.kind else { return None };
        let items: Vec<String> = items
            .into_iter()
            .map(|mut item| {
                if matches!(&item.expr, Expr::Value(ValueWithSpan { value: Value::Number(n, _), .. }) if n == "1") {
                    item.expr = element.clone();
                }
                item.to_string()
            })
            .collect();
        order = format!(" ORDER BY {}", items.join(", "));
    }
    let aggregate = format!("'{{' || coalesce(string_agg(CAST({element} AS TEXT), ','{order}), '') || '}}'");
    select.projection = vec![SelectItem::ExprWithAlias { expr: parse_expr(&aggregate)?, alias: Ident::new("array") }];
    Some(Expr::Subquery(Box::new(query)))
}

/// For a query that returns no rows whatever its other clauses say (see the
/// module doc), the names of its output columns; None otherwise, or when the
/// columns cannot be named without planning (`*`).
pub fn provably_empty(statement: &Statement) -> Option<Vec<String>> {
    let Statement::Query(query) = statement else { return None };
    if !query_is_empty(query) {
        return None;
    }
    let select = first_select(&query.body)?;
    let names = crate::names::postgres_column_names(statement);
    select
        .projection
        .iter()
        .enumerate()
        .map(|(at, item)| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(_) => {
                Some(names.as_ref().and_then(|n| n.get(at).cloned().flatten()).unwrap_or_else(|| "?column?".into()))
            }
            _ => None,
        })
        .collect()
}

fn first_select(body: &SetExpr) -> Option<&Select> {
    match body {
        SetExpr::Select(select) => Some(select),
        SetExpr::Query(query) => first_select(&query.body),
        SetExpr::SetOperation { left, .. } => first_select(left),
        _ => None,
    }
}

fn query_is_empty(query: &Query) -> bool {
    set_is_empty(&query.body)
}

fn set_is_empty(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select_is_empty(select),
        SetExpr::Query(query) => query_is_empty(query),
        SetExpr::SetOperation { left, op, right, .. } => match op {
            SetOperator::Union => set_is_empty(left) && set_is_empty(right),
            SetOperator::Intersect => set_is_empty(left) || set_is_empty(right),
            SetOperator::Except | SetOperator::Minus => set_is_empty(left),
        },
        _ => false,
    }
}

/// A SELECT without aggregates or grouping over a FROM that yields no rows.
fn select_is_empty(select: &Select) -> bool {
    let grouped = match &select.group_by {
        GroupByExpr::All(_) => true,
        GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped || select.having.is_some() || select.projection.iter().any(has_aggregate) {
        return false;
    }
    select.from.iter().any(from_is_empty)
}

/// Whether `item` calls an aggregate outside any subquery (which would make
/// one row of no rows). Unknown aggregates (user-defined ones do not exist)
/// are the built-in list below.
fn has_aggregate(item: &SelectItem) -> bool {
    struct Aggregates {
        subquery_depth: usize,
        found: bool,
    }
    impl Visitor for Aggregates {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.subquery_depth += 1;
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.subquery_depth -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            const AGGREGATES: &[&str] =
                &["count", "sum", "min", "max", "avg", "string_agg", "array_agg", "bool_and", "bool_or", "every"];
            if self.subquery_depth == 0
                && let Expr::Function(function) = expr
                && let Some(name) = function.name.0.last().and_then(|part| part.as_ident())
                && AGGREGATES.contains(&name.value.to_lowercase().as_str())
            {
                self.found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut visitor = Aggregates { subquery_depth: 0, found: false };
    let _ = item.visit(&mut visitor);
    visitor.found
}

/// Whether a FROM item (a relation and its joins) yields no rows: an empty
/// system table on the left or inner side, and no RIGHT or FULL join that
/// could bring rows back.
fn from_is_empty(from: &TableWithJoins) -> bool {
    let outer_right = from.joins.iter().any(|join| {
        matches!(join.join_operator, JoinOperator::Right(_) | JoinOperator::RightOuter(_) | JoinOperator::FullOuter(_))
    });
    if outer_right {
        return false;
    }
    is_empty_table(&from.relation)
        || from.joins.iter().any(|join| {
            matches!(join.join_operator, JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_))
                && is_empty_table(&join.relation)
        })
}

fn is_empty_table(factor: &TableFactor) -> bool {
    let TableFactor::Table { name, args: None, .. } = factor else { return false };
    table_name(name).is_some_and(|table| EMPTY_SYSTEM_TABLES.contains(&table.as_str()))
}

/// The table name of `pg_catalog.t` or `t`.
fn table_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [table] => table.as_ident().map(|i| i.value.clone()),
        [schema, table] if is_pg_catalog(schema) => table.as_ident().map(|i| i.value.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let mut statement = crate::engine::parse(sql).unwrap().remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn a_one_column_function_alias_names_its_column() {
        assert_eq!(rewritten("SELECT g FROM generate_series(1, 3) g"), "SELECT g FROM generate_series(1, 3) g (g)");
        assert_eq!(rewritten("SELECT x FROM generate_series(1, 3) g(x)"), "SELECT x FROM generate_series(1, 3) g (x)");
        assert_eq!(rewritten("SELECT * FROM t g"), "SELECT * FROM t g");
        assert_eq!(
            rewritten("SELECT pos.n FROM pg_catalog.generate_series(1, 32) pos(n)"),
            "SELECT pos.n FROM generate_series(1, 32) pos (n)"
        );
    }

    #[test]
    fn collate_and_qualified_operators_become_plain() {
        assert_eq!(
            rewritten("SELECT 1 FROM t WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default"),
            "SELECT 1 FROM t WHERE c.relname ~ '^(t)$'"
        );
    }

    #[test]
    fn qualified_functions_lose_their_schema() {
        assert_eq!(
            rewritten("SELECT pg_catalog.pg_get_userbyid(c.relowner), pg_catalog.format_type(a, b) FROM t"),
            "SELECT pg_get_userbyid(c.relowner), format_type(a, b) FROM t"
        );
    }

    #[test]
    fn any_and_all_subqueries_read_a_derived_table() {
        assert_eq!(
            rewritten("SELECT name FROM emp WHERE salary > ALL (SELECT salary FROM emp WHERE dept = 20)"),
            "SELECT name FROM emp WHERE salary > ALL(SELECT * FROM (SELECT salary FROM emp WHERE dept = 20) AS any_all_subquery)"
        );
        let correlated =
            "SELECT name FROM emp AS o WHERE o.salary >= ALL(SELECT i.salary FROM emp AS i WHERE i.dept = o.dept)";
        assert_eq!(rewritten(correlated), correlated);
    }

    #[test]
    fn mod_becomes_the_operator() {
        assert_eq!(rewritten("SELECT mod(a + 1, 3) FROM t"), "SELECT ((a + 1) % (3)) FROM t");
        assert_eq!(rewritten("SELECT mod(a) FROM t"), "SELECT mod(a) FROM t");
    }

    #[test]
    fn json_syntax_becomes_functions() {
        assert_eq!(
            rewritten("SELECT '{}'::jsonb -> 'a' ->> 0, d #> '{a,b}', d @> '{}', d ? 'k'"),
            "SELECT json_get_text(json_get(jsonb_in('{}'), 'a'), 0), json_get_path(d, '{a,b}'), jsonb_contains(d, '{}'), jsonb_exists(d, 'k')"
        );
    }

    #[test]
    fn array_literals_become_lists() {
        assert_eq!(
            rewritten(r#"SELECT '{1, NULL,"x,\"y"}'::text[]"#),
            r#"SELECT make_array(CAST('1' AS TEXT), CAST(NULL AS TEXT), CAST('x,"y' AS TEXT))"#
        );
        assert_eq!(array_elements("{a,{b}}"), None);
        assert_eq!(array_elements("{}"), Some(vec![]));
    }

    #[test]
    fn length_casts_cut() {
        assert_eq!(rewritten("SELECT 'abc'::varchar(2)"), "SELECT left(CAST('abc' AS TEXT), 2)");
        assert_eq!(rewritten("SELECT CAST(a AS char(3))"), "SELECT rpad(CAST(a AS TEXT), 3)");
        assert_eq!(rewritten("SELECT a::varchar"), "SELECT a::VARCHAR");
    }

    #[test]
    fn reg_casts_become_functions() {
        assert_eq!(
            rewritten(
                "SELECT c.oid::pg_catalog.regclass, t::regtype::pg_catalog.text FROM t WHERE x = 'accounts'::regclass"
            ),
            "SELECT regclassout(c.oid), regtypeout(t)::TEXT FROM t WHERE x = regclassin('accounts')"
        );
        assert_eq!(
            rewritten("SELECT n::regnamespace, '5'::oid, a::pg_catalog.int2[]"),
            "SELECT regnamespaceout(n), '5'::INT, a::SMALLINT[]"
        );
    }

    #[test]
    fn generate_subscripts_becomes_an_unnested_series() {
        assert_eq!(
            rewritten("SELECT unnest(i.indkey), generate_subscripts(i.indkey, 1) AS ord FROM pg_index i"),
            "SELECT unnest(i.indkey), unnest(generate_series(1, CAST(array_length(i.indkey, 1) AS BIGINT))) AS ord \
             FROM pg_index i"
        );
        assert_eq!(
            rewritten("SELECT x FROM t WHERE c = CAST($1 AS REGCLASS)"),
            "SELECT x FROM t WHERE c = regclassin($1)"
        );
    }

    #[test]
    fn expandarray_becomes_an_unnested_struct_list() {
        assert_eq!(
            rewritten(
                "SELECT (information_schema._pg_expandarray(i.indkey)).n AS k, information_schema._pg_expandarray(i.indkey) AS keys FROM pg_index i"
            ),
            "SELECT get_field(unnest(pg_expandarray(i.indkey)), 'n') AS k, unnest(pg_expandarray(i.indkey)) AS keys FROM pg_index i"
        );
        assert_eq!(
            rewritten("SELECT 1 FROM r WHERE r.a = (r.KEYS).x"),
            "SELECT 1 FROM r WHERE r.a = get_field(r.KEYS, 'x')"
        );
        assert_eq!(rewritten("SELECT a[1] FROM r"), "SELECT a[1] FROM r");
    }

    #[test]
    fn array_subquery_becomes_its_text_form() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT b.rolname FROM r b WHERE b.oid = x ORDER BY 1) AS m FROM t"),
            "SELECT (SELECT '{' || coalesce(string_agg(CAST(b.rolname AS TEXT), ',' ORDER BY b.rolname), '') || '}' AS array \
             FROM r b WHERE b.oid = x) AS m FROM t"
        );
    }

    #[test]
    fn catalog_subqueries_become_single_row_and_uncorrelated() {
        assert_eq!(
            rewritten(
                "SELECT (SELECT c.collname FROM pg_collation c, pg_type t \
                 WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) FROM pg_attribute a"
            ),
            "SELECT (SELECT max(c.collname) FROM pg_collation c, pg_type t \
             WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND c.oid <> t.typcollation) FROM pg_attribute a"
        );
        assert_eq!(
            rewritten(
                "SELECT (SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef) FROM pg_attribute a"
            ),
            "SELECT (SELECT max(d.adbin) FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum) FROM pg_attribute a"
        );
        assert_eq!(rewritten("SELECT (SELECT x FROM t) FROM u"), "SELECT (SELECT x FROM t) FROM u");
    }

    #[test]
    fn partition_ancestors_of_unpartitioned_tables_are_none() {
        assert_eq!(
            rewritten(
                "SELECT conname FROM pg_constraint c WHERE confrelid IN (SELECT pg_catalog.pg_partition_ancestors('16390') \
                 UNION ALL VALUES ('16390'::pg_catalog.regclass)) AND contype = 'f'"
            ),
            "SELECT conname FROM pg_constraint c WHERE confrelid IN (regclassin('16390')) AND contype = 'f'"
        );
    }

    #[test]
    fn empty_only_when_every_branch_reads_an_empty_catalog() {
        let empty = |sql: &str| provably_empty(&crate::engine::parse(sql).unwrap().remove(0));
        assert_eq!(
            empty("SELECT pol.polname, x AS y FROM pg_catalog.pg_policy pol WHERE pol.polrelid = '1'"),
            Some(vec!["polname".into(), "y".into()])
        );
        assert!(
            empty("SELECT a FROM pg_publication p JOIN pg_class c ON true UNION SELECT b FROM pg_inherits").is_some()
        );
        assert_eq!(empty("SELECT a FROM pg_class c LEFT JOIN pg_inherits i ON true"), None);
        assert_eq!(empty("SELECT count(*) FROM pg_policy"), None);
        assert_eq!(empty("SELECT * FROM pg_policy"), None);
        assert_eq!(empty("SELECT a FROM pg_class, pg_inherits"), Some(vec!["a".into()]));
        assert_eq!(empty("SELECT a FROM pg_policy p RIGHT JOIN pg_class c ON true"), None);
    }
}
