//! Charts as SVG, written by hand: a line chart for monthly series and a bar chart for
//! yearly ones. Hand-written so the bytes depend only on the numbers (no library version,
//! no font lookup: text names the fonts the PDF embeds, with a generic fallback for
//! browsers), and so the same SVG serves the PDF and the front page.

use std::fmt::Write;

/// The fonts every SVG names: the first is embedded in the PDF renderer.
pub const FONT: &str = "'Libertinus Serif', 'Linux Libertine', Georgia, serif";
const INK: &str = "#1f2933";
const GRID: &str = "#d9dee3";
pub const ACCENT: &str = "#08519c";

/// One point of a series: its axis label, its value (none: withheld or not published) and
/// whether it is provisional (drawn hollow, joined by a dashed line).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: Option<f64>,
    pub provisional: bool,
}

/// A "nice" axis: 0 to a round maximum in 4–6 steps.
fn axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 1.0);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| s * 5.0 >= max)
        .unwrap_or(10.0 * magnitude);
    ((max / step).ceil() * step, step)
}

fn tick(v: f64) -> String {
    crate::table::Cell::num(v, if v.fract() == 0.0 { 0 } else { 1 }).display()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 640.0;
const H: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 44.0;

/// The SVG element, its title, and the y axis scaled to the largest value of `points`; returns
/// the y of a value.
fn open(out: &mut String, title: &str, points: &[Point]) -> impl Fn(f64) -> f64 + use<> {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="{FONT}" font-size="11" role="img"><title>{}</title>"#,
        escape(title)
    );
    let max = points.iter().filter_map(|p| p.value).fold(0.0, f64::max);
    y_axis(out, max)
}

/// The x axis line.
fn baseline(out: &mut String) {
    let _ = write!(
        out,
        r#"<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="{INK}" stroke-width="1"/>"#,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );
}

/// Horizontal grid lines and y labels; returns the y of a value.
fn y_axis(out: &mut String, max: f64) -> impl Fn(f64) -> f64 + use<> {
    let (top, step) = axis(max);
    let plot_h = H - TOP - BOTTOM;
    let y = move |v: f64| TOP + plot_h * (1.0 - v / top);
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{GRID}" stroke-width="0.8"/><text x="{}" y="{:.1}" text-anchor="end" fill="{INK}">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 3.5,
            tick(v),
            y = y(v)
        );
        v += step;
    }
    y
}

/// A line chart of a monthly series; every `label_every`-th point is labelled on the x axis.
pub fn line(title: &str, points: &[Point], label_every: usize) -> String {
    let mut out = String::new();
    let y = open(&mut out, title, points);
    let n = points.len().max(2) as f64;
    let plot_w = W - LEFT - RIGHT;
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / n;
    // Segments: solid between final points, dashed when either end is provisional.
    for (i, pair) in points.windows(2).enumerate() {
        if let (Some(a), Some(b)) = (pair[0].value, pair[1].value) {
            let dash = if pair[0].provisional || pair[1].provisional {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            };
            let _ = write!(
                out,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{ACCENT}" stroke-width="2"{dash}/>"#,
                x(i),
                y(a),
                x(i + 1),
                y(b)
            );
        }
    }
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p.value {
            let fill = if p.provisional { "#ffffff" } else { ACCENT };
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{fill}" stroke="{ACCENT}" stroke-width="1.5"/>"#,
                x(i),
                y(v)
            );
        }
        if label_every > 0 && (points.len() - 1 - i).is_multiple_of(label_every) {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="middle" fill="{INK}">{}</text>"#,
                x(i),
                H - BOTTOM + 16.0,
                escape(&p.label)
            );
        }
    }
    baseline(&mut out);
    if points.iter().any(|p| p.provisional) {
        let _ = write!(
            out,
            r##"<circle cx="{LEFT}" cy="{}" r="3" fill="#ffffff" stroke="{ACCENT}" stroke-width="1.5"/><text x="{}" y="{}" fill="{INK}">provisional (a source has not closed the month)</text>"##,
            H - 10.0,
            LEFT + 8.0,
            H - 6.5
        );
    }
    out.push_str("</svg>");
    out
}

/// A vertical bar chart (one bar per year, say); provisional bars are hatched lighter.
pub fn bars(title: &str, points: &[Point]) -> String {
    let mut out = String::new();
    let y = open(&mut out, title, points);
    let n = points.len().max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let slot = plot_w / n;
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.2;
        if let Some(v) = p.value {
            let fill = if p.provisional { "#6baed6" } else { ACCENT };
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{INK}">{}</text>"#,
                y(v),
                slot * 0.6,
                (H - BOTTOM) - y(v),
                x + slot * 0.3,
                y(v) - 4.0,
                tick(v)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle" fill="{INK}">{}{}</text>"#,
            x + slot * 0.3,
            H - BOTTOM + 16.0,
            escape(&p.label),
            if p.provisional { " (p)" } else { "" }
        );
    }
    baseline(&mut out);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, value: Option<f64>, provisional: bool) -> Point {
        Point { label: label.into(), value, provisional }
    }

    #[test]
    fn axes_round_up_to_nice_steps() {
        assert_eq!(axis(97.0), (100.0, 20.0));
        assert_eq!(axis(1234.0), (1250.0, 250.0));
        assert_eq!(axis(0.0), (1.0, 1.0));
        assert_eq!(axis(5.0), (5.0, 1.0));
    }

    #[test]
    fn a_line_chart_marks_provisional_points_and_skips_missing_ones() {
        let svg = line(
            "Series <a&b>",
            &[p("Jan", Some(10.0), false), p("Feb", None, false), p("Mar", Some(12.0), true)],
            1,
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Series &lt;a&amp;b&gt;"));
        assert_eq!(svg.matches("<circle").count(), 3, "two points and the legend's");
        assert!(svg.contains("provisional"));
        // No segment crosses the missing month.
        assert!(!svg.contains("stroke-dasharray"));
        assert_eq!(
            svg,
            line(
                "Series <a&b>",
                &[p("Jan", Some(10.0), false), p("Feb", None, false), p("Mar", Some(12.0), true)],
                1
            )
        );
    }

    #[test]
    fn bars_label_their_values() {
        let svg = bars("Years", &[p("2024", Some(1500.0), false), p("2025", Some(1720.0), true)]);
        assert!(svg.contains(">1,500<") && svg.contains(">1,720<"));
        assert!(svg.contains("2025 (p)"));
    }
}
