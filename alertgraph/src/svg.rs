//! Draws a subgraph as a standalone SVG "lane" picture: time runs left to right, every host
//! has a lane, lanes are grouped by zone (IT, OT) and Purdue level where an asset map says
//! it ([`Zones`]), and every communication pair is an arrow from its source lane to its
//! destination lane at the time of its first alert, labelled with its alert count, protocols
//! and tactics. The path the row claims is drawn in red; host-only alerts are diamonds on their
//! host's lane. The console embeds the same drawing and makes the arrows clickable (each is a
//! focusable `g.edge` carrying `data-src` and `data-dst`). All text is XML-escaped: alert text
//! is attacker-influenced.

use crate::subgraph::Subgraph;
use serde::Deserialize;
use socwire_common::text::escape_html;
use std::fmt::Write as _;
use std::net::IpAddr;

/// The parts of a row the drawing uses; read from a stored row (its JSON) or taken from a
/// [`Subgraph`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Story {
    /// Row id.
    pub subgraph_id: String,
    /// 1 = look first.
    pub rank: u32,
    /// Score.
    pub score: f64,
    /// Alerts.
    pub alert_count: u32,
    /// Nodes.
    pub node_count: u32,
    /// Hops of the longest time-respecting path.
    pub longest_path: u32,
    /// An IT host reached into OT.
    pub crosses_it_ot: bool,
    /// The path the row claims (addresses in order).
    pub path: Vec<String>,
    /// Nodes.
    pub nodes: Vec<StoryNode>,
    /// Communication pairs.
    pub edges: Vec<StoryEdge>,
    /// Why it ranks where it does.
    pub reasons: Vec<String>,
}

/// A node of a [`Story`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StoryNode {
    /// Address.
    pub ip: String,
    /// Host name, when known.
    pub host: Option<String>,
    /// `IT`, `OT` or `IT/OT`.
    pub domain: String,
}

/// A communication pair of a [`Story`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StoryEdge {
    /// Source address.
    pub src: String,
    /// Destination (the source again for host-only alerts).
    pub dst: String,
    /// First alert time (RFC 3339).
    pub first_seen: String,
    /// Alerts on the pair.
    pub alerts: u32,
    /// Protocols.
    pub protocols: Vec<String>,
    /// Tactics.
    pub tactics: Vec<String>,
}

impl From<&Subgraph> for Story {
    fn from(s: &Subgraph) -> Self {
        Self {
            subgraph_id: s.subgraph_id.clone(),
            rank: s.rank,
            score: s.score,
            alert_count: s.alert_count,
            node_count: s.node_count,
            longest_path: s.longest_path,
            crosses_it_ot: s.crosses_it_ot,
            path: s.path.iter().map(|p| p.to_string()).collect(),
            nodes: s
                .nodes
                .iter()
                .map(|n| StoryNode {
                    ip: n.ip.to_string(),
                    host: n.host.as_ref().map(|h| h.to_string()),
                    domain: n.domain.to_string(),
                })
                .collect(),
            edges: s
                .edges
                .iter()
                .map(|e| StoryEdge {
                    src: e.src.to_string(),
                    dst: e.dst.to_string(),
                    first_seen: e.first_seen.clone(),
                    alerts: e.alerts,
                    protocols: e.protocols.iter().map(|p| p.to_string()).collect(),
                    tactics: e.tactics.iter().map(|t| t.to_string()).collect(),
                })
                .collect(),
            reasons: s.reasons.clone(),
        }
    }
}

/// One entry of an asset map: the addresses of a network and where they sit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Zone {
    /// The network, `10.20.0.0/16` or one address.
    pub cidr: String,
    /// `IT` or `OT`.
    pub zone: String,
    /// Purdue level, when known (`L1`, `L2`, `L3.5`, …).
    #[serde(default)]
    pub level: Option<String>,
    /// What lives there, for the lane group's heading (`PLCs`).
    #[serde(default)]
    pub name: Option<String>,
}

/// An asset map: the most specific matching entry places a host (an asset-zones JSON file is
/// a list of [`Zone`]s). Hosts it does not place go by the domain their alerts gave.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Zones(pub Vec<Zone>);

impl Zones {
    /// The entry for `ip`: the longest matching prefix.
    pub fn place(&self, ip: &str) -> Option<&Zone> {
        let addr: IpAddr = ip.parse().ok()?;
        self.0
            .iter()
            .filter_map(|z| {
                let (net, bits) = match z.cidr.split_once('/') {
                    Some((n, b)) => (n.parse::<IpAddr>().ok()?, b.parse::<u32>().ok()?),
                    None => {
                        let n: IpAddr = z.cidr.parse().ok()?;
                        (n, if n.is_ipv4() { 32 } else { 128 })
                    }
                };
                contains(net, bits, addr).then_some((bits, z))
            })
            .max_by_key(|(bits, _)| *bits)
            .map(|(_, z)| z)
    }
}

fn contains(net: IpAddr, bits: u32, addr: IpAddr) -> bool {
    let (n, a, width) = match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n) as u128, u32::from(a) as u128, 32),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= width || (n >> shift) == (a >> shift)
}

/// The lane group of a host: heading and sort key (top to bottom: IT before OT, higher
/// Purdue levels first, hosts with no known level above their zone's levels).
fn lane_group(node: &StoryNode, zones: &Zones) -> (String, (u8, i32)) {
    match zones.place(&node.ip) {
        Some(z) => {
            let level = z.level.as_deref().and_then(|l| {
                l.trim_start_matches(['L', 'l'])
                    .parse::<f64>()
                    .ok()
                    .map(|v| (v * 10.0) as i32)
            });
            let zone_rank = if z.zone.eq_ignore_ascii_case("OT") {
                1
            } else {
                0
            };
            let heading = [
                Some(z.zone.clone()),
                z.level.as_ref().map(|l| format!("Purdue {l}")),
                z.name.clone(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
            (heading, (zone_rank, -level.unwrap_or(1000)))
        }
        None => {
            let zone_rank = if node.domain.contains("OT") { 1 } else { 0 };
            (
                format!("{} · level not known", node.domain),
                (zone_rank, -1000),
            )
        }
    }
}

fn millis(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Renders a row with no asset map (lanes grouped by the domain the alerts gave).
pub fn render(s: &Subgraph) -> String {
    render_story(&Story::from(s), &Zones::default())
}

/// Width of the drawing.
const WIDTH: f64 = 1000.0;
/// Width of the lane labels on the left.
const LABELS: f64 = 240.0;
/// Height of one lane.
const LANE: f64 = 30.0;
/// Height of a group heading.
const HEADING: f64 = 22.0;
/// Lanes drawn at most (the busiest hosts first).
const MAX_LANES: usize = 60;
/// Arrows drawn at most.
const MAX_EDGES: usize = 150;

/// Left end of the time axis.
const AXIS_START: f64 = LABELS + 24.0;
/// Right end of the time axis.
const AXIS_END: f64 = WIDTH - 40.0;

/// Renders `s` with its hosts placed by `zones`.
pub fn render_story(s: &Story, zones: &Zones) -> String {
    let lanes = Lanes::of(s, zones);
    let (axis, arrows) = place_arrows(s, &lanes);
    let mut svg = String::new();
    write_header(&mut svg, s, lanes.height);
    write_time_axis(&mut svg, &axis, &lanes);
    write_lanes(&mut svg, &lanes);
    for arrow in &arrows {
        write_arrow(&mut svg, s, &lanes, arrow);
    }
    write_legend(&mut svg, lanes.height);
    svg
}

/// The lanes of a drawing, top to bottom, with their group headings.
struct Lanes<'a> {
    /// Hosts in lane order.
    nodes: Vec<&'a StoryNode>,
    /// The y of every lane's line, by address.
    lane_y: Vec<(&'a str, f64)>,
    /// Group headings: top edge and text.
    headings: Vec<(f64, String)>,
    /// Top of the first heading (below the title and reasons).
    top: f64,
    /// Height of the whole drawing.
    height: f64,
}

impl<'a> Lanes<'a> {
    /// Chooses, groups and orders the lanes of `s`, and places them below its reasons.
    fn of(s: &'a Story, zones: &Zones) -> Self {
        let top = 34.0 + 16.0 * s.reasons.len().min(4) as f64 + 30.0;
        let lanes = ordered_lanes(s, zones);
        // y of every lane, with a heading row before each new group.
        let mut y = top;
        let mut lane_y: Vec<(&str, f64)> = Vec::new();
        let mut headings: Vec<(f64, String)> = Vec::new();
        let mut last_group: Option<&str> = None;
        for (heading, _, node) in &lanes {
            if last_group != Some(heading.as_str()) {
                headings.push((y, heading.clone()));
                y += HEADING;
                last_group = Some(heading);
            }
            lane_y.push((&node.ip, y + LANE / 2.0));
            y += LANE;
        }
        Lanes {
            nodes: lanes.iter().map(|(_, _, n)| *n).collect(),
            lane_y,
            headings,
            top,
            height: y + 50.0,
        }
    }

    /// The y of the lane of `ip`, when it has one.
    fn y_of(&self, ip: &str) -> Option<f64> {
        self.lane_y.iter().find(|(i, _)| *i == ip).map(|(_, y)| *y)
    }
}

/// Hosts that carry an edge first (by alert volume), then the rest, at most [`MAX_LANES`];
/// then grouped and ordered, each with its group's heading and sort key.
fn ordered_lanes<'a>(s: &'a Story, zones: &Zones) -> Vec<(String, (u8, i32), &'a StoryNode)> {
    let mut weight: std::collections::HashMap<&str, u64> = Default::default();
    for e in &s.edges {
        *weight.entry(&e.src).or_default() += u64::from(e.alerts);
        *weight.entry(&e.dst).or_default() += u64::from(e.alerts);
    }
    let mut chosen: Vec<&StoryNode> = s.nodes.iter().collect();
    chosen.sort_by_key(|n| std::cmp::Reverse(weight.get(n.ip.as_str()).copied().unwrap_or(0)));
    chosen.truncate(MAX_LANES);
    let mut lanes: Vec<(String, (u8, i32), &StoryNode)> = chosen
        .into_iter()
        .map(|n| {
            let (heading, key) = lane_group(n, zones);
            (heading, key, n)
        })
        .collect();
    lanes.sort_by(|a, b| (a.1, &a.0, &a.2.ip).cmp(&(b.1, &b.0, &b.2.ip)));
    lanes
}

/// The time axis: the first alert drawn and the end of the axis (unix milliseconds).
struct TimeAxis {
    /// Time at the left end.
    t0: i64,
    /// Time at the right end.
    t1: i64,
}

impl TimeAxis {
    /// The x of time `t`.
    fn x_of(&self, t: i64) -> f64 {
        AXIS_START + (AXIS_END - AXIS_START) * (t - self.t0) as f64 / (self.t1 - self.t0) as f64
    }
}

/// A communication pair drawn as an arrow.
struct Arrow<'a> {
    /// The pair.
    edge: &'a StoryEdge,
    /// Its first alert (unix milliseconds).
    time: i64,
    /// Where it is drawn.
    x: f64,
}

/// The pairs with a known time whose hosts both have a lane, in time order, at most
/// [`MAX_EDGES`], placed on a time axis over their first alerts.
fn place_arrows<'a>(s: &'a Story, lanes: &Lanes<'_>) -> (TimeAxis, Vec<Arrow<'a>>) {
    let mut edges: Vec<(&StoryEdge, i64)> = s
        .edges
        .iter()
        .filter_map(|e| Some((e, millis(&e.first_seen)?)))
        .filter(|(e, _)| lanes.y_of(&e.src).is_some() && lanes.y_of(&e.dst).is_some())
        .collect();
    edges.sort_by_key(|(e, t)| (*t, e.src.clone(), e.dst.clone()));
    edges.truncate(MAX_EDGES);
    let t0 = edges.first().map_or(0, |e| e.1);
    let t1 = edges.last().map_or(t0, |e| e.1).max(t0 + 60_000);
    let axis = TimeAxis { t0, t1 };
    let xs = spread_apart(edges.iter().map(|(_, t)| axis.x_of(*t)));
    let arrows = edges
        .into_iter()
        .zip(xs)
        .map(|((edge, time), x)| Arrow { edge, time, x })
        .collect();
    (axis, arrows)
}

/// Arrows at nearly the same time spread apart so each stays clickable (then squeezed back
/// onto the axis when that pushed the last one past its end).
fn spread_apart(at: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut xs: Vec<f64> = Vec::with_capacity(at.size_hint().0);
    for x in at {
        let x = x.max(xs.last().map_or(f64::MIN, |p| p + 7.0));
        xs.push(x);
    }
    if let Some(&last) = xs.last() {
        if last > AXIS_END {
            let scale = (AXIS_END - AXIS_START) / (last - AXIS_START).max(1.0);
            for x in &mut xs {
                *x = AXIS_START + (*x - AXIS_START) * scale;
            }
        }
    }
    xs
}

/// Writes the opening of the SVG, the title line and the first reasons.
fn write_header(svg: &mut String, s: &Story, height: f64) {
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="story" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12" role="group" aria-label="Alert story: score {score:.2}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker><marker id="arrow-path" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b00020"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="12" y="22" font-size="15" font-weight="bold" fill="#111">{rank}score {score:.2}, {alerts} alert(s), {nodes} host(s), longest path {hops} hop(s){ot}</text>
"##,
        // Rows written by the stream carry no rank (0): only a ranked batch run has one.
        rank = if s.rank > 0 {
            format!("Rank {}: ", s.rank)
        } else {
            String::new()
        },
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
            42.0 + 16.0 * i as f64,
            escape_html(reason)
        );
    }
}

/// Writes the time axis above the lanes, with five ticks and their grid lines.
fn write_time_axis(svg: &mut String, axis: &TimeAxis, lanes: &Lanes<'_>) {
    let (x0, x1) = (AXIS_START, AXIS_END);
    let axis_y = lanes.top - 12.0;
    let _ = writeln!(
        svg,
        r##"<line x1="{x0}" y1="{axis_y}" x2="{x1}" y2="{axis_y}" stroke="#555"/><text x="{x1}" y="{ay}" text-anchor="end" fill="#333">time (UTC) →</text>"##,
        ay = axis_y - 6.0
    );
    let TimeAxis { t0, t1 } = *axis;
    for k in 0..=4 {
        let t = t0 + (t1 - t0) * k / 4;
        let x = axis.x_of(t);
        let label = chrono::DateTime::from_timestamp_millis(t)
            .map(|d| d.format("%d %H:%M").to_string())
            .unwrap_or_default();
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{axis_y}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#333" font-size="11">{label}</text>"##,
            lanes.height - 44.0,
            axis_y - 6.0 - if k == 4 { 12.0 } else { 0.0 },
        );
    }
}

/// Writes the group headings, then every lane: its host's mark, name and line.
fn write_lanes(svg: &mut String, lanes: &Lanes<'_>) {
    let (x0, x1) = (AXIS_START, AXIS_END);
    for (hy, heading) in &lanes.headings {
        let _ = writeln!(
            svg,
            r##"<rect x="0" y="{hy}" width="{WIDTH}" height="{HEADING}" fill="#eef1f5"/><text x="12" y="{ty}" font-weight="bold" fill="#1f2937">{h}</text>"##,
            ty = hy + 15.0,
            h = escape_html(heading)
        );
    }
    for node in &lanes.nodes {
        let Some(ly) = lanes.y_of(&node.ip) else {
            continue;
        };
        let name = match &node.host {
            Some(h) => format!("{} ({h})", node.ip),
            None => node.ip.clone(),
        };
        let shape = if node.domain.contains("OT") {
            format!(
                r##"<rect x="14" y="{:.1}" width="10" height="10" fill="#b45309"/>"##,
                ly - 5.0
            )
        } else {
            format!(r##"<circle cx="19" cy="{ly:.1}" r="5" fill="#1d4ed8"/>"##)
        };
        let _ = writeln!(
            svg,
            r##"<g class="lane">{shape}<text x="30" y="{:.1}" fill="#111">{}</text><line x1="{x0}" y1="{ly:.1}" x2="{x1}" y2="{ly:.1}" stroke="#c7cdd4" stroke-dasharray="3 3"/></g>"##,
            ly + 4.0,
            escape_html(&name)
        );
    }
}

/// Writes one clickable arrow: from its source lane to its destination lane (a diamond for
/// host-only alerts), red when it is a hop of the row's path, with its label.
fn write_arrow(svg: &mut String, s: &Story, lanes: &Lanes<'_>, arrow: &Arrow<'_>) {
    let Arrow { edge: e, time, x } = *arrow;
    let (Some(ya), Some(yb)) = (lanes.y_of(&e.src), lanes.y_of(&e.dst)) else {
        return;
    };
    let (label, describe) = arrow_text(e, time);
    let path = s.path.windows(2).any(|w| w[0] == e.src && w[1] == e.dst);
    let (colour, marker, width) = if path {
        ("#b00020", "arrow-path", 2.5)
    } else {
        ("#333333", "arrow", 1.4)
    };
    let _ = write!(
        svg,
        r##"<g class="edge{cls}" tabindex="0" role="button" data-src="{src}" data-dst="{dst}" aria-label="{desc}"><title>{desc}</title>"##,
        cls = if path { " on-path" } else { "" },
        src = escape_html(&e.src),
        dst = escape_html(&e.dst),
        desc = escape_html(&describe),
    );
    if e.src == e.dst {
        let _ = write!(
            svg,
            r##"<path d="M{x:.1},{a:.1} l6,6 l-6,6 l-6,-6 z" fill="{colour}"/><rect x="{rx:.1}" y="{ry:.1}" width="16" height="20" fill="transparent"/>"##,
            a = ya - 6.0,
            rx = x - 8.0,
            ry = ya - 10.0,
        );
    } else {
        let end = if yb > ya { yb - 6.0 } else { yb + 6.0 };
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{ya:.1}" x2="{x:.1}" y2="{end:.1}" stroke="transparent" stroke-width="12"/><line x1="{x:.1}" y1="{ya:.1}" x2="{x:.1}" y2="{end:.1}" stroke="{colour}" stroke-width="{width}" marker-end="url(#{marker})"/><circle cx="{x:.1}" cy="{ya:.1}" r="3" fill="{colour}"/>"##,
        );
    }
    // Labels go right of their arrow, or left of it near the right edge.
    let (tx, anchor) = if x > AXIS_END - 160.0 {
        (x - 6.0, "end")
    } else {
        (x + 4.0, "start")
    };
    let _ = writeln!(
        svg,
        r##"<text x="{tx:.1}" y="{ty:.1}" fill="{colour}" font-size="10" text-anchor="{anchor}">{l}</text></g>"##,
        ty = (ya + yb) / 2.0 - 2.0,
        l = escape_html(&label),
    );
}

/// An arrow's label (count, protocols, tactics) and its description for the tooltip and
/// screen readers (unescaped).
fn arrow_text(e: &StoryEdge, time: i64) -> (String, String) {
    let when = chrono::DateTime::from_timestamp_millis(time)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let what: Vec<&str> = e
        .protocols
        .iter()
        .chain(&e.tactics)
        .map(String::as_str)
        .collect();
    let label = format!("{}× {}", e.alerts, what.join(" · "));
    let describe = format!(
        "{} → {}: {} alert(s) from {when} UTC; {}",
        e.src,
        e.dst,
        e.alerts,
        what.join(", ")
    );
    (label, describe)
}

/// Writes the legend at the foot and closes the SVG.
fn write_legend(svg: &mut String, height: f64) {
    let _ = writeln!(
        svg,
        r##"<text x="12" y="{}" fill="#333"><tspan fill="#1d4ed8">●</tspan> IT host  <tspan fill="#b45309">■</tspan> OT host  <tspan fill="#b00020">→</tspan> the row's path  ◆ alerts about one host; an arrow sits at its pair's first alert</text></svg>"##,
        height - 14.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story() -> Story {
        serde_json::from_value(serde_json::json!({
            "SubgraphId": "s1", "Rank": 1, "Score": 9.5, "AlertCount": 7, "NodeCount": 3,
            "LongestPath": 2, "CrossesItOt": true,
            "Path": ["10.0.0.1", "10.0.0.2", "192.168.10.100"],
            "Nodes": [
                {"Ip": "10.0.0.1", "Domain": "IT", "Host": "<script>alert(1)</script>"},
                {"Ip": "10.0.0.2", "Domain": "IT"},
                {"Ip": "192.168.10.100", "Domain": "OT"}
            ],
            "Edges": [
                {"Src": "10.0.0.1", "Dst": "10.0.0.2", "FirstSeen": "2026-11-21T08:00:00Z", "Alerts": 3, "Protocols": ["SMB"], "Tactics": ["LateralMovement"]},
                {"Src": "10.0.0.2", "Dst": "192.168.10.100", "FirstSeen": "2026-11-21T09:30:00Z", "Alerts": 2, "Protocols": ["S7\" onload=\"x"], "Tactics": []},
                {"Src": "10.0.0.2", "Dst": "10.0.0.2", "FirstSeen": "2026-11-21T08:10:00Z", "Alerts": 2, "Protocols": [], "Tactics": ["Execution"]}
            ],
            "Reasons": ["campaign from <b>x</b>"]
        }))
        .unwrap()
    }

    fn zones() -> Zones {
        serde_json::from_value(serde_json::json!([
            {"cidr": "10.0.0.0/8", "zone": "IT", "level": "L4", "name": "Enterprise"},
            {"cidr": "192.168.10.96/28", "zone": "OT", "level": "L1", "name": "PLCs"},
            {"cidr": "192.168.10.100", "zone": "OT", "level": "L1", "name": "Line 1 PLC"}
        ]))
        .unwrap()
    }

    #[test]
    fn the_most_specific_zone_places_a_host() {
        let z = zones();
        assert_eq!(
            z.place("10.9.9.9").unwrap().name.as_deref(),
            Some("Enterprise")
        );
        assert_eq!(
            z.place("192.168.10.100").unwrap().name.as_deref(),
            Some("Line 1 PLC")
        );
        assert_eq!(
            z.place("192.168.10.101").unwrap().name.as_deref(),
            Some("PLCs")
        );
        assert!(z.place("192.168.10.95").is_none());
        assert!(z.place("2001:db8::1").is_none());
        assert!(z.place("not an ip").is_none());
    }

    #[test]
    fn lanes_run_it_above_ot_and_arrows_in_time_order() {
        let svg = render_story(&story(), &zones());
        let it = svg.find("IT · Purdue L4 · Enterprise").unwrap();
        let ot = svg.find("OT · Purdue L1 · Line 1 PLC").unwrap();
        assert!(it < ot, "IT group above OT");
        // Three clickable edges, the first hop before the second (x grows with time).
        assert_eq!(svg.matches(r#"class="edge"#).count(), 3);
        let x_of = |src: &str, dst: &str| -> f64 {
            let at = svg
                .find(&format!(r#"data-src="{src}" data-dst="{dst}""#))
                .unwrap();
            let line = &svg[at..];
            let x = line
                .split("x1=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            x.parse().unwrap()
        };
        assert!(x_of("10.0.0.1", "10.0.0.2") < x_of("10.0.0.2", "192.168.10.100"));
        // Both hops of the path are red.
        assert_eq!(svg.matches("edge on-path").count(), 2);
        assert!(svg.contains("3× SMB · LateralMovement"));
    }

    /// The fixture story drawn byte for byte as before `render_story` was cut into steps
    /// (`tests/pinned/story.svg`).
    #[test]
    fn the_fixture_story_draws_as_pinned() {
        assert_eq!(
            render_story(&story(), &zones()),
            include_str!("../tests/pinned/story.svg")
        );
    }

    #[test]
    fn attacker_text_is_escaped() {
        let svg = render_story(&story(), &Zones::default());
        assert!(!svg.contains("<script>"));
        assert!(!svg.contains("<b>"));
        assert!(!svg.contains("\" onload"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("IT · level not known"));
    }
}
