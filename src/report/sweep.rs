//! Sweep reports: one row per run (recipe x varied values x seed) as CSV and a markdown table,
//! plus an accuracy-vs-sparsity plot (SVG) with one line per recipe, averaged over seeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    pub recipe: String,
    /// `(field path, value as written)` for each varied field.
    pub vary: Vec<(String, String)>,
    pub seed: u64,
    pub test_accuracy: f64,
    /// Realised sparsity over the masked weights.
    pub sparsity: f64,
    pub seconds: f64,
    /// The run directory, or the diagnostic code when the run failed.
    pub outcome: String,
}

/// Writes `<name>.csv`, `<name>.md` and `<name>.svg` into `dir`; returns the paths written.
pub fn write_sweep(dir: &Path, name: &str, rows: &[SweepRow]) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let fields: Vec<String> = rows.first().map(|r| r.vary.iter().map(|(p, _)| p.clone()).collect()).unwrap_or_default();
    let mut csv = format!(
        "recipe,{}seed,test_accuracy,sparsity,seconds,outcome\n",
        fields.iter().map(|f| format!("{f},")).collect::<String>()
    );
    let mut md = format!(
        "| recipe | {}seed | test accuracy | sparsity | seconds | run |\n|---|{}---|---|---|---|---|\n",
        fields.iter().map(|f| format!("{f} | ")).collect::<String>(),
        "---|".repeat(fields.len())
    );
    for r in rows {
        let vals: String = r.vary.iter().map(|(_, v)| format!("{v},")).collect();
        let _ = writeln!(
            csv,
            "{},{vals}{},{:.6},{:.6},{:.1},{}",
            r.recipe, r.seed, r.test_accuracy, r.sparsity, r.seconds, r.outcome
        );
        let vals: String = r.vary.iter().map(|(_, v)| format!("{v} | ")).collect();
        let _ = writeln!(
            md,
            "| {} | {vals}{} | {:.2}% | {:.2}% | {:.1} | {} |",
            r.recipe,
            r.seed,
            100.0 * r.test_accuracy,
            100.0 * r.sparsity,
            r.seconds,
            r.outcome
        );
    }
    let paths = [dir.join(format!("{name}.csv")), dir.join(format!("{name}.md")), dir.join(format!("{name}.svg"))];
    std::fs::write(&paths[0], csv)?;
    std::fs::write(&paths[1], md)?;
    plot(&paths[2], name, rows).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(paths.to_vec())
}

/// Mean test accuracy per recipe and realised sparsity (rounded to 0.01%), over seeds.
fn series(rows: &[SweepRow]) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut acc: BTreeMap<String, BTreeMap<i64, (f64, usize)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.test_accuracy.is_finite()) {
        let key = (r.sparsity * 1e4).round() as i64;
        let e = acc.entry(r.recipe.clone()).or_default().entry(key).or_insert((0.0, 0));
        e.0 += r.test_accuracy;
        e.1 += 1;
    }
    acc.into_iter()
        .map(|(k, m)| (k, m.into_iter().map(|(s, (a, n))| (s as f64 / 1e4, a / n as f64)).collect()))
        .collect()
}

fn plot(path: &Path, name: &str, rows: &[SweepRow]) -> Result<(), Box<dyn std::error::Error>> {
    let series = series(rows);
    let xs = series.values().flatten().map(|p| p.0);
    let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (lo, hi) = if lo <= hi { (lo - 0.005, hi + 0.005) } else { (0.0, 1.0) };
    // Text extents come from the embedded font (plotters' `ab_glyph`), even in an SVG.
    super::plots::register_font();
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(name, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, 0.0f64..1.0)?;
    chart.configure_mesh().x_desc("sparsity (fraction of zeros)").y_desc("test accuracy").draw()?;
    for (i, (recipe, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(recipe.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
