//! The plots of `dsss sim run` and `dsss sim sweep`, as SVG and PNG (plotters): the latency
//! CDF per region, latency over time with the scripted faults shaded, and a sweep's metric
//! against its parameter, one curve per region.
//!
//! Text is drawn from a TrueType font read at run time (`DSSS_PLOT_FONT`, else DejaVu Sans
//! where Debian and most distributions put it), so that the binary needs no font service.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use dsss_simulations::scenario::sweep::SweepRow;
use dsss_simulations::workloads::global::script::FaultScript;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Where a font is looked for when `DSSS_PLOT_FONT` is not set.
const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// The largest font file read, in bytes.
const FONT_BYTES_MAX: u64 = 32 << 20;

/// The plot size, in pixels.
const SIZE: (u32, u32) = (960, 600);

/// The colours of successive regions.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Registers the font once per process, or says why there is none.
fn ensure_font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = match std::env::var_os("DSSS_PLOT_FONT") {
            Some(path) => vec![PathBuf::from(path)],
            None => FONT_PATHS.iter().map(PathBuf::from).collect(),
        };
        let Some(path) = candidates.iter().find(|path| path.is_file()) else {
            return Err(format!(
                "no font to draw the plots' text: none of {} exists; install DejaVu Sans \
                 (Debian: fonts-dejavu-core) or name a .ttf file in DSSS_PLOT_FONT",
                candidates
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let size = std::fs::metadata(path)
            .map_err(|error| format!("font {}: {error}", path.display()))?
            .len();
        if size > FONT_BYTES_MAX {
            return Err(format!(
                "font {} holds {size} bytes, more than {FONT_BYTES_MAX}",
                path.display()
            ));
        }
        let bytes =
            std::fs::read(path).map_err(|error| format!("font {}: {error}", path.display()))?;
        // Registered fonts live as long as the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("font {} is not a TrueType font", path.display()))
    })
    .clone()
}

fn drawing<E: std::error::Error + Send + Sync>(error: DrawingAreaErrorKind<E>) -> String {
    format!("drawing the plot: {error}")
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// A chart of lines, one per region: `series` holds (region, points).
struct Lines<'a> {
    caption: String,
    x_label: &'a str,
    y_label: &'a str,
    x_range: (f64, f64),
    y_range: (f64, f64),
    series: &'a [(String, Vec<(f64, f64)>)],
    /// Stretches of the x axis to shade (scripted faults), with a label each.
    shaded: &'a [(f64, f64, String)],
    points_only: bool,
    legend: SeriesLabelPosition,
}

impl Lines<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(drawing)?;
        let (x_low, x_high) = self.x_range;
        let (y_low, y_high) = self.y_range;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.caption, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(
                x_low..x_high.max(x_low + 1e-9),
                y_low..y_high.max(y_low + 1e-9),
            )
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .map_err(drawing)?;
        for (index, (from, to, label)) in self.shaded.iter().enumerate() {
            // Staggered, so that the labels of overlapping faults stay apart.
            let label_y = y_high - (y_high - y_low) * 0.04 * (index % 3) as f64;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*from, y_low), (*to, y_high)],
                    RGBColor(200, 200, 200).mix(0.35).filled(),
                )))
                .map_err(drawing)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*from, label_y),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))
                .map_err(drawing)?;
        }
        for (index, (region, points)) in self.series.iter().enumerate() {
            let color = PALETTE[index % PALETTE.len()];
            let drawn = if self.points_only {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|point| Circle::new(*point, 2, color.filled())),
                    )
                    .map_err(drawing)?
            } else {
                chart
                    .draw_series(LineSeries::new(
                        points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(drawing)?
            };
            drawn.label(region.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(self.legend.clone())
            .draw()
            .map_err(drawing)?;
        Ok(())
    }
}

fn draw_lines(stem: &Path, lines: &Lines<'_>) -> Result<Vec<PathBuf>, String> {
    ensure_font()?;
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        lines.draw(&root)?;
        root.present().map_err(drawing)?;
    }
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        lines.draw(&root)?;
        root.present().map_err(drawing)?;
    }
    Ok(vec![svg, png])
}

/// The plots of one run, into `directory`: the global-write latency CDF per region and the
/// global-write latency over time with the scripted faults shaded.
pub(crate) fn run_plots(
    directory: &Path,
    samples: &std::collections::BTreeMap<String, Vec<(Duration, Duration)>>,
    script: &FaultScript,
    window: Duration,
) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let latency_max = samples
        .values()
        .flatten()
        .map(|(_, latency)| millis(*latency))
        .fold(0.0, f64::max);
    let cdf: Vec<(String, Vec<(f64, f64)>)> = samples
        .iter()
        .map(|(region, points)| {
            let mut latencies: Vec<f64> =
                points.iter().map(|(_, latency)| millis(*latency)).collect();
            latencies.sort_by(f64::total_cmp);
            let count = latencies.len() as f64;
            let curve = latencies
                .iter()
                .enumerate()
                .map(|(index, latency)| (*latency, (index + 1) as f64 / count))
                .collect();
            (region.clone(), curve)
        })
        .collect();
    written.extend(draw_lines(
        &directory.join("latency-cdf"),
        &Lines {
            caption: "Global-write latency, CDF per region".to_owned(),
            x_label: "latency (ms)",
            y_label: "share of completed global writes",
            x_range: (0.0, latency_max * 1.05),
            y_range: (0.0, 1.0),
            series: &cdf,
            shaded: &[],
            points_only: false,
            legend: SeriesLabelPosition::LowerRight,
        },
    )?);
    let over_time: Vec<(String, Vec<(f64, f64)>)> = samples
        .iter()
        .map(|(region, points)| {
            (
                region.clone(),
                points
                    .iter()
                    .map(|(began, latency)| (began.as_secs_f64(), millis(*latency)))
                    .collect(),
            )
        })
        .collect();
    let shaded: Vec<(f64, f64, String)> = script
        .faults
        .iter()
        .filter_map(|fault| {
            let length = fault.kind.length()?;
            let from = fault.at.as_secs_f64();
            Some((
                from,
                (from + length.as_secs_f64()).min(window.as_secs_f64()),
                fault.kind.label(),
            ))
        })
        .collect();
    written.extend(draw_lines(
        &directory.join("latency-over-time"),
        &Lines {
            caption: "Global-write latency over time (scripted faults shaded)".to_owned(),
            x_label: "time the call began (s since the operations started)",
            y_label: "latency (ms)",
            x_range: (0.0, window.as_secs_f64()),
            y_range: (0.0, latency_max * 1.05),
            series: &over_time,
            shaded: &shaded,
            points_only: true,
            legend: SeriesLabelPosition::UpperRight,
        },
    )?);
    Ok(written)
}

/// The plot of a sweep, into `directory`: the global-write p50 against the parameter, one
/// curve per region.
pub(crate) fn sweep_plot(
    directory: &Path,
    parameter: &str,
    rows: &[SweepRow],
) -> Result<Vec<PathBuf>, String> {
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for row in rows {
        let Some(p50) = row.global_write_p50_ms else {
            continue;
        };
        match series.iter_mut().find(|(region, _)| *region == row.region) {
            Some((_, points)) => points.push((row.value, p50)),
            None => series.push((row.region.clone(), vec![(row.value, p50)])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let xs = rows.iter().map(|row| row.value);
    let x_low = xs.clone().fold(f64::INFINITY, f64::min);
    let x_high = xs.fold(f64::NEG_INFINITY, f64::max);
    let y_high = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max);
    let x_label = parameter.to_owned();
    draw_lines(
        &directory.join("sweep"),
        &Lines {
            caption: format!("Global-write p50 against {parameter}"),
            x_label: &x_label,
            y_label: "global-write p50 (ms)",
            x_range: if x_low.is_finite() {
                (x_low, x_high)
            } else {
                (0.0, 1.0)
            },
            y_range: (0.0, y_high * 1.1),
            series: &series,
            shaded: &[],
            points_only: false,
            legend: SeriesLabelPosition::UpperRight,
        },
    )
}
