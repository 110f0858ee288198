//! The choropleth of France by département: the shipped outlines (Lambert-93 for the
//! metropole, one inset per overseas département), five classes, a legend, and a hatched
//! grey for a département with no published rate.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use crate::chart::FONT;
use crate::table::Cell;

/// ColorBrewer "Blues", 5 classes (sequential, readable in grey and by colour-blind readers).
const CLASSES: [&str; 5] = ["#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c"];
const NO_DATA: &str = "#d9d9d9";

#[derive(Debug, Deserialize)]
struct Outlines {
    view_box: [f64; 4],
    fill_rule: String,
    frames: Vec<Frame>,
    departements: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(rename = "box")]
    bbox: [f64; 4],
    label: Option<String>,
}

/// Class breaks: the quintiles of the values, rounded to the shown precision and made
/// strictly increasing (fewer classes when the values are few or equal).
pub fn breaks(values: &[f64], decimals: u8) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return Vec::new();
    }
    let scale = 10f64.powi(decimals as i32);
    let mut out: Vec<f64> = Vec::new();
    for k in 1..CLASSES.len() {
        let q = sorted[(sorted.len() * k / CLASSES.len()).min(sorted.len() - 1)];
        let q = (q * scale).round() / scale;
        if out.last().is_none_or(|last| q > *last) && q > sorted[0] {
            out.push(q);
        }
    }
    out
}

fn class(value: f64, breaks: &[f64]) -> usize {
    breaks.iter().take_while(|b| value >= **b).count()
}

/// The map: `values` by département code (`None`: not published). `legend` titles the key.
pub fn choropleth(
    title: &str,
    legend: &str,
    values: &BTreeMap<String, Option<f64>>,
    decimals: u8,
) -> String {
    let outlines: Outlines = serde_json::from_str(observatory_reference::OUTLINES_JSON)
        .expect("the shipped outlines parse (checked by a test)");
    let shown: Vec<f64> = values.values().flatten().copied().collect();
    let breaks = breaks(&shown, decimals);
    let [x0, y0, w, h] = outlines.view_box;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="{x0} {y0} {w} {h}" width="{}" height="{}" font-family="{FONT}" font-size="18" role="img"><title>{}</title><defs><pattern id="nodata" width="8" height="8" patternUnits="userSpaceOnUse"><rect width="8" height="8" fill="{NO_DATA}"/><path d="M0,8 L8,0" stroke="#ffffff" stroke-width="1.2"/></pattern></defs>"##,
        w / 2.0,
        h / 2.0,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    for frame in outlines.frames.iter().filter(|f| f.label.is_some()) {
        let [x, y, fw, fh] = frame.bbox;
        let _ = write!(
            out,
            r##"<rect x="{x}" y="{y}" width="{fw}" height="{fh}" fill="none" stroke="#9aa5b1" stroke-width="1"/><text x="{}" y="{}" text-anchor="middle" fill="#1f2933">{}</text>"##,
            x + fw / 2.0,
            y + fh + 20.0,
            frame.label.as_deref().unwrap_or_default()
        );
    }
    for (code, path) in &outlines.departements {
        let value = values.get(code).copied().flatten();
        let fill = match value {
            Some(v) => CLASSES[class(v, &breaks)].to_owned(),
            None => "url(#nodata)".to_owned(),
        };
        let shown =
            value.map_or("no published rate".to_owned(), |v| Cell::num(v, decimals).display());
        let _ = write!(
            out,
            r##"<path d="{path}" fill="{fill}" fill-rule="{}" stroke="#ffffff" stroke-width="0.8"><title>{code}: {shown}</title></path>"##,
            outlines.fill_rule
        );
    }
    // The legend sits in the Channel, top left of the metropolitan frame.
    let _ = write!(out, r##"<text x="24" y="40" font-size="20" fill="#1f2933">{legend}</text>"##);
    let mut bounds: Vec<String> = Vec::new();
    let fmt = |v: f64| Cell::num(v, decimals).display();
    for (i, _) in CLASSES.iter().enumerate().take(breaks.len() + 1) {
        bounds.push(match (i.checked_sub(1).map(|j| breaks[j]), breaks.get(i)) {
            (None, Some(hi)) => format!("under {}", fmt(*hi)),
            (Some(lo), Some(hi)) => format!("{} to under {}", fmt(lo), fmt(*hi)),
            (Some(lo), None) => format!("{} and over", fmt(lo)),
            (None, None) => "all".to_owned(),
        });
    }
    let rows = bounds.iter().enumerate().map(|(i, b)| (CLASSES[i], b.as_str()));
    for (i, (fill, text)) in rows.chain([("url(#nodata)", "no published rate")]).enumerate() {
        let y = 56.0 + 28.0 * i as f64;
        let _ = write!(
            out,
            r##"<rect x="24" y="{y}" width="26" height="18" fill="{fill}" stroke="#9aa5b1" stroke-width="0.8"/><text x="60" y="{}" fill="#1f2933">{text}</text>"##,
            y + 15.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_are_increasing_quintiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(breaks(&values, 0), vec![21.0, 41.0, 61.0, 81.0]);
        assert_eq!(breaks(&[5.0, 5.0, 5.0], 1), Vec::<f64>::new());
        assert_eq!(breaks(&[1.0, 2.0], 1), vec![2.0]);
        assert_eq!(class(0.5, &[1.0, 2.0]), 0);
        assert_eq!(class(1.0, &[1.0, 2.0]), 1);
        assert_eq!(class(9.0, &[1.0, 2.0]), 2);
    }

    #[test]
    fn every_departement_is_drawn_and_a_missing_rate_is_hatched() {
        let mut values = BTreeMap::new();
        values.insert("75".to_owned(), Some(120.5));
        values.insert("13".to_owned(), Some(80.0));
        values.insert("971".to_owned(), None);
        let svg = choropleth("Rates", "per 100 000", &values, 1);
        assert_eq!(svg.matches(" fill-rule=").count(), 101, "one path per département");
        assert!(svg.contains("<title>75: 120.5</title>"));
        assert!(svg.contains("<title>971: no published rate</title>"));
        assert!(svg.contains("Mayotte") && svg.contains("La Réunion"));
        assert_eq!(svg, choropleth("Rates", "per 100 000", &values, 1), "deterministic");
    }
}
