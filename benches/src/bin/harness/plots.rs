//! PNG plots with plotters' bitmap backend. Text is drawn with ab_glyph from a
//! TrueType file (DejaVu Sans from Debian's fonts-dejavu-core): there are no
//! system fonts to fall back on.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use karst_benches::RunResult;
use plotters::prelude::*;
use plotters::style::FontStyle;

const FONT_PATHS: &[&str] =
    &["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"];

/// Registers a TrueType font as "sans-serif"; plots need it to draw any text.
pub(crate) fn init_font() -> Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|p| Path::new(p).is_file())
        .ok_or_else(|| anyhow!("no DejaVuSans.ttf (apt-get install fonts-dejavu-core)"))?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path).with_context(|| format!("reading {path}"))?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| anyhow!("{path} is not a usable font"))?;
    Ok(())
}

const COLORS: &[RGBColor] = &[
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x39, 0x3b, 0x79),
    RGBColor(0xad, 0x49, 0x4a),
];

/// One colour per system, the same in every plot.
fn color_for(system: &str) -> RGBColor {
    const ORDER: &[&str] = &[
        "null broker",
        "Karst",
        "Karst no-fsync",
        "Tansu memory",
        "Tansu sqlite",
        "Redis Streams always",
        "Redis Streams everysec",
        "NATS JetStream",
        "RabbitMQ quorum",
        "Kafka",
        "Kafka fsync",
    ];
    let i = ORDER.iter().position(|s| *s == system).unwrap_or(ORDER.len());
    COLORS[i % COLORS.len()]
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Horizontal bars of produce msgs/s, one panel per workload.
pub(crate) fn throughput(path: &Path, panels: &[(&str, Vec<&RunResult>)]) -> Result<()> {
    let rows = panels.iter().map(|(_, r)| r.len()).max().unwrap_or(1).max(1);
    let height = 120 + rows as u32 * 34;
    let root = BitMapBackend::new(path, (1200, height * panels.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for ((title, runs), area) in panels.iter().zip(areas) {
        let max = runs.iter().map(|r| r.produce_msgs_per_s).fold(1.0, f64::max) * 1.35;
        let names: Vec<String> = runs.iter().map(|r| r.system.clone()).collect();
        let n = runs.len().max(1) as i32;
        let mut chart = ChartBuilder::on(&area)
            .caption(*title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(220)
            .build_cartesian_2d(0f64..max, (0..n).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("msgs/s produced (acks=all)")
            .x_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        for (i, r) in runs.iter().enumerate() {
            let color = color_for(&r.system);
            let i = i as i32;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, SegmentValue::Exact(i)), (r.produce_msgs_per_s, SegmentValue::Exact(i + 1))],
                    color.mix(0.85).filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{:.0} msgs/s, {:.1} MB/s", r.produce_msgs_per_s, r.produce_mb_per_s),
                    (r.produce_msgs_per_s + max * 0.005, SegmentValue::CenterOf(i)),
                    ("sans-serif", 14).into_font(),
                )))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
}

/// "Nines" scale: 0 → 0, 90 → 1, 99 → 2, 99.9 → 3, capped at 5.
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        5.0
    } else {
        (-(1.0 - p / 100.0).log10()).min(5.0)
    }
}

/// End-to-end latency percentile curves, one line per system (log latency).
pub(crate) fn latency(path: &Path, title: &str, runs: &[&RunResult]) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ms = |us: u64| (us as f64 / 1000.0).max(0.01);
    let max = runs.iter().flat_map(|r| r.e2e_latency.curve.iter().map(|&(_, us)| ms(us))).fold(1.0, f64::max) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..5.0, (0.01f64..max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("end-to-end latency (ms)")
        .x_labels(6)
        .x_label_formatter(&|v| match v.round() as i64 {
            0 => "0".into(),
            1 => "90".into(),
            2 => "99".into(),
            3 => "99.9".into(),
            4 => "99.99".into(),
            _ => "max".into(),
        })
        .y_label_formatter(&|v| if *v >= 1.0 { format!("{v:.0}") } else { format!("{v:.2}") })
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    for r in runs {
        let color = color_for(&r.system);
        let pts: Vec<(f64, f64)> = r.e2e_latency.curve.iter().map(|&(p, us)| (nines(p), ms(us))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(r.system.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::nines;

    #[test]
    fn nines_scale() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(99.0) - 2.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 5.0);
    }
}
