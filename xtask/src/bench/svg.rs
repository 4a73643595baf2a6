//! The boot timeline as hand-written SVG: the kernel, berth's boot stages,
//! then one bar per container (waiting for its turn, starting, ready).

use super::boot::Timeline;
use std::fmt::Write;

const WIDTH: f64 = 960.0;
const LABEL: f64 = 130.0;
const ROW: f64 = 22.0;
const TOP: f64 = 40.0;
const STAGE_COLOURS: [&str; 4] = ["#8fb3d9", "#a6d3a0", "#f3c98b", "#d7a6d9"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A round tick step giving about eight ticks over `span` ms.
fn tick_step(span: f64) -> f64 {
    let raw = (span / 8.0).max(1.0);
    let pow = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow)
}

pub fn timeline(t: &Timeline) -> String {
    let end = t.all_ready_ms().max(1.0);
    let x = |ms: f64| LABEL + (ms / end) * (WIDTH - LABEL - 20.0);
    let rows = 2 + t.bars.len();
    let height = TOP + rows as f64 * ROW + 70.0;
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14">berth boot under QEMU aarch64: kernel {:.0} ms, berth to all {} containers ready ({}) {:.0} ms</text>"#,
        t.kernel_ms,
        t.bars.len(),
        t.ready_event,
        end - t.kernel_ms
    );
    let bar = |s: &mut String, row: usize, from: f64, to: f64, fill: &str, title: &str| {
        let y = TOP + row as f64 * ROW;
        let w = (x(to) - x(from)).max(1.0);
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
            x(from),
            y + 3.0,
            ROW - 6.0,
            esc(title)
        );
    };
    let label = |s: &mut String, row: usize, text: &str| {
        let _ = writeln!(s, r#"<text x="10" y="{:.1}">{}</text>"#, TOP + row as f64 * ROW + 15.0, esc(text));
    };
    label(&mut s, 0, "kernel");
    bar(&mut s, 0, 0.0, t.kernel_ms, "#bbbbbb", &format!("kernel: 0 to {:.0} ms", t.kernel_ms));
    label(&mut s, 1, "berth stages");
    for (i, (name, from, to)) in t.stages.iter().enumerate() {
        let c = STAGE_COLOURS.get(i % STAGE_COLOURS.len()).unwrap_or(&"#999999");
        bar(&mut s, 1, *from, *to, c, &format!("{name}: {from:.0} to {to:.0} ms"));
        // Named in place when it is wide enough.
        if x(*to) - x(*from) > 6.5 * name.len() as f64 + 4.0 {
            let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#, x(*from) + 2.0, TOP + ROW + 15.0, esc(name));
        }
    }
    for (i, b) in t.bars.iter().enumerate() {
        let row = 2 + i;
        label(&mut s, row, &b.name);
        bar(&mut s, row, t.kernel_ms, b.launch_ms, "#eeeeee", &format!("{}: waiting until {:.0} ms", b.name, b.launch_ms));
        bar(&mut s, row, b.launch_ms, b.start_ms, "#3b7dd8", &format!("{}: starting {:.0} to {:.0} ms", b.name, b.launch_ms, b.start_ms));
        if b.ready_ms > b.start_ms {
            bar(&mut s, row, b.start_ms, b.ready_ms, "#f0a030", &format!("{}: exec'd to ready", b.name));
        }
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1:.1}" y2="{2:.1}" stroke="#1a7f37" stroke-width="2"/>"##,
            x(b.ready_ms),
            TOP + row as f64 * ROW + 2.0,
            TOP + (row + 1) as f64 * ROW - 2.0
        );
    }
    let axis = TOP + rows as f64 * ROW + 8.0;
    let _ = writeln!(s, r##"<line x1="{LABEL}" x2="{:.1}" y1="{axis}" y2="{axis}" stroke="#333"/>"##, x(end));
    let step = tick_step(end);
    let mut ms = 0.0;
    while ms <= end {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{axis}" y2="{1}" stroke="#333"/><text x="{0:.1}" y="{2}" text-anchor="middle">{ms:.0}</text>"##,
            x(ms),
            axis + 4.0,
            axis + 16.0
        );
        ms += step;
    }
    let legend = axis + 36.0;
    let items = [
        ("#bbbbbb", "kernel"),
        ("#8fb3d9", "berth stage"),
        ("#eeeeee", "waiting"),
        ("#3b7dd8", "starting (launch to exec)"),
        ("#f0a030", "exec'd to ready"),
        ("#1a7f37", "ready"),
    ];
    let mut lx = LABEL;
    for (c, n) in items {
        let _ =
            writeln!(s, r#"<rect x="{lx}" y="{:.1}" width="12" height="12" fill="{c}"/><text x="{}" y="{:.1}">{n}</text>"#, legend - 10.0, lx + 16.0, legend);
        lx += 30.0 + n.len() as f64 * 6.0;
    }
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">ms since boot</text>"#, WIDTH - 10.0, legend);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::boot::Bar;

    #[test]
    fn one_bar_per_container_and_round_ticks() {
        let t = Timeline {
            kernel_ms: 1500.0,
            stages: vec![("modules".into(), 1500.0, 2000.0), ("containers".into(), 2000.0, 2400.0)],
            bars: vec![
                Bar { name: "a".into(), launch_ms: 2100.0, start_ms: 2200.0, ready_ms: 2200.0 },
                Bar { name: "b<".into(), launch_ms: 2200.0, start_ms: 2400.0, ready_ms: 2400.0 },
            ],
            ready_event: "container.start",
            reserve_kib: None,
        };
        let svg = timeline(&t);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("fill=\"#3b7dd8\"><title>").count(), 2);
        assert!(svg.contains("b&lt;") && !svg.contains("b<"));
        assert_eq!(tick_step(2400.0), 500.0);
        assert_eq!(tick_step(80.0), 10.0);
    }
}
