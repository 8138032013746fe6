//! The report: one row per figure, with Borealis's value, PostgreSQL's and
//! their ratio, shown as a terminal table and written as JSON.
//!
//! Some figures also have a ceiling: the same work done by the fastest setup
//! Borealis's engine could hope to match (TPC-H: DataFusion in process over
//! Parquet files). Those are `CeilingRow`s, kept apart from the rows (JSON
//! `ceiling_rows`, a second table in the terminal, not in the chart) so that
//! every `Row` stays a Borealis-against-PostgreSQL comparison.
//!
//! Every ratio is oriented so that higher is better for Borealis: for a
//! throughput it is Borealis / PostgreSQL, for a latency or a time it is
//! PostgreSQL / Borealis. A value that could not be measured is a `Failed`
//! cell carrying the reason; it is never replaced by a number.

use serde::Serialize;
use std::fmt::Write as _;

/// Which way a metric improves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughputs: more is better.
    Higher,
    /// Latencies and times: less is better.
    Lower,
}

impl Better {
    /// The words shown beside the metric.
    pub fn label(self) -> &'static str {
        match self {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        }
    }
}

/// One system's value for one metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "detail")]
pub enum Cell {
    /// A measured value in the row's unit.
    Value(f64),
    /// The workload failed on this system; the reason, shown as "failed: …".
    Failed(String),
    /// The metric does not exist for this system (replica lag on PostgreSQL).
    NotApplicable,
}

impl Cell {
    /// Turns a measurement's outcome into a cell, keeping the error chain.
    pub fn from_result(result: &anyhow::Result<f64>) -> Cell {
        match result {
            Ok(value) => Cell::Value(*value),
            Err(error) => Cell::failed(error),
        }
    }

    /// A failed cell with the error's whole chain on one line.
    pub fn failed(error: &anyhow::Error) -> Cell {
        Cell::Failed(one_line(&format!("{error:#}")))
    }

    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(value) => Some(*value),
            _ => None,
        }
    }

    fn render(&self, width: usize) -> String {
        match self {
            Cell::Value(value) => format_value(*value),
            Cell::Failed(reason) => truncate(&format!("failed: {reason}"), width),
            Cell::NotApplicable => "n/a".to_string(),
        }
    }
}

/// One figure of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The workload, e.g. "commit latency".
    pub workload: String,
    /// The figure, e.g. "p99, 8 clients".
    pub metric: String,
    /// The unit of both values, e.g. "ms" or "commits/s".
    pub unit: String,
    pub better: Better,
    pub borealis: Cell,
    pub postgres: Cell,
    /// Borealis's advantage: > 1 means Borealis did better (see the module doc).
    pub ratio: Option<f64>,
}

impl Row {
    /// A row whose ratio is computed from the two cells.
    pub fn new(workload: &str, metric: &str, unit: &str, better: Better, borealis: Cell, postgres: Cell) -> Row {
        let ratio = ratio(better, borealis.value(), postgres.value());
        Row { workload: workload.into(), metric: metric.into(), unit: unit.into(), better, borealis, postgres, ratio }
    }
}

/// Borealis's advantage for a metric that improves in direction `better`;
/// `None` unless both values are positive and finite.
pub fn ratio(better: Better, borealis: Option<f64>, postgres: Option<f64>) -> Option<f64> {
    let (borealis, postgres) = (borealis?, postgres?);
    let usable = |value: f64| value.is_finite() && value > 0.0;
    if !usable(borealis) || !usable(postgres) {
        return None;
    }
    Some(match better {
        Better::Higher => borealis / postgres,
        Better::Lower => postgres / borealis,
    })
}

/// One figure against its ceiling: Borealis's value, the ceiling's, and
/// Borealis's advantage oriented as in `Row` (so mostly below 1: the ratio
/// says what fraction of the ceiling's speed Borealis reaches).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CeilingRow {
    /// The workload, e.g. "tpc-h".
    pub workload: String,
    /// The figure, e.g. "q01 SF 1"; the same text as its `Row`.
    pub metric: String,
    /// What the ceiling is, e.g. "DataFusion over Parquet".
    pub ceiling_name: String,
    /// The unit of both values.
    pub unit: String,
    pub better: Better,
    pub borealis: Cell,
    pub ceiling: Cell,
    /// Borealis's advantage over the ceiling: > 1 means Borealis did better.
    pub ratio: Option<f64>,
}

impl CeilingRow {
    /// A row whose ratio is computed from the two cells.
    pub fn new(
        workload: &str,
        metric: &str,
        ceiling_name: &str,
        unit: &str,
        better: Better,
        borealis: Cell,
        ceiling: Cell,
    ) -> CeilingRow {
        let ratio = ratio(better, borealis.value(), ceiling.value());
        CeilingRow {
            workload: workload.into(),
            metric: metric.into(),
            ceiling_name: ceiling_name.into(),
            unit: unit.into(),
            better,
            borealis,
            ceiling,
            ratio,
        }
    }
}

/// The whole run: settings, rows, and the wrong answers that fail it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// "quick" or "full".
    pub mode: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    /// What the run measured on, e.g. "2 cores, Linux 6.1".
    pub machine: String,
    /// Settings that shape the figures (scales, durations, client counts).
    pub settings: Vec<(String, String)>,
    pub rows: Vec<Row>,
    /// Figures against a ceiling rather than PostgreSQL (see the module doc).
    pub ceiling_rows: Vec<CeilingRow>,
    /// Answers that differed between Borealis (or a ceiling) and
    /// PostgreSQL, or broke an invariant; any entry makes the run exit non-zero.
    pub wrong_answers: Vec<String>,
    /// Notes worth reading beside the table (e.g. what a failure means).
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a row.
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// The report as a text table for the terminal, followed by the
    /// ceiling table when there are ceiling rows.
    pub fn table(&self) -> String {
        let header = ["workload", "metric", "unit (better)", "Borealis", "PostgreSQL", "ratio"];
        let lines = self.rows.iter().map(|row| {
            line(&row.workload, &row.metric, &row.unit, row.better, [&row.borealis, &row.postgres], row.ratio)
        });
        let mut text = grid(header, lines);
        text.push_str(
            "ratio = Borealis's advantage over PostgreSQL (higher is better; > 1 means Borealis did better):\n",
        );
        text.push_str(
            "        Borealis/PostgreSQL where higher is better, PostgreSQL/Borealis where lower is better.\n",
        );
        let mut ceilings: Vec<&str> = Vec::new();
        for row in &self.ceiling_rows {
            if !ceilings.contains(&row.ceiling_name.as_str()) {
                ceilings.push(&row.ceiling_name);
            }
        }
        for ceiling in ceilings {
            let header = ["workload", "metric", "unit (better)", "Borealis", ceiling, "ratio"];
            let lines = self.ceiling_rows.iter().filter(|row| row.ceiling_name == ceiling).map(|row| {
                line(&row.workload, &row.metric, &row.unit, row.better, [&row.borealis, &row.ceiling], row.ratio)
            });
            text.push('\n');
            text.push_str(&grid(header, lines));
            let _ = writeln!(
                text,
                "ratio = Borealis's advantage over the ceiling, {ceiling} (1 would mean Borealis reached it)."
            );
        }
        text
    }
}

/// The cells of one table line.
fn line(
    workload: &str,
    metric: &str,
    unit: &str,
    better: Better,
    cells: [&Cell; 2],
    ratio: Option<f64>,
) -> [String; 6] {
    const FAILED_WIDTH: usize = 48;
    [
        workload.to_string(),
        metric.to_string(),
        format!("{unit} ({})", if better == Better::Higher { "higher" } else { "lower" }),
        cells[0].render(FAILED_WIDTH),
        cells[1].render(FAILED_WIDTH),
        ratio.map_or_else(|| "-".to_string(), format_ratio),
    ]
}

/// Lines under a header and a rule, in columns padded to their widest
/// cell: text columns flush left, values and ratio flush right.
fn grid(header: [&str; 6], lines: impl Iterator<Item = [String; 6]>) -> String {
    let lines: Vec<[String; 6]> = std::iter::once(header.map(String::from)).chain(lines).collect();
    let mut widths = [0usize; 6];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for (index, line) in lines.iter().enumerate() {
        for (column, (cell, width)) in line.iter().zip(widths).enumerate() {
            let _ = if column >= 3 { write!(text, "{cell:>width$}  ") } else { write!(text, "{cell:<width$}  ") };
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
        if index == 0 {
            text.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * 5));
            text.push('\n');
        }
    }
    text
}

/// A value with 3 significant digits at least, without exponent noise.
pub fn format_value(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || value == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// A ratio with two significant digits at least: "1.07x", "0.0034x", "19.5x".
pub fn format_ratio(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.1}x")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}x")
    } else {
        let decimals = (-ratio.log10()).ceil().clamp(0.0, 12.0) as usize + 1;
        format!("{ratio:.decimals$}x")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_points_to_borealis_advantage() {
        // Throughput: Borealis does 200/s, PostgreSQL 100/s: Borealis 2x better.
        assert_eq!(ratio(Better::Higher, Some(200.0), Some(100.0)), Some(2.0));
        // Latency: Borealis 4 ms, PostgreSQL 2 ms: Borealis half as good.
        assert_eq!(ratio(Better::Lower, Some(4.0), Some(2.0)), Some(0.5));
        assert_eq!(ratio(Better::Lower, None, Some(2.0)), None);
        assert_eq!(ratio(Better::Higher, Some(0.0), Some(2.0)), None);
        assert_eq!(ratio(Better::Higher, Some(1.0), Some(f64::NAN)), None);
    }

    #[test]
    fn failed_and_missing_cells_have_no_ratio() {
        let row = Row::new("w", "m", "ms", Better::Lower, Cell::Failed("no COPY".into()), Cell::Value(1.0));
        assert_eq!(row.ratio, None);
        let row = Row::new("lag", "p50", "ms", Better::Lower, Cell::Value(1.0), Cell::NotApplicable);
        assert_eq!(row.ratio, None);
        let error = anyhow::anyhow!("connection reset").context("failed to insert\nbatch");
        assert_eq!(Cell::failed(&error), Cell::Failed("failed to insert batch: connection reset".into()));
    }

    #[test]
    fn json_shape() {
        let mut report = Report { mode: "quick".into(), ..Report::default() };
        report.push(Row::new("scan", "count(*)", "ms", Better::Lower, Cell::Value(50.0), Cell::Value(100.0)));
        report.push(Row::new("lag", "p99", "ms", Better::Lower, Cell::Failed("boom".into()), Cell::NotApplicable));
        let json: serde_json::Value = serde_json::from_str(&report.to_json().expect("serializes")).expect("parses");
        let rows = &json["rows"];
        assert_eq!(json["mode"], "quick");
        assert_eq!(rows[0]["better"], "lower");
        assert_eq!(rows[0]["ratio"], 2.0);
        assert_eq!(rows[0]["borealis"], serde_json::json!({"status": "value", "detail": 50.0}));
        assert_eq!(rows[1]["borealis"], serde_json::json!({"status": "failed", "detail": "boom"}));
        assert_eq!(rows[1]["postgres"], serde_json::json!({"status": "not_applicable"}));
        assert_eq!(rows[1]["ratio"], serde_json::Value::Null);
    }

    #[test]
    fn table_shows_failures_and_direction() {
        let mut report = Report::default();
        report.push(Row::new(
            "pgbench",
            "TPC-B tps",
            "tps",
            Better::Higher,
            Cell::Failed("COPY".into()),
            Cell::Value(812.3),
        ));
        let table = report.table();
        assert!(table.contains("failed: COPY"), "{table}");
        assert!(table.contains("tps (higher)"), "{table}");
        assert!(table.contains("812"), "{table}");
        assert!(table.contains("higher is better"), "{table}");
    }

    #[test]
    fn ceiling_rows_get_their_own_table_and_json() {
        let mut report = Report::default();
        report.push(Row::new("tpc-h", "q01 SF 1", "ms", Better::Lower, Cell::Value(400.0), Cell::Value(800.0)));
        let ceiling = "DataFusion over Parquet";
        let row =
            CeilingRow::new("tpc-h", "q01 SF 1", ceiling, "ms", Better::Lower, Cell::Value(400.0), Cell::Value(40.0));
        assert_eq!(row.ratio, Some(0.1));
        report.ceiling_rows.push(row);
        report.ceiling_rows.push(CeilingRow::new(
            "tpc-h",
            "q02 SF 1",
            ceiling,
            "ms",
            Better::Lower,
            Cell::Failed("wrong answer".into()),
            Cell::Value(5.0),
        ));
        let table = report.table();
        let (main, rest) = table.split_once("\n\n").expect("two tables");
        assert!(!main.contains(ceiling) && main.contains("2.00x"), "{table}");
        assert!(
            rest.lines().next().is_some_and(|header| header.contains("Borealis  DataFusion over Parquet")),
            "{table}"
        );
        assert!(rest.contains("0.10x") && rest.contains("failed: wrong answer"), "{table}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json().expect("serializes")).expect("parses");
        let ceiling_json = &json["ceiling_rows"][0];
        assert_eq!(ceiling_json["ceiling"], serde_json::json!({"status": "value", "detail": 40.0}));
        assert_eq!(ceiling_json["ceiling_name"], ceiling);
        assert_eq!(ceiling_json["ratio"], 0.1);
        assert_eq!(json["rows"].as_array().map(Vec::len), Some(1));
        assert!(!Report::default().table().contains("ceiling"));
    }

    #[test]
    fn ratios_keep_two_significant_digits() {
        assert_eq!(format_ratio(19.54), "19.5x");
        assert_eq!(format_ratio(1.0712), "1.07x");
        assert_eq!(format_ratio(0.0034), "0.0034x");
        assert_eq!(format_ratio(0.034), "0.034x");
    }

    #[test]
    fn values_are_readable() {
        assert_eq!(format_value(12345.678), "12346");
        assert_eq!(format_value(12.345), "12.3");
        assert_eq!(format_value(1.2345), "1.23");
        assert_eq!(format_value(0.012345), "0.012");
        assert_eq!(format_value(0.0), "0");
    }
}
