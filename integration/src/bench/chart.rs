//! The chart of ratios (`ratios.png`): one horizontal bar per figure, on a
//! log scale centred on 1×, green where Borealis did better and red where it
//! did worse; figures Borealis failed are listed in grey. Text is drawn with
//! a font compiled into the binary (plotters' ab_glyph backend), so the chart
//! needs no system fonts or fontconfig.

use super::report::{Cell, Report, Row};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;

/// Chart width in pixels.
const WIDTH_PX: u32 = 1400;
/// Height of one row, and of the title block.
const ROW_PX: i32 = 24;
const TITLE_PX: i32 = 90;
/// Where bars start: the labels' column is to the left of it.
const PLOT_LEFT_PX: i32 = 560;
const PLOT_RIGHT_PX: i32 = WIDTH_PX as i32 - 120;
/// Bars span 1/100× to 100× (log10 from -2 to 2); beyond, they are clipped.
const LOG10_RANGE: f64 = 2.0;
/// The name under which the embedded font is registered.
const FONT: &str = "sans-serif";

/// Draws the report's ratios into a PNG file at `path`.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let rows: Vec<&Row> =
        report.rows.iter().filter(|row| row.ratio.is_some() || matches!(row.borealis, Cell::Failed(_))).collect();
    let height_px = TITLE_PX + ROW_PX * (rows.len().max(1) as i32) + 40;
    let root = BitMapBackend::new(path, (WIDTH_PX, u32::try_from(height_px)?)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    draw_title(&root, report)?;
    draw_grid(&root, height_px)?;
    for (index, row) in rows.iter().enumerate() {
        draw_row(&root, TITLE_PX + ROW_PX * index as i32, row)?;
    }
    if rows.is_empty() {
        text(&root, "no figures with a ratio in this report", (PLOT_LEFT_PX, TITLE_PX + 4), 16, &BLACK)?;
    }
    root.present().map_err(plot_error)?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_title(root: &Area, report: &Report) -> anyhow::Result<()> {
    let title = "Borealis vs PostgreSQL: ratio per figure (higher is better; > 1x means Borealis did better)";
    text(root, title, (20, 12), 22, &BLACK)?;
    let subtitle = format!("{} run on {}; {} wrong answers", report.mode, report.machine, report.wrong_answers.len());
    text(root, &subtitle, (20, 42), 16, &BLACK)?;
    Ok(())
}

fn draw_grid(root: &Area, height_px: i32) -> anyhow::Result<()> {
    for (log10, label) in [(-2.0, "0.01x"), (-1.0, "0.1x"), (0.0, "1x"), (1.0, "10x"), (2.0, "100x")] {
        let x = x_of(log10);
        let color = if log10 == 0.0 { BLACK } else { RGBColor(210, 210, 210) };
        root.draw(&PathElement::new(vec![(x, TITLE_PX - 8), (x, height_px - 30)], color)).map_err(plot_error)?;
        text(root, label, (x - 14, TITLE_PX - 26), 14, &BLACK)?;
    }
    Ok(())
}

fn draw_row(root: &Area, y: i32, row: &Row) -> anyhow::Result<()> {
    let label = format!("{}: {}", row.workload, row.metric);
    text(root, &truncate(&label, 70), (10, y + 4), 14, &BLACK)?;
    let Some(ratio) = row.ratio else {
        return text(root, "Borealis failed", (x_of(0.0) + 6, y + 4), 14, &RGBColor(130, 130, 130));
    };
    let log10 = ratio.log10().clamp(-LOG10_RANGE, LOG10_RANGE);
    let (left, right) = if log10 >= 0.0 { (x_of(0.0), x_of(log10)) } else { (x_of(log10), x_of(0.0)) };
    let color = if ratio >= 1.0 { RGBColor(46, 160, 67) } else { RGBColor(207, 34, 46) };
    root.draw(&Rectangle::new([(left, y + 3), (right.max(left + 1), y + ROW_PX - 3)], color.filled()))
        .map_err(plot_error)?;
    let label_x = if log10 >= 0.0 { right + 6 } else { left - 64 };
    text(root, &super::report::format_ratio(ratio), (label_x.max(PLOT_LEFT_PX - 60), y + 4), 14, &BLACK)
}

/// The x pixel of a log10 ratio.
fn x_of(log10: f64) -> i32 {
    let fraction = (log10 + LOG10_RANGE) / (2.0 * LOG10_RANGE);
    PLOT_LEFT_PX + (fraction * f64::from(PLOT_RIGHT_PX - PLOT_LEFT_PX)) as i32
}

fn text(root: &Area, content: &str, position: (i32, i32), size: u32, color: &RGBColor) -> anyhow::Result<()> {
    let style = TextStyle::from((FONT, size).into_font()).color(color);
    root.draw(&Text::new(content.to_string(), position, style)).map_err(plot_error)?;
    Ok(())
}

fn truncate(text: &str, characters: usize) -> String {
    if text.chars().count() <= characters {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(characters - 1).collect::<String>())
    }
}

fn register_font() -> anyhow::Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::HACK_REGULAR).is_ok()
    });
    anyhow::ensure!(registered, "the embedded font did not load");
    Ok(())
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("failed to draw: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::Better;

    #[test]
    fn draws_a_png_without_system_fonts() {
        let mut report = Report { mode: "quick".into(), machine: "test".into(), ..Report::default() };
        report.push(Row::new("commit", "p50", "ms", Better::Lower, Cell::Value(2.0), Cell::Value(1.0)));
        report.push(Row::new("scan", "count", "ms", Better::Lower, Cell::Value(1.0), Cell::Value(30.0)));
        report.push(Row::new(
            "pgbench",
            "tps",
            "tps",
            Better::Higher,
            Cell::Failed("no COPY".into()),
            Cell::Value(10.0),
        ));
        report.push(Row::new("lag", "p50", "ms", Better::Lower, Cell::Value(1.0), Cell::NotApplicable));
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ratios.png");
        draw(&report, &path).expect("draws");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[1..4], b"PNG");
    }

    #[test]
    fn one_x_is_in_the_middle() {
        assert_eq!(x_of(0.0), (PLOT_LEFT_PX + PLOT_RIGHT_PX) / 2);
        assert_eq!(x_of(-LOG10_RANGE), PLOT_LEFT_PX);
        assert_eq!(x_of(LOG10_RANGE), PLOT_RIGHT_PX);
    }
}
