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

/// Per recipe, one point per cell (the varied values): mean realised sparsity and mean test
/// accuracy over the seeds, sorted by sparsity. Cells are keyed by what was varied, not by the
/// realised sparsity, which moves by a few hundredths of a percent between seeds of methods that
/// regrow (SET, RigL) and would split one cell into several points.
fn series(rows: &[SweepRow]) -> BTreeMap<String, Vec<(f64, f64)>> {
    // recipe -> varied values -> (sum of sparsities, sum of accuracies, runs)
    type Cells = BTreeMap<Vec<String>, (f64, f64, usize)>;
    let mut acc: BTreeMap<String, Cells> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.test_accuracy.is_finite()) {
        let cell = r.vary.iter().map(|(_, v)| v.clone()).collect();
        let e = acc.entry(r.recipe.clone()).or_default().entry(cell).or_insert((0.0, 0.0, 0));
        e.0 += r.sparsity;
        e.1 += r.test_accuracy;
        e.2 += 1;
    }
    acc.into_iter()
        .map(|(k, cells)| {
            let mut pts: Vec<(f64, f64)> = cells.into_values().map(|(s, a, n)| (s / n as f64, a / n as f64)).collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, pts)
        })
        .collect()
}

/// Sparsity on a "nines" axis: 90% -> 1, 99% -> 2, 99.9% -> 3 (a fully sparse point sits at 6).
fn nines(sparsity: f64) -> f64 {
    -(1.0 - sparsity).clamp(1e-6, 1.0).log10()
}

/// A tick on the nines axis, written as the sparsity it stands for, with the digits it needs.
fn sparsity_label(x: f64) -> String {
    let s = 100.0 * (1.0 - 10f64.powf(-x));
    // 90%, 99%, 99.9% on the whole nines; one more digit between them (93.7%, 99.37%).
    let whole = (x - x.round()).abs() < 1e-6;
    let decimals =
        if whole { (x.round() as usize).saturating_sub(1) } else { x.ceil() as usize }.saturating_sub(1).min(4);
    format!("{s:.decimals$}%")
}

/// Test error (log axis) against sparsity (nines axis), one line per recipe: the differences
/// that matter in a sparsity table are tenths of a percent near the top, which a linear accuracy
/// axis from 0 to 1 flattens into one line.
fn plot(path: &Path, name: &str, rows: &[SweepRow]) -> Result<(), Box<dyn std::error::Error>> {
    let series: BTreeMap<String, Vec<(f64, f64)>> = series(rows)
        .into_iter()
        .map(|(k, pts)| (k, pts.into_iter().map(|(s, a)| (nines(s), (1.0 - a).max(1e-4).log10())).collect()))
        .collect();
    let bounds = |f: fn(&(f64, f64)) -> f64| {
        series.values().flatten().map(f).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (x_lo, x_hi) = bounds(|p| p.0);
    let (x_lo, x_hi) = if x_lo <= x_hi { (x_lo - 0.1, x_hi + 0.1) } else { (0.0, 3.0) };
    // The error axis is log10(error) on a linear coordinate, labelled as the error itself
    // (plotters' own log axis mislabels ranges that start just off a power of ten).
    let (y_lo, y_hi) = bounds(|p| p.1);
    let (y_lo, y_hi) = if y_lo <= y_hi { (y_lo - 0.05, (y_hi + 0.05).min(0.0)) } else { (-3.0, 0.0) };
    // Text extents come from the embedded font (plotters' `ab_glyph`), even in an SVG.
    super::plots::register_font();
    let root = SVGBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(name, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("sparsity (axis in nines: 90%, 99%, 99.9%)")
        .y_desc("test error (log), mean over seeds")
        .y_labels(12)
        .x_label_formatter(&|x| sparsity_label(*x))
        .y_label_formatter(&|y| format!("{:.2}%", 100.0 * 10f64.powf(*y)))
        .draw()?;
    for (i, (recipe, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(recipe.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(recipe: &str, sparsity: f64, seed: u64, acc: f64) -> SweepRow {
        SweepRow {
            recipe: recipe.into(),
            vary: vec![("sparsity.target".into(), format!("{}%", sparsity * 100.0))],
            seed,
            test_accuracy: acc,
            sparsity,
            seconds: 1.0,
            outcome: "run".into(),
        }
    }

    #[test]
    fn seeds_whose_realised_sparsity_differs_are_still_one_point() {
        let mut a = row("set", 0.95, 0, 0.98);
        a.sparsity = 0.9506;
        let mut b = row("set", 0.95, 1, 0.97);
        b.sparsity = 0.9507;
        let s = series(&[a, b, row("set", 0.99, 0, 0.95)]);
        assert_eq!(s["set"].len(), 2);
        assert!((s["set"][0].0 - 0.95065).abs() < 1e-9 && (s["set"][0].1 - 0.975).abs() < 1e-9);
    }

    #[test]
    fn the_sparsity_axis_counts_nines_and_labels_them_as_sparsity() {
        assert!((nines(0.9) - 1.0).abs() < 1e-12 && (nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(0.0), 0.0);
        assert_eq!(nines(1.0), 6.0);
        assert_eq!(sparsity_label(1.0), "90%");
        assert_eq!(sparsity_label(2.0), "99%");
        assert_eq!(sparsity_label(3.0), "99.9%");
        assert_eq!(sparsity_label(1.2), "93.7%");
        assert_eq!(sparsity_label(2.3010299956639813), "99.50%");
    }

    #[test]
    fn the_plot_has_one_line_per_recipe_and_the_error_on_a_log_axis() {
        let dir = std::env::temp_dir().join(format!("sprsc-sweep-plot-{}", std::process::id()));
        let rows = vec![
            row("a", 0.9, 0, 0.987),
            row("a", 0.9, 1, 0.985),
            row("a", 0.99, 0, 0.98),
            row("a", 0.995, 0, 0.97),
            row("b", 0.9, 0, 0.98),
            row("b", 0.99, 0, 0.91),
            row("b", 0.995, 0, 0.6),
        ];
        let paths = write_sweep(&dir, "t", &rows).unwrap();
        let svg = std::fs::read_to_string(&paths[2]).unwrap();
        // Series lines are the only polylines drawn 2 px wide with three points or more.
        let lines = svg
            .split("<polyline")
            .skip(1)
            .filter(|el| {
                el.contains("stroke-width=\"2\"")
                    && el
                        .split("points=\"")
                        .nth(1)
                        .is_some_and(|p| p.split('"').next().unwrap_or("").split_whitespace().count() >= 3)
            })
            .count();
        assert_eq!(lines, 2, "one line per recipe");
        // The ticks name sparsities and errors, not raw axis values.
        assert!(svg.contains("90%") || svg.contains("90.0%"), "no sparsity tick in {svg}");
        assert!(svg.contains("test error (log)"));
        // Series: the mean over seeds at 90% for `a` is 98.6% accuracy -> 1.4% error.
        let s = series(&rows);
        assert!((s["a"][0].1 - 0.986).abs() < 1e-12);
        assert_eq!(s["a"].len(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }
}
