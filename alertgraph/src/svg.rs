//! Draws a subgraph as a standalone SVG: IT nodes as blue circles, OT nodes as orange squares,
//! edges as arrows labelled with first time and protocol. All text is XML-escaped (alert text
//! is attacker-influenced).

use crate::subgraph::Subgraph;
use socwire_common::text::escape_html;
use std::fmt::Write as _;

/// Renders `s` (at most its first 60 nodes, nodes on a circle in time order of first contact).
pub fn render(s: &Subgraph) -> String {
    const SIZE: f64 = 720.0;
    let nodes: Vec<_> = s.nodes.iter().take(60).collect();
    let n = nodes.len().max(1) as f64;
    let (cx, cy, r) = (SIZE / 2.0, SIZE / 2.0 + 30.0, SIZE / 2.0 - 110.0);
    let pos = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (cx + r * a.cos(), cy + r * a.sin())
    };
    let index = |ip: &str| nodes.iter().position(|x| &*x.ip == ip);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{h}" viewBox="0 0 {SIZE} {h}" font-family="sans-serif" font-size="11">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="18" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
<text x="12" y="20" font-size="14" font-weight="bold">Rank {rank}: score {score:.2}, {alerts} alert(s), {nodes} node(s), longest path {hops} hop(s){ot}</text>
"##,
        h = SIZE + 40.0,
        rank = s.rank,
        score = s.score,
        alerts = s.alert_count,
        nodes = s.node_count,
        hops = s.longest_path,
        ot = if s.crosses_it_ot {
            ", crosses IT→OT"
        } else {
            ""
        },
    );
    for (i, reason) in s.reasons.iter().take(4).enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="12" y="{}" fill="#333">• {}</text>"##,
            38 + 14 * i,
            escape_html(reason)
        );
    }
    for e in s.edges.iter().take(120) {
        let (Some(a), Some(b)) = (index(&e.src), index(&e.dst)) else {
            continue;
        };
        if a == b {
            continue;
        }
        let ((x1, y1), (x2, y2)) = (pos(a), pos(b));
        let label = format!(
            "{} {}",
            e.first_seen.get(11..16).unwrap_or_default(),
            e.protocols.join("/")
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#555" stroke-width="{w:.1}" marker-end="url(#arrow)"/><text x="{mx:.1}" y="{my:.1}" fill="#a33" text-anchor="middle">{t}</text>"##,
            w = 1.0 + (f64::from(e.alerts)).ln(),
            mx = (x1 + x2) / 2.0,
            my = (y1 + y2) / 2.0 - 3.0,
            t = escape_html(&label),
        );
    }
    for (i, node) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let shape = if node.domain.contains("OT") {
            format!(
                r##"<rect x="{:.1}" y="{:.1}" width="18" height="18" fill="#f39c12" stroke="#7a4a00"/>"##,
                x - 9.0,
                y - 9.0
            )
        } else {
            format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="9" fill="#3a7bd5" stroke="#123"/>"##)
        };
        let name = match &node.host {
            Some(h) => format!("{} ({})", node.ip, h),
            None => node.ip.to_string(),
        };
        let _ = writeln!(
            svg,
            r##"{shape}<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x,
            y + 22.0,
            escape_html(&name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="12" y="{}" fill="#555"><tspan fill="#3a7bd5">●</tspan> IT  <tspan fill="#f39c12">■</tspan> OT  edge label: first time (UTC) and protocol</text></svg>"##,
        SIZE + 30.0
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<script>&\"'\u{7}"),
            "&lt;script&gt;&amp;&quot;&#39;"
        );
    }
}
