//! Charts with plotters, each drawn once over any backend and saved as SVG and PNG.
//!
//! Text needs a font: the project ships DejaVu Sans (`assets/fonts`, Bitstream Vera
//! licence) and registers it as `sans-serif` with plotters' `ab_glyph` font table before the
//! first chart, so plots render the same on a machine with no installed fonts.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nas_core::{NasError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::stats::BandPoint;

/// The shipped font (DejaVu Sans 2.37, from Debian's `fonts-dejavu-core`).
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// The font family every chart uses.
pub const FAMILY: &str = "sans-serif";

/// Registers the shipped font with plotters (once per process).
pub fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok()
            && plotters::style::register_font(FAMILY, FontStyle::Bold, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(NasError::Other(
            "the shipped font DejaVuSans.ttf could not be read".into(),
        ))
    }
}

/// Ten distinguishable colours (the "Tableau 10" palette).
pub const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The `i`-th colour of [`COLORS`], cycling.
pub fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The error type of drawing on `DB`.
pub type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    /// Size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root` (already filled white).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> NasError {
    NasError::Other(format!("drawing {}: {e}", path.display()))
}

/// Draws `fig` into `stem.svg` and `stem.png`; returns both paths.
pub fn save(fig: &impl Figure, stem: &Path) -> Result<Vec<PathBuf>> {
    register_font()?;
    if let Some(d) = stem.parent() {
        std::fs::create_dir_all(d).map_err(|e| NasError::io(d, e))?;
    }
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    {
        let root = SVGBackend::new(&svg, fig.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&svg, e))?;
        fig.draw(&root).map_err(|e| draw_err(&svg, e))?;
        root.present().map_err(|e| draw_err(&svg, e))?;
    }
    {
        let root = BitMapBackend::new(&png, fig.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(&png, e))?;
        fig.draw(&root).map_err(|e| draw_err(&png, e))?;
        root.present().map_err(|e| draw_err(&png, e))?;
    }
    Ok(vec![svg, png])
}

/// A range covering `values` with 5% padding; a unit range around a single value.
pub fn padded_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 {
            lo.abs() * 0.05
        } else {
            0.5
        };
        return (lo - d, hi + d);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// One line of a [`LineFigure`]: a mean with an optional `± std` band.
#[derive(Debug, Clone)]
pub struct BandSeries {
    /// Legend entry.
    pub name: String,
    /// The points, in increasing `x`.
    pub points: Vec<BandPoint>,
}

/// Lines (optionally drawn as steps) with shaded `mean ± std` bands.
#[derive(Debug, Clone)]
pub struct LineFigure {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<BandSeries>,
    /// Draw each line as a step function (value holds until the next point).
    pub steps: bool,
    /// Shade `mean ± std`.
    pub bands: bool,
    /// Fit the y axis to the points after the first tenth of the x range (early points,
    /// such as a search's first few queries, are clipped), so that the end of the curves,
    /// where they differ, is readable.
    pub focus_tail: bool,
}

/// A tick label: at most six decimals, trailing zeros dropped (`10`, `0.25`).
pub fn tick(v: &f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

fn step_path(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(pts.len() * 2);
    for (i, &(x, y)) in pts.iter().enumerate() {
        if i > 0 {
            out.push((x, pts[i - 1].1));
        }
        out.push((x, y));
    }
    out
}

impl Figure for LineFigure {
    fn size(&self) -> (u32, u32) {
        (900, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let all = self.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = padded_range(all.clone().map(|p| p.x));
        let cut = if self.focus_tail {
            let (lo, hi) = padded_range(all.clone().map(|p| p.x));
            lo + (hi - lo) * 0.1
        } else {
            f64::NEG_INFINITY
        };
        let (y0, y1) = padded_range(all.filter(|p| p.x >= cut).flat_map(|p| {
            if self.bands {
                vec![p.mean - p.std, p.mean + p.std]
            } else {
                vec![p.mean]
            }
        }));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        let shape = |pts: Vec<(f64, f64)>| if self.steps { step_path(&pts) } else { pts };
        for (i, s) in self.series.iter().enumerate() {
            let c = color(i);
            let pts: Vec<&BandPoint> = s.points.iter().filter(|p| p.mean.is_finite()).collect();
            if self.bands && self.steps {
                // A step function's band is constant between points: one rectangle each.
                chart.draw_series(pts.windows(2).map(|w| {
                    Rectangle::new(
                        [
                            (w[0].x, w[0].mean - w[0].std),
                            (w[1].x, w[0].mean + w[0].std),
                        ],
                        c.mix(0.15).filled(),
                    )
                }))?;
            } else if self.bands && pts.len() > 1 {
                let upper: Vec<(f64, f64)> = pts.iter().map(|p| (p.x, p.mean + p.std)).collect();
                let lower = pts.iter().rev().map(|p| (p.x, p.mean - p.std));
                let poly: Vec<(f64, f64)> = upper.into_iter().chain(lower).collect();
                chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.15).filled())))?;
            }
            let line = shape(pts.iter().map(|p| (p.x, p.mean)).collect());
            chart
                .draw_series(LineSeries::new(line, c.stroke_width(2)))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// Points coloured by group.
#[derive(Debug, Clone)]
pub struct ScatterFigure {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// `(group name, points)`.
    pub groups: Vec<(String, Vec<(f64, f64)>)>,
}

impl Figure for ScatterFigure {
    fn size(&self) -> (u32, u32) {
        (900, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let all = self.groups.iter().flat_map(|g| g.1.iter());
        let (x0, x1) = padded_range(all.clone().map(|p| p.0));
        let (y0, y1) = padded_range(all.map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, (name, pts)) in self.groups.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| p.0.is_finite() && p.1.is_finite())
                        .map(|&p| Circle::new(p, 5, c.mix(0.75).filled())),
                )?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// How the points of an [`ErrorBarSeries`] are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A filled circle.
    Circle,
    /// A filled triangle.
    Triangle,
    /// A cross.
    Cross,
}

/// Points with vertical `mean ± std` error bars, optionally joined by a line.
#[derive(Debug, Clone)]
pub struct ErrorBarSeries {
    /// Legend entry.
    pub name: String,
    /// `(x, mean, std)`; a `NaN` std draws no bar.
    pub points: Vec<(f64, f64, f64)>,
    /// Join the points in the given order.
    pub joined: bool,
    /// Point marker.
    pub marker: Marker,
    /// Labels written next to the points (same length as `points`, or empty).
    pub labels: Vec<String>,
}

/// Series of points with error bars on shared axes (e.g. accuracy against parameters of a
/// family of architectures, its random controls and baselines).
#[derive(Debug, Clone)]
pub struct ErrorBarFigure {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The series.
    pub series: Vec<ErrorBarSeries>,
}

impl Figure for ErrorBarFigure {
    fn size(&self) -> (u32, u32) {
        (900, 580)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let finite = |p: &&(f64, f64, f64)| p.0.is_finite() && p.1.is_finite();
        let pts = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(finite)
        };
        let (x0, x1) = padded_range(pts().map(|p| p.0));
        let spread = |p: &(f64, f64, f64)| if p.2.is_finite() { p.2 } else { 0.0 };
        let (y0, y1) = padded_range(pts().flat_map(|p| [p.1 - spread(p), p.1 + spread(p)]));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (i, s) in self.series.iter().enumerate() {
            let c = color(i);
            let ok: Vec<(f64, f64, f64)> = s.points.iter().filter(finite).copied().collect();
            if s.joined && ok.len() > 1 {
                chart.draw_series(LineSeries::new(
                    ok.iter().map(|p| (p.0, p.1)),
                    c.mix(0.6).stroke_width(2),
                ))?;
            }
            chart.draw_series(ok.iter().filter(|p| p.2.is_finite() && p.2 > 0.0).map(|p| {
                PathElement::new(vec![(p.0, p.1 - p.2), (p.0, p.1 + p.2)], c.stroke_width(2))
            }))?;
            let marker = s.marker;
            let shape = move |p: (f64, f64), size: i32| -> DynElement<'static, DB, (f64, f64)> {
                match marker {
                    Marker::Circle => Circle::new(p, size, c.filled()).into_dyn(),
                    Marker::Triangle => TriangleMarker::new(p, size + 2, c.filled()).into_dyn(),
                    Marker::Cross => Cross::new(p, size + 1, c.stroke_width(3)).into_dyn(),
                }
            };
            chart
                .draw_series(ok.iter().map(|p| shape((p.0, p.1), 5)))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    let c = c;
                    match marker {
                        Marker::Circle => Circle::new((x + 10, y), 5, c.filled()).into_dyn(),
                        Marker::Triangle => {
                            TriangleMarker::new((x + 10, y), 7, c.filled()).into_dyn()
                        }
                        Marker::Cross => Cross::new((x + 10, y), 6, c.stroke_width(3)).into_dyn(),
                    }
                });
            let style = TextStyle::from((FAMILY, 12).into_font()).color(&c);
            chart.draw_series(
                s.points
                    .iter()
                    .zip(&s.labels)
                    .filter(|(p, _)| finite(p))
                    .map(|(p, l)| {
                        EmptyElement::at((p.0, p.1)) + Text::new(l.clone(), (7, -16), style.clone())
                    }),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// One small chart of a [`PanelsFigure`].
#[derive(Debug, Clone)]
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// One line per legend entry of the figure (same order), `(x, y)` points.
    pub lines: Vec<Vec<(f64, f64)>>,
}

/// A grid of small line charts sharing one legend (e.g. one panel per edge, one line per
/// operation).
#[derive(Debug, Clone)]
pub struct PanelsFigure {
    /// Title.
    pub title: String,
    /// X axis label of every panel.
    pub x_label: String,
    /// Legend entries, one per line of each panel.
    pub legend: Vec<String>,
    /// The panels, row by row.
    pub panels: Vec<Panel>,
    /// Panels per row.
    pub columns: usize,
    /// Fixed y range of every panel, or `None` to fit each.
    pub y_range: Option<(f64, f64)>,
}

impl PanelsFigure {
    fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.columns.max(1)).max(1)
    }
}

impl Figure for PanelsFigure {
    fn size(&self) -> (u32, u32) {
        let cols = self.columns.max(1) as u32;
        (cols * 300, 90 + self.rows() as u32 * 220)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let root = root.titled(&self.title, (FAMILY, 22))?;
        let (legend_area, grid) = root.split_vertically(40);
        // The shared legend: a coloured dash and the name, left to right.
        let mut x = 10i32;
        for (i, name) in self.legend.iter().enumerate() {
            let c = color(i);
            legend_area.draw(&PathElement::new(
                vec![(x, 20), (x + 22, 20)],
                c.stroke_width(3),
            ))?;
            let style = TextStyle::from((FAMILY, 14).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            legend_area.draw_text(name, &style, (x + 27, 20))?;
            let (w, _) = legend_area.estimate_text_size(name, &style)?;
            x += 27 + w as i32 + 18;
        }
        let cells = grid.split_evenly((self.rows(), self.columns.max(1)));
        for (panel, area) in self.panels.iter().zip(cells.iter()) {
            let all = panel.lines.iter().flatten();
            let (x0, x1) = padded_range(all.clone().map(|p| p.0));
            let (y0, y1) = self
                .y_range
                .unwrap_or_else(|| padded_range(all.map(|p| p.1)));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FAMILY, 14))
                .margin(6)
                .x_label_area_size(28)
                .y_label_area_size(40)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .x_desc(&self.x_label)
                .x_label_formatter(&tick)
                .y_label_formatter(&tick)
                .label_style((FAMILY, 11))
                .axis_desc_style((FAMILY, 11))
                .light_line_style(WHITE.mix(0.0))
                .draw()?;
            for (i, line) in panel.lines.iter().enumerate() {
                chart.draw_series(LineSeries::new(line.clone(), color(i).stroke_width(2)))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_pad_and_handle_degenerate_input() {
        assert_eq!(padded_range([0.0, 10.0]), (-0.5, 10.5));
        assert_eq!(padded_range([2.0, 2.0]), (1.9, 2.1));
        assert_eq!(padded_range([f64::NAN]), (0.0, 1.0));
    }

    #[test]
    fn steps_hold_the_previous_value() {
        assert_eq!(
            step_path(&[(1.0, 1.0), (2.0, 3.0), (4.0, 5.0)]),
            vec![(1.0, 1.0), (2.0, 1.0), (2.0, 3.0), (4.0, 3.0), (4.0, 5.0)]
        );
    }
}
