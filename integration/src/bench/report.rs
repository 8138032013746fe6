//! The report: one row per figure, with Borealis's value, PostgreSQL's and
//! their ratio, shown as a terminal table and written as JSON.
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
    /// Answers that differed between Borealis and PostgreSQL, or broke an
    /// invariant; any entry makes the run exit non-zero.
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

    /// The report as a text table for the terminal.
    pub fn table(&self) -> String {
        const FAILED_WIDTH: usize = 48;
        let header = ["workload", "metric", "unit (better)", "Borealis", "PostgreSQL", "ratio"];
        let mut lines: Vec<[String; 6]> = vec![header.map(String::from)];
        for row in &self.rows {
            lines.push([
                row.workload.clone(),
                row.metric.clone(),
                format!("{} ({})", row.unit, if row.better == Better::Higher { "higher" } else { "lower" }),
                row.borealis.render(FAILED_WIDTH),
                row.postgres.render(FAILED_WIDTH),
                row.ratio.map_or_else(|| "-".to_string(), format_ratio),
            ]);
        }
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
        text.push_str(
            "ratio = Borealis's advantage over PostgreSQL (higher is better; > 1 means Borealis did better):\n",
        );
        text.push_str(
            "        Borealis/PostgreSQL where higher is better, PostgreSQL/Borealis where lower is better.\n",
        );
        text
    }
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
