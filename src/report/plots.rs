//! Plots of a run. In: the evaluation lines ([`Metrics`], each at its step of the whole run) and
//! the [`Trace`] (learning rate and per-tensor target and realised sparsity, sampled over steps).
//! Out: `loss`, `accuracy`, `lr` and `sparsity` as SVG (for the web) and PNG (for a paper) in
//! the run directory. Text is drawn with an embedded DejaVu Sans (plotters' `ab_glyph`), so
//! plots render the same on a headless machine with no fonts installed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::rundir::write_atomic;
use super::Metrics;

/// Learning rate and per-tensor sparsity at one step of the run.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TracePoint {
    /// The step counted over the whole run (lottery rounds one after another).
    pub step: u64,
    pub lr: f64,
    /// Per masked tensor, in the order of [`Trace::names`].
    pub target: Vec<f64>,
    pub realised: Vec<f64>,
}

/// What the engine records for the plots: the masked tensors and samples over steps.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Trace {
    pub names: Vec<String>,
    pub points: Vec<TracePoint>,
}

/// An evaluation line and the step of the whole run it was taken at.
pub type Evaluation = (u64, Metrics);

const SIZE: (u32, u32) = (800, 500);
/// Above this many masked tensors the sparsity plot has no legend (it would hide the lines).
const MAX_LEGEND: usize = 12;

struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    /// Drawn dashed and thin (a target, behind the measured line of the same colour).
    dashed: bool,
    /// Each point marked (evaluations: few points, each a measurement).
    marked: bool,
}

struct Chart {
    file: &'static str,
    title: String,
    y_label: &'static str,
    series: Vec<Series>,
    legend: bool,
}

/// The fonts live in a process-wide table; registering once is enough.
pub(crate) fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("fonts/DejaVuSans.ttf");
        // A font that fails to parse leaves text undrawn; the plots still have their lines.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn color(i: usize) -> RGBColor {
    // Tableau 10, the default colour cycle readers know from matplotlib.
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

fn charts(recipe: &str, evals: &[Evaluation], trace: &Trace) -> Vec<Chart> {
    let held_out = if evals.iter().any(|(_, m)| m.val_accuracy.is_some()) { "validation" } else { "test" };
    let line = |label: &str, i: usize, f: &dyn Fn(&Metrics) -> Option<f64>| Series {
        label: label.to_string(),
        points: evals.iter().filter_map(|(x, m)| f(m).map(|y| (*x as f64, y))).collect(),
        color: color(i),
        dashed: false,
        marked: true,
    };
    let loss = vec![line("train", 0, &|m| Some(m.train_loss)), line(held_out, 1, &|m| m.val_loss.or(m.test_loss))];
    let accuracy = vec![
        line("train", 0, &|m| Some(100.0 * m.train_accuracy)),
        line(held_out, 1, &|m| m.val_accuracy.or(m.test_accuracy).map(|a| 100.0 * a)),
    ];
    let lr = vec![Series {
        label: "learning rate".into(),
        points: trace.points.iter().map(|p| (p.step as f64, p.lr)).collect(),
        color: color(0),
        dashed: false,
        marked: false,
    }];
    let mut sparsity = Vec::new();
    for (i, name) in trace.names.iter().enumerate() {
        let at = |f: &dyn Fn(&TracePoint) -> f64| -> Vec<(f64, f64)> {
            trace.points.iter().map(|p| (p.step as f64, 100.0 * f(p))).collect()
        };
        let label = format!("{name} target");
        sparsity.push(Series { label, points: at(&|p| p.target[i]), color: color(i), dashed: true, marked: false });
        let realised = at(&|p| p.realised[i]);
        sparsity.push(Series { label: name.clone(), points: realised, color: color(i), dashed: false, marked: false });
    }
    let few = trace.names.len() <= MAX_LEGEND;
    let tensors = match trace.names.len() {
        1 => "1 masked tensor".to_string(),
        n => format!("{n} masked tensors"),
    };
    let mut charts = vec![
        Chart { file: "loss", title: format!("{recipe}: loss"), y_label: "cross-entropy", series: loss, legend: true },
        Chart {
            file: "accuracy",
            title: format!("{recipe}: accuracy"),
            y_label: "accuracy (%)",
            series: accuracy,
            legend: true,
        },
        Chart {
            file: "lr",
            title: format!("{recipe}: learning rate"),
            y_label: "learning rate",
            series: lr,
            legend: false,
        },
    ];
    // A dense run has no sparsity to draw.
    if !trace.names.is_empty() {
        charts.push(Chart {
            file: "sparsity",
            title: format!("{recipe}: sparsity of {tensors} (dashed: target)"),
            y_label: "sparsity (%)",
            series: sparsity,
            legend: few,
        });
    }
    charts
}

/// The y range of a chart: accuracy up to 100, sparsity on 0..100, anything else from 0 (or its minimum when
/// negative) to a little above its maximum.
fn y_range(c: &Chart) -> (f64, f64) {
    let ys = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite());
    if c.file == "accuracy" {
        // From the nearest ten below the lowest accuracy: differences near the top stay visible.
        let min = ys.fold(100.0f64, f64::min);
        return ((((min - 5.0) / 10.0).floor() * 10.0).clamp(0.0, 90.0), 100.0);
    }
    if c.y_label.ends_with("(%)") {
        return (0.0, 100.0);
    }
    let (lo, hi) = ys.fold((0.0f64, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let hi = if hi > lo { hi + 0.05 * (hi - lo) } else { lo + 1.0 };
    (lo, hi)
}

fn draw<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, c: &Chart) -> Result<(), String> {
    register_font();
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_x = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0f64, f64::max);
    let (lo, hi) = y_range(c);
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, lo..hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(c.y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let finite = |s: &Series| s.points.iter().copied().filter(|p| p.1.is_finite()).collect::<Vec<_>>();
    for s in c.series.iter().filter(|s| s.dashed) {
        let style = s.color.mix(0.9).stroke_width(1);
        chart.draw_series(DashedLineSeries::new(finite(s), 6, 4, style)).map_err(|e| e.to_string())?;
    }
    for s in c.series.iter().filter(|s| !s.dashed) {
        let color = s.color;
        let line = LineSeries::new(finite(s), color.stroke_width(2)).point_size(if s.marked { 3 } else { 0 });
        let drawn = chart.draw_series(line).map_err(|e| e.to_string())?;
        if c.legend {
            drawn
                .label(&s.label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    if c.legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    area.present().map_err(|e| e.to_string())
}

fn svg(c: &Chart) -> Result<String, String> {
    let mut out = String::new();
    {
        let area = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        draw(&area, c)?;
    }
    Ok(out)
}

fn png(c: &Chart) -> Result<Vec<u8>, String> {
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&area, c)?;
    }
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(&rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Writes every plot of a run into `dir` as `NAME.svg` and `NAME.png` (no sparsity plot for a
/// run without masked tensors); returns the paths.
pub fn write_plots(dir: &Path, recipe: &str, evals: &[Evaluation], trace: &Trace) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for c in charts(recipe, evals, trace) {
        let svg_path = dir.join(format!("{}.svg", c.file));
        write_atomic(&svg_path, svg(&c).map_err(io::Error::other)?.as_bytes())?;
        let png_path = dir.join(format!("{}.png", c.file));
        write_atomic(&png_path, &png(&c).map_err(io::Error::other)?)?;
        written.extend([svg_path, png_path]);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(step: u64, loss: f64) -> Metrics {
        Metrics {
            round: None,
            epoch: step / 10,
            step,
            train_loss: loss,
            train_accuracy: 1.0 - loss / 3.0,
            val_accuracy: None,
            val_loss: None,
            test_accuracy: Some(0.9 - loss / 4.0),
            test_loss: Some(loss * 1.1),
            sparsity: 0.5,
            lr: 0.1,
            seconds: 0.0,
            dead_units: Vec::new(),
        }
    }

    #[test]
    fn every_plot_renders_with_one_line_per_masked_tensor() {
        let names = vec!["fc1.weight".to_string(), "fc2.weight".to_string(), "fc3.weight".to_string()];
        let points = (0..=20)
            .map(|s| {
                let t = (s as f64 / 20.0).min(1.0) * 0.9;
                TracePoint { step: s * 5, lr: 0.1 * (1.0 - s as f64 / 20.0), target: vec![t; 3], realised: vec![t; 3] }
            })
            .collect();
        let trace = Trace { names, points };
        let evals: Vec<Evaluation> = (1..=5).map(|e| (e * 20, metrics(e * 20, 2.0 / e as f64))).collect();
        let cs = charts("r", &evals, &trace);
        let sp = cs.iter().find(|c| c.file == "sparsity").unwrap();
        assert_eq!(sp.series.iter().filter(|s| !s.dashed).count(), 3);
        for c in &cs {
            let s = svg(c).unwrap();
            assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"), "{}", c.file);
            let p = png(c).unwrap();
            assert_eq!(&p[1..4], b"PNG");
        }
    }

    #[test]
    fn a_run_without_masks_or_points_still_plots() {
        let cs = charts("r", &[], &Trace::default());
        for c in &cs {
            svg(c).unwrap();
            png(c).unwrap();
        }
    }
}
