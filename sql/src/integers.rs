//! PostgreSQL's integer typing, as two DataFusion analyzer rules.
//!
//! DataFusion types every integer literal as Int64; PostgreSQL types one
//! int4 when it fits in 32 bits (int8 beyond, numeric beyond that). Clients
//! see the difference: `SELECT 1` is int4 (oid 23) in PostgreSQL, and
//! node-postgres returns int8 as a string. DataFusion's integer `+`, `-` and
//! `*` wrap on overflow; PostgreSQL fails with 22003 ("integer out of
//! range"). So:
//!
//! - [`IntegerLiterals`] runs before type coercion and turns Int64 literals
//!   that fit into Int32 ones; coercion then widens them where they meet
//!   wider types (`int8_column + 1` stays int8, as in PostgreSQL);
//! - [`CheckedArithmetic`] runs after type coercion and turns `+`, `-` and
//!   `*` of two integers of one type into `int_add` / `int_sub` / `int_mul`,
//!   which fail on overflow with PostgreSQL's error.
//!
//! [`type_literals`] applies the first to a plan as soon as it is built, so
//! that Describe sees the types execution produces.
//!
//! LIMIT and OFFSET keep their Int64 literals (DataFusion reads them as
//! such), and so do VALUES lists, whose types DataFusion fixes when it plans
//! them, and statements with a recursive CTE, whose work table DataFusion
//! types when it plans the static term (so `WITH RECURSIVE r(n) AS (SELECT 1
//! ...)` gives bigint columns where PostgreSQL's are integer; the values
//! are the same). Expression names are preserved, so plans above a rewritten node
//! find their columns as before.

use crate::error::{SqlError, sqlstate};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::prelude::Expr;
use std::sync::Arc;

/// Installs both rules around DataFusion's own analyzer rules.
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    let mut rules = Analyzer::new().rules;
    rules.insert(0, Arc::new(IntegerLiterals));
    rules.push(Arc::new(CheckedArithmetic::new()));
    builder.with_analyzer_rules(rules)
}

/// `plan` with its integer literals typed as PostgreSQL types them. The
/// engine applies this to every plan it builds, before binding parameters,
/// so that a described statement has the types its execution produces; the
/// analyzer rule covers plans built any other way.
pub fn type_literals(plan: LogicalPlan) -> Result<LogicalPlan, SqlError> {
    Ok(IntegerLiterals.analyze(plan, &ConfigOptions::default())?)
}

/// Applies `rewrite` to every expression of every node of `plan` (and its
/// subqueries) except LIMIT and VALUES, keeping expression names. `rewrite`
/// gets the schema of the node's inputs, which its expressions read.
fn rewrite_plan(
    plan: LogicalPlan,
    rewrite: &dyn Fn(Expr, &DFSchema) -> DfResult<Transformed<Expr>>,
) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|plan| {
        if matches!(plan, LogicalPlan::Limit(_) | LogicalPlan::Values(_)) {
            return Ok(Transformed::no(plan));
        }
        let mut schema = DFSchema::empty();
        for input in plan.inputs() {
            schema.merge(input.schema());
        }
        let preserver = NamePreserver::new(&plan);
        let rewritten = plan.map_expressions(|expr| {
            let name = preserver.save(&expr);
            Ok(expr.transform_up(|expr| rewrite(expr, &schema))?.update_data(|expr| name.restore(expr)))
        })?;
        if rewritten.transformed { rewritten.map_data(LogicalPlan::recompute_schema) } else { Ok(rewritten) }
    })
    .data()
}

/// Int64 literals that fit in 32 bits become Int32 (see the module doc).
#[derive(Debug)]
pub struct IntegerLiterals;

impl AnalyzerRule for IntegerLiterals {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        // A recursive CTE's work table keeps the types its static term was
        // planned with; retyping the literals of either term would make
        // the terms disagree with it.
        let mut recursive = false;
        plan.apply_with_subqueries(|node| {
            recursive |= matches!(node, LogicalPlan::RecursiveQuery(_));
            Ok(if recursive { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
        })?;
        if recursive {
            return Ok(plan);
        }
        rewrite_plan(plan, &|expr, _| match expr {
            Expr::Literal(ScalarValue::Int64(Some(value)), metadata) if metadata.is_none() => {
                match i32::try_from(value) {
                    Ok(value) => Ok(Transformed::yes(Expr::Literal(ScalarValue::Int32(Some(value)), None))),
                    Err(_) => Ok(Transformed::no(Expr::Literal(ScalarValue::Int64(Some(value)), metadata))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
    }

    fn name(&self) -> &str {
        "postgres_integer_literals"
    }
}

/// Integer `+`, `-`, `*` become calls that fail on overflow (see the module doc).
#[derive(Debug)]
pub struct CheckedArithmetic {
    add: Arc<ScalarUDF>,
    subtract: Arc<ScalarUDF>,
    multiply: Arc<ScalarUDF>,
}

impl CheckedArithmetic {
    fn new() -> CheckedArithmetic {
        let function = |operator| Arc::new(ScalarUDF::new_from_impl(CheckedOperation::new(operator)));
        CheckedArithmetic {
            add: function(Operator::Plus),
            subtract: function(Operator::Minus),
            multiply: function(Operator::Multiply),
        }
    }
}

impl AnalyzerRule for CheckedArithmetic {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        rewrite_plan(plan, &|expr, schema| {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else { return Ok(Transformed::no(expr)) };
            let function = match op {
                Operator::Plus => &self.add,
                Operator::Minus => &self.subtract,
                Operator::Multiply => &self.multiply,
                _ => return Ok(Transformed::no(expr)),
            };
            // Types are known after coercion; an expression whose type
            // cannot be computed here is left to DataFusion.
            let (Ok(left_type), Ok(right_type)) = (left.get_type(schema), right.get_type(schema)) else {
                return Ok(Transformed::no(expr));
            };
            if left_type != right_type || !matches!(left_type, DataType::Int16 | DataType::Int32 | DataType::Int64) {
                return Ok(Transformed::no(expr));
            }
            let args = vec![left.as_ref().clone(), right.as_ref().clone()];
            Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(Arc::clone(function), args))))
        })
    }

    fn name(&self) -> &str {
        "postgres_checked_arithmetic"
    }
}

/// A checked integer operation: the result of the operator in the operands'
/// type, or 22003 with PostgreSQL's message when it does not fit.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedOperation {
    name: &'static str,
    operator: Operator,
    signature: Signature,
}

impl CheckedOperation {
    fn new(operator: Operator) -> CheckedOperation {
        let name = match operator {
            Operator::Plus => "int_add",
            Operator::Minus => "int_sub",
            _ => "int_mul",
        };
        let types = vec![DataType::Int16, DataType::Int32, DataType::Int64];
        let signature = Signature::one_of(
            types.into_iter().map(|t| datafusion::logical_expr::TypeSignature::Exact(vec![t.clone(), t])).collect(),
            Volatility::Immutable,
        );
        CheckedOperation { name, operator, signature }
    }
}

impl ScalarUDFImpl for CheckedOperation {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Int64))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return datafusion::common::exec_err!("{} takes two arguments", self.name);
        };
        let scalar = matches!((left, right), (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let (left, right) = (left.to_array(rows)?, right.to_array(rows)?);
        let result: Result<ArrayRef, _> = match self.operator {
            Operator::Plus => numeric::add(&left, &right),
            Operator::Minus => numeric::sub(&left, &right),
            _ => numeric::mul(&left, &right),
        };
        let result = result.map_err(|error| match error {
            datafusion::arrow::error::ArrowError::ArithmeticOverflow(_) => {
                let message = match left.data_type() {
                    DataType::Int16 => "smallint out of range",
                    DataType::Int32 => "integer out of range",
                    _ => "bigint out of range",
                };
                DataFusionError::External(Box::new(SqlError::new(sqlstate::NUMERIC_VALUE_OUT_OF_RANGE, message)))
            }
            other => DataFusionError::ArrowError(Box::new(other), None),
        })?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}
