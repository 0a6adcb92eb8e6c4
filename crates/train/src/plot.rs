//! Pictures of training curves from `metrics.jsonl`, as SVG (plotters):
//! per-layer loss, mean goodness G⁺ (solid) and G⁻ (dashed), and accuracy
//! (validation and test, thick; each layer's own, thin) per epoch. One run
//! or several side by side (a colour family per run). Every run writes
//! `curves.svg` beside its metrics after each epoch; `ffwd plot RUN_DIR…`
//! draws any runs together.

use crate::{Error, Result};
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// One run's metrics: its name and one JSON object per epoch.
#[derive(Clone, Debug)]
pub struct Curves {
    pub name: String,
    pub epochs: Vec<Value>,
}

impl Curves {
    /// The metrics of the run folder (or `metrics.jsonl` file) `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let file = if path.is_dir() { path.join("metrics.jsonl") } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Io { path: file.clone(), source })?;
        let epochs = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str::<Value>(l).ok().filter(Value::is_object).ok_or_else(|| {
                    Error::Invalid(format!("{}: line {} is not a metrics object", file.display(), i + 1))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if epochs.is_empty() {
            return Err(Error::Invalid(format!("{}: no epochs to draw", file.display())));
        }
        // a run folder, or a metrics file by its own name (`metrics.jsonl`: by its folder's)
        let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|s| s != "metrics");
        let dir = if path.is_dir() { path } else { path.parent().unwrap_or(Path::new(".")) };
        let folder = || dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        let name = if path.is_dir() { folder() } else { stem.unwrap_or_else(folder) };
        Ok(Self { name, epochs })
    }

    /// The points (epoch, value) of the number at `path` in each epoch's
    /// object (absent or null values leave gaps out).
    fn series(&self, path: &[Key]) -> Vec<(f64, f64)> {
        self.epochs
            .iter()
            .filter_map(|e| {
                let x = e.get("epoch")?.as_f64()?;
                let mut v = e;
                for k in path {
                    v = match k {
                        Key::Name(n) => v.get(n)?,
                        Key::Index(i) => v.get(i)?,
                    };
                }
                v.as_f64().filter(|y| y.is_finite()).map(|y| (x, y))
            })
            .collect()
    }

    /// How many layers the metrics report.
    fn layers(&self) -> usize {
        self.epochs.iter().filter_map(|e| e.get("layers")?.as_array().map(Vec::len)).max().unwrap_or(0)
    }
}

enum Key {
    Name(&'static str),
    Index(usize),
}

/// One line of a panel.
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    dashed: bool,
}

impl Line {
    /// A line with its (stroke width, dashed); an empty label keeps it out
    /// of the legend.
    fn new(label: String, points: Vec<(f64, f64)>, color: RGBColor, (width, dashed): (u32, bool)) -> Self {
        Self { label, points, color, width, dashed }
    }
}

const PALETTE: [(u8, u8, u8); 6] =
    [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)];

/// The colour of series `k` (a layer) of run `run`: one colour per layer
/// when one run is drawn; with several, a colour per run, its layers from
/// dark to light.
fn color(many: bool, run: usize, k: usize) -> RGBColor {
    let (base, t) = if many { (run, (k % 4) as f64 * 0.22) } else { (k, 0.0) };
    let (r, g, b) = PALETTE[base % PALETTE.len()];
    let mix = |c: u8| (c as f64 + (255.0 - c as f64) * t) as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

/// The SVG of `runs`' curves. One run: a legend entry per line. Several:
/// a colour per run (its layers from dark to light), a legend entry per
/// run (its first layer's line) and its validation and test accuracy
/// (test dashed); the layers' own accuracies stay thin and unnamed.
pub fn svg(runs: &[Curves]) -> Result<String> {
    let many = runs.len() > 1;
    // with several runs only the first layer's line names its run
    let name = |r: &Curves, l: usize, one: String| match (many, l) {
        (false, _) => one,
        (true, 0) => r.name.clone(),
        (true, _) => String::new(),
    };
    let (mut loss, mut good, mut acc) = (Vec::new(), Vec::new(), Vec::new());
    for (ri, r) in runs.iter().enumerate() {
        for l in 0..r.layers() {
            let at = |k: &'static str| [Key::Name("layers"), Key::Index(l), Key::Name(k)];
            let c = color(many, ri, l);
            loss.push(Line::new(name(r, l, format!("layer {l}")), r.series(&at("loss")), c, (2, false)));
            good.push(Line::new(name(r, l, format!("G+ layer {l}")), r.series(&at("g_pos")), c, (2, false)));
            let neg = if many { String::new() } else { format!("G- layer {l}") };
            good.push(Line::new(neg, r.series(&at("g_neg")), c, (2, true)));
            let alone = r.series(&at("acc")).into_iter().map(|(x, y)| (x, 100.0 * y)).collect();
            let label = if many { String::new() } else { format!("layer {l} alone") };
            acc.push(Line::new(label, alone, c, (1, true)));
        }
        let readout = r.series(&[Key::Name("readout_loss")]);
        let c = if many { color(true, ri, 3) } else { RGBColor(0, 0, 0) };
        let label = if many { format!("{}: readout", r.name) } else { "readout".into() };
        loss.push(Line::new(label, readout, c, (2, true)));
        for (k, set) in ["val", "test"].into_iter().enumerate() {
            let pts = r.series(&[Key::Name(set), Key::Name("acc")]).into_iter().map(|(x, y)| (x, 100.0 * y)).collect();
            let (label, c, dashed) = if many {
                (format!("{}: {set}", r.name), color(true, ri, 0), k == 1)
            } else {
                (set.to_string(), [RGBColor(0, 0, 0), RGBColor(120, 120, 120)][k], false)
            };
            acc.push(Line::new(label, pts, c, (3, dashed)));
        }
    }
    let titles = if many {
        [
            "loss per layer (layers dark to light; readout dashed)",
            "mean goodness: G+ solid, G- dashed",
            "accuracy (%): val solid, test dashed, layers thin",
        ]
    } else {
        ["loss per layer", "mean goodness: G+ solid, G- dashed", "accuracy (%)"]
    };
    let panels = [
        (titles[0], loss, true, SeriesLabelPosition::UpperRight),
        (titles[1], good, false, SeriesLabelPosition::LowerRight),
        (titles[2], acc, false, SeriesLabelPosition::LowerRight),
    ];
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1500, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        for (area, (title, lines, log, legend)) in root.split_evenly((1, 3)).iter().zip(panels) {
            draw_panel(area, title, &lines, log, legend)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(out)
}

fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Invalid(format!("drawing the curves: {e}"))
}

/// One panel: `lines` over epochs, on a log scale when `log` and every
/// value is positive.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    lines: &[Line],
    log: bool,
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.points.iter().copied()).collect();
    if all.is_empty() {
        return Ok(());
    }
    let (x0, x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, ("sans-serif", 18)).margin(12).x_label_area_size(36).y_label_area_size(56);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_label_formatter(&|v| tick_label(*v))
                .y_label_formatter(&|v| tick_label(*v))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(plot_err)?;
            for l in lines.iter().filter(|l| !l.points.is_empty()) {
                let style = l.color.stroke_width(l.width);
                let (c, w) = (l.color, l.width);
                let series = if l.dashed {
                    chart.draw_series(DashedLineSeries::new(l.points.clone(), 6, 4, style)).map_err(plot_err)?
                } else {
                    chart.draw_series(LineSeries::new(l.points.clone(), style)).map_err(plot_err)?
                };
                if !l.label.is_empty() {
                    // a dashed line's sample is dashed too
                    let (a, b) = if l.dashed { (7, 11) } else { (9, 9) };
                    series.label(l.label.clone()).legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (a, 0)], c.stroke_width(w))
                            + PathElement::new(vec![(b, 0), (18, 0)], c.stroke_width(w))
                    });
                }
            }
            chart
                .configure_series_labels()
                .position(legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(plot_err)?;
        }};
    }
    if log && y0 > 0.0 {
        draw!(builder.build_cartesian_2d(x0..x1, (y0 * 0.9..y1 * 1.1).log_scale()).map_err(plot_err)?);
    } else {
        draw!(builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(plot_err)?);
    }
    Ok(())
}

/// An axis tick as a reader writes it: `1e-6` on a log axis rather than
/// the float's full digits, `98` or `2.5` rather than `98.0` or `2.50`.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        return format!("{v:.0e}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Write the curves of `runs` to `out` (atomically). `out` must be new or
/// an earlier SVG: nothing else is replaced.
pub fn write(runs: &[Curves], out: &Path) -> Result<()> {
    crate::rundir::picture_target(out, crate::rundir::Picture::Svg)?;
    ffwd_tensor::io::write_atomic(out, svg(runs)?.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short_on_both_scales() {
        assert_eq!(tick_label(1e-6), "1e-6");
        assert_eq!(tick_label(0.0001 * 0.1), "1e-5");
        assert_eq!(tick_label(98.0), "98");
        assert_eq!(tick_label(2.5), "2.5");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(4000.0), "4000");
        assert_eq!(tick_label(2e5), "2e5");
    }

    fn run(name: &str, epochs: usize) -> Curves {
        let line = |e: usize| {
            serde_json::json!({
                "epoch": e,
                "layers": [
                    {"layer": 0, "loss": 1.0 / e as f64, "g_pos": 10.0 + e as f64, "g_neg": 5.0, "acc": 0.5},
                    {"layer": 1, "loss": 2.0 / e as f64, "g_pos": null, "g_neg": null, "acc": null}
                ],
                "readout_loss": null,
                "val": {"acc": 0.8}, "test": {"acc": 0.7 + 0.01 * e as f64}
            })
        };
        Curves { name: name.into(), epochs: (1..=epochs).map(line).collect() }
    }

    #[test]
    fn the_picture_has_a_line_per_series_and_a_legend_per_run() {
        let one = svg(&[run("a", 5)]).unwrap();
        assert!(one.starts_with("<svg") && one.contains("loss per layer") && one.contains("accuracy (%)"));
        // a legend entry for each series with points, none for empty ones
        for label in ["layer 1\n", "G+ layer 0", "G- layer 0", "layer 0 alone", "val\n", "test\n"] {
            assert!(one.contains(label), "no {label:?} in the picture");
        }
        assert!(!one.contains("G+ layer 1") && !one.contains("layer 1 alone") && !one.contains("readout"));
        assert!(!one.contains("a: layer 0"), "one run: no run names");
        // several runs: a legend entry per run and its val and test, not per layer
        let two = svg(&[run("a", 5), run("b", 3)]).unwrap();
        assert!(two.contains("a: val") && two.contains("b: test") && two.contains("\na\n"), "run names in the legend");
        assert!(!two.contains("layer 0") && !two.contains("G- layer"), "no per-layer legend entries");
    }

    #[test]
    fn it_reads_metrics_files_and_replaces_only_earlier_pictures() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path().join("exp");
        std::fs::create_dir(&r).unwrap();
        assert!(Curves::read(&r).is_err(), "no metrics.jsonl");
        std::fs::write(r.join("metrics.jsonl"), "").unwrap();
        assert!(Curves::read(&r).unwrap_err().to_string().contains("no epochs"));
        std::fs::write(r.join("metrics.jsonl"), "{\"epoch\": 1}\nnot json\n").unwrap();
        assert!(Curves::read(&r).unwrap_err().to_string().contains("line 2"));
        let lines: Vec<String> = run("x", 3).epochs.iter().map(|v| v.to_string()).collect();
        std::fs::write(r.join("metrics.jsonl"), lines.join("\n")).unwrap();
        let c = Curves::read(&r).unwrap();
        assert_eq!((c.name.as_str(), c.epochs.len()), ("exp", 3));
        let out = r.join("curves.svg");
        write(&[c], &out).unwrap();
        write(&[Curves::read(&r).unwrap()], &out).unwrap();
        let ck = r.join("model.safetensors");
        std::fs::write(&ck, b"weights").unwrap();
        let e = write(&[Curves::read(&r).unwrap()], &ck).unwrap_err().to_string();
        assert!(e.contains("not an SVG"), "{e}");
        assert_eq!(std::fs::read(&ck).unwrap(), b"weights");
    }
}
