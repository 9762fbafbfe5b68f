//! Text tables of API answers, as the operator CLI prints them
//! (`ringleader ring|plan|members|status|lookup KEY|ranges ID|preview FILE`).
//!
//! Pure functions from a response to a `String` (ending in a newline), so
//! the CLI stays a thin shell and the output is tested here. Columns are
//! separated by two spaces and aligned to their widest cell; numbers are
//! right-aligned; fractions print as percentages with two decimals; tokens
//! print in full, so they can be copied into a lookup or a shard's config.

use crate::api::{
    FlowView, LookupResponse, MemberRangesResponse, MemberState, MemberView, MoveView,
    OutsideReason, PlanResponse, PreviewResponse, RangeView, RingResponse, StatusResponse,
    SummaryView,
};
use ringleader_ring::TokenRange;
use std::collections::BTreeMap;
use std::fmt::Write;

fn settings_line(s: &crate::api::SettingsView) -> String {
    let mut line = format!(
        "rf {}, {} tokens, {} per member, {}, mode {}",
        s.rf,
        s.strategy,
        s.tokens_per_member,
        if s.zone_aware {
            "zone-aware"
        } else {
            "not zone-aware"
        },
        s.mode
    );
    if s.mode == "ack" && (s.max_moves_per_member.is_some() || s.max_moves.is_some()) {
        let limit = |n: Option<u32>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        let _ = write!(
            line,
            ", at most {} moves per member and {} in all at once",
            limit(s.max_moves_per_member),
            limit(s.max_moves)
        );
    }
    line
}

/// `ringleader ring`: epoch, settings and balance, then one row per member.
pub fn ring(response: &RingResponse) -> String {
    let mut fields = vec![
        ("epoch", response.epoch.to_string()),
        ("settings", settings_line(&response.settings)),
        (
            "balance",
            format!("{:.3} (max load / target)", response.balance),
        ),
        (
            "plan",
            if response.plan_in_flight {
                "in flight".to_owned()
            } else {
                "none".to_owned()
            },
        ),
    ];
    if let Some(leader) = &response.leader {
        fields.push(("leader", leader.clone()));
    }
    let mut out = key_values(&fields);
    out.push('\n');
    out.push_str(&ownership_table(&response.members));
    out
}

/// `ringleader members`: ids, states, zones, weights and addresses.
pub fn members(response: &RingResponse) -> String {
    let mut table = Table::new(&[
        ("MEMBER", Align::Left),
        ("STATE", Align::Left),
        ("ZONE", Align::Left),
        ("WEIGHT", Align::Right),
        ("ADDRESSES", Align::Left),
    ]);
    for m in &response.members {
        table.row(vec![
            m.id.clone(),
            m.state.as_str().to_owned(),
            zone(m),
            m.weight.to_string(),
            addresses(m),
        ]);
    }
    table.render()
}

/// `ringleader plan`: "no plan pending", or the plan's summary, its moves and
/// each member's inbound and outbound share.
pub fn plan(response: &PlanResponse) -> String {
    let Some(plan) = &response.plan else {
        return "no plan pending\n".to_owned();
    };
    let mut out = format!(
        "plan {}: epoch {} -> {}, {}\n",
        plan.id, plan.from_epoch, plan.to_epoch, plan.state
    );
    out.push_str(&summary_line(&plan.summary));
    if !plan.cleanups.is_empty() {
        let members: std::collections::BTreeSet<&str> =
            plan.cleanups.iter().map(|c| c.member.as_str()).collect();
        let _ = writeln!(
            out,
            "cleanups: {} after commit, on {}",
            count(plan.cleanups.len(), "range"),
            count(members.len(), "member")
        );
    }
    out.push('\n');
    out.push_str(&moves_table(&plan.moves));
    out.push('\n');
    out.push_str(&flows_table(&plan.summary.members));
    out
}

/// `ringleader preview FILE`: the ring the member set would make, and the
/// moves it would take to get there.
pub fn preview(response: &PreviewResponse) -> String {
    let mut out = format!(
        "preview from epoch {}: balance {:.3} (max load / target)\n",
        response.from_epoch, response.balance
    );
    out.push_str(&summary_line(&response.summary));
    out.push('\n');
    out.push_str(&ownership_table(&response.members));
    out.push('\n');
    out.push_str(&moves_table(&response.moves));
    out.push('\n');
    out.push_str(&flows_table(&response.summary.members));
    out
}

/// `ringleader lookup KEY`: where a key lives.
pub fn lookup(response: &LookupResponse) -> String {
    key_values(&[
        ("key", response.key.clone()),
        ("token", response.token.clone()),
        ("owner", response.owner.clone()),
        ("replicas", response.replicas.join(", ")),
        (
            "range",
            format!("({}, {}]", response.range.start, response.range.end),
        ),
        ("epoch", response.epoch.to_string()),
    ])
}

/// `GET /v1/members/{id}/ranges`: what a member owns and replicates, what it
/// is receiving and handing off, and what it may drop.
pub fn member_ranges(response: &MemberRangesResponse) -> String {
    // With rf 1 (or a single member) a member replicates exactly what it
    // owns: say so once instead of listing every range twice.
    let same = response.replicates == response.owns;
    let mut out = key_values(&[
        ("member", response.member.clone()),
        ("state", response.state.as_str().to_owned()),
        ("epoch", response.epoch.to_string()),
        ("owns", ranges_figure(&response.owns)),
        (
            "replicates",
            if same {
                "the ranges it owns (no other replicas)".to_owned()
            } else {
                ranges_figure(&response.replicates)
            },
        ),
        ("receiving", count(response.receiving.len(), "move")),
        ("handing off", count(response.handing_off.len(), "move")),
        ("cleanups", ranges_figure(&response.cleanups)),
    ]);
    let mut table = Table::new(&[
        ("WHAT", Align::Left),
        ("RANGE", Align::Left),
        ("SHARE(%)", Align::Right),
        ("MOVE", Align::Left),
    ]);
    let none = Vec::new();
    let plain = [
        ("owns", &response.owns),
        (
            "replicates",
            if same { &none } else { &response.replicates },
        ),
        ("cleanup", &response.cleanups),
    ];
    for (what, ranges) in plain {
        for r in ranges {
            table.row(vec![what.into(), range(r), share(r), "-".into()]);
        }
    }
    for m in &response.receiving {
        let detail = format!("{} from {} ({})", m.id, m.from, m.state);
        table.row(vec![
            "receiving".into(),
            range(&m.range),
            share(&m.range),
            detail,
        ]);
    }
    for m in &response.handing_off {
        let detail = format!("{} to {} ({})", m.id, m.to, m.state);
        table.row(vec![
            "handing off".into(),
            range(&m.range),
            share(&m.range),
            detail,
        ]);
    }
    if !table.rows.is_empty() {
        out.push('\n');
        out.push_str(&table.render());
    }
    out
}

/// `ringleader status`: one screen, like `nodetool status`: the ring's
/// figures, the plan's progress and age, every member with its state (a
/// down member's grace left), and the endpoints the source sees that the
/// ring doesn't have, with why.
pub fn status(response: &StatusResponse) -> String {
    let mut fields = vec![
        ("epoch", response.epoch.to_string()),
        ("settings", settings_line(&response.settings)),
        (
            "balance",
            format!("{:.3} (max load / target)", response.balance),
        ),
        (
            "source",
            match &response.source_detail {
                Some(detail) => format!("{} ({detail})", response.source),
                None => response.source.to_string(),
            },
        ),
    ];
    if let Some(leader) = &response.leader {
        fields.push(("leader", leader.clone()));
    }
    match &response.plan {
        None => fields.push((
            "plan",
            match response.planned_in_seconds {
                Some(s) => format!("none; a membership change is planned in {}", duration(s)),
                None => "none".to_owned(),
            },
        )),
        Some(p) => {
            let mut line = format!(
                "{}: epoch {} -> {}, {}, {} of {} moves done",
                p.id, p.from_epoch, p.to_epoch, p.state, p.done, p.summary.moves
            );
            let open: Vec<String> = p
                .summary
                .states
                .iter()
                .filter(|(state, n)| **n > 0 && state.as_str() != "done")
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            if !open.is_empty() {
                let _ = write!(line, " ({})", open.join(", "));
            }
            fields.push(("plan", line));
            fields.push((
                "moved",
                format!(
                    "{}% of replicas (ideal {}%)",
                    percent(p.summary.moved_fraction),
                    percent(p.summary.ideal_fraction)
                ),
            ));
            let age = match (&p.created_at, p.age_seconds) {
                (Some(at), Some(age)) => format!("made {at}, {} ago", duration(age)),
                _ => "unknown (made by an older build)".to_owned(),
            };
            let idle = p
                .idle_seconds
                .map(|s| format!("; last change {} ago", duration(s)))
                .unwrap_or_default();
            fields.push(("plan age", format!("{age}{idle}")));
        }
    }
    let mut out = key_values(&fields);
    out.push('\n');
    let mut table = Table::new(&[
        ("MEMBER", Align::Left),
        ("STATE", Align::Left),
        ("ZONE", Align::Left),
        ("TOKENS", Align::Right),
        ("OWNS(%)", Align::Right),
        ("REPLICAS(%)", Align::Right),
        ("WEIGHT", Align::Right),
        ("ADDRESSES", Align::Left),
    ]);
    let mut rows: Vec<_> = response.members.iter().collect();
    rows.sort_by(|a, b| natural_order(&a.member.id, &b.member.id));
    for row in rows {
        let m = &row.member;
        let state = match (m.state, row.grace_left_seconds) {
            (MemberState::Down, Some(left)) => format!("down, leaves in {}", duration(left)),
            (state, _) => state.as_str().to_owned(),
        };
        table.row(vec![
            m.id.clone(),
            state,
            zone(m),
            m.tokens.to_string(),
            percent(m.ownership),
            percent(m.replica_ownership),
            m.weight.to_string(),
            addresses(m),
        ]);
    }
    out.push_str(&table.render());
    out.push('\n');
    if response.outside.is_empty() {
        out.push_str("outside the ring: none (the ring has every ready endpoint)\n");
        return out;
    }
    let _ = writeln!(
        out,
        "outside the ring: {}",
        count(response.outside.len(), "endpoint")
    );
    let mut table = Table::new(&[
        ("ENDPOINT", Align::Left),
        ("WHY", Align::Left),
        ("ZONE", Align::Left),
        ("ADDRESSES", Align::Left),
    ]);
    let mut outside: Vec<_> = response.outside.iter().collect();
    outside.sort_by(|a, b| natural_order(&a.id, &b.id));
    for e in outside {
        let why = match e.reason {
            OutsideReason::NotReady => "not ready: joins once ready".to_owned(),
            OutsideReason::Terminating => "terminating: will not join".to_owned(),
            OutsideReason::Settling => match e.planned_in_seconds {
                Some(s) => format!("settling: planned in {}", duration(s)),
                None => "settling".to_owned(),
            },
            OutsideReason::Joining => "joining: receiving its ranges in the plan".to_owned(),
            OutsideReason::Waiting => "waiting: ready, not planned yet (see the log)".to_owned(),
        };
        table.row(vec![
            e.id.clone(),
            why,
            e.zone.clone().unwrap_or_else(|| "-".to_owned()),
            if e.addresses.is_empty() {
                "-".to_owned()
            } else {
                e.addresses.join(",")
            },
        ]);
    }
    out.push_str(&table.render());
    out
}

/// The members table of `ring` and `preview`.
fn ownership_table(members: &[MemberView]) -> String {
    let mut table = Table::new(&[
        ("MEMBER", Align::Left),
        ("STATE", Align::Left),
        ("ZONE", Align::Left),
        ("ADDRESSES", Align::Left),
        ("TOKENS", Align::Right),
        ("OWNERSHIP(%)", Align::Right),
        ("REPLICAS(%)", Align::Right),
    ]);
    for m in members {
        table.row(vec![
            m.id.clone(),
            m.state.as_str().to_owned(),
            zone(m),
            addresses(m),
            m.tokens.to_string(),
            percent(m.ownership),
            percent(m.replica_ownership),
        ]);
    }
    table.render()
}

fn moves_table(moves: &[MoveView]) -> String {
    if moves.is_empty() {
        return "no moves\n".to_owned();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("RANGE", Align::Left),
        ("FROM", Align::Left),
        ("TO", Align::Left),
        ("STATE", Align::Left),
    ]);
    for m in moves {
        table.row(vec![
            m.id.clone(),
            range(&m.range),
            m.from.clone(),
            m.to.clone(),
            m.state.clone(),
        ]);
    }
    table.render()
}

fn flows_table(flows: &BTreeMap<String, FlowView>) -> String {
    let mut table = Table::new(&[
        ("MEMBER", Align::Left),
        ("IN(%)", Align::Right),
        ("OUT(%)", Align::Right),
    ]);
    for (member, flow) in flows {
        table.row(vec![
            member.clone(),
            percent(flow.inbound),
            percent(flow.outbound),
        ]);
    }
    table.render()
}

/// "moved 25.00% of replicas (ideal 25.00%); 16 moves: 4 done, 12 pending".
fn summary_line(summary: &SummaryView) -> String {
    let mut line = format!(
        "moved {}% of replicas (ideal {}%); {}",
        percent(summary.moved_fraction),
        percent(summary.ideal_fraction),
        count(summary.moves, "move")
    );
    let states: Vec<String> = summary
        .states
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    if !states.is_empty() {
        line.push_str(": ");
        line.push_str(&states.join(", "));
    }
    if let Some(waves) = summary.waves.filter(|&w| w > 0) {
        // A simulation with moves of equal length: an order of magnitude
        // for operators, not a promise.
        let _ = write!(line, "; about {} at the pace", count(waves, "wave"));
    }
    line.push('\n');
    line
}

/// `label: value` lines, values aligned.
fn key_values(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in fields {
        let _ = writeln!(out, "{:<width$} {value}", format!("{key}:"));
    }
    out
}

fn percent(fraction: f64) -> String {
    // `+ 0.0` turns -0.0 (an empty f64 sum) into 0.0, which prints unsigned.
    format!("{:.2}", fraction * 100.0 + 0.0)
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn zone(m: &MemberView) -> String {
    m.zone.clone().unwrap_or_else(|| "-".to_owned())
}

fn addresses(m: &MemberView) -> String {
    if m.addresses.is_empty() {
        "-".to_owned()
    } else {
        m.addresses.join(",")
    }
}

fn parse_range(r: &RangeView) -> Option<TokenRange> {
    let (start, end) = r.parse()?;
    Some(TokenRange::new(start, end))
}

/// "3 ranges, 12.50% of the token space".
fn ranges_figure(ranges: &[RangeView]) -> String {
    let total: f64 = ranges
        .iter()
        .filter_map(parse_range)
        .map(|r| r.fraction())
        .sum();
    format!(
        "{}, {}% of the token space",
        count(ranges.len(), "range"),
        percent(total)
    )
}

fn share(r: &RangeView) -> String {
    parse_range(r).map_or_else(|| "?".to_owned(), |r| percent(r.fraction()))
}

/// Ids in natural order, as a StatefulSet counts: `db-2` before `db-10`.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(id: &str) -> (&str, Option<u64>) {
        let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, number) = id.split_at(id.len() - digits);
        (stem, number.parse().ok())
    }
    split(a).cmp(&split(b)).then_with(|| a.cmp(b))
}

/// `(start, end]`, tokens in full.
fn range(r: &RangeView) -> String {
    format!("({}, {}]", r.start, r.end)
}

/// Seconds as `42s`, `3m12s`, `2h05m`, `3d04h`.
fn duration(seconds: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0).round() as u64
    } else {
        0
    };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table whose columns are as wide as their widest cell.
struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[(&'static str, Align)]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| (*h).to_owned()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                match self.headers[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        CleanupView, OutsideEndpoint, PlanView, SettingsView, SourceState, StatusMember, StatusPlan,
    };

    fn member(id: &str, state: MemberState, zone: Option<&str>, own: f64, rep: f64) -> MemberView {
        MemberView {
            id: id.into(),
            state,
            zone: zone.map(Into::into),
            addresses: vec![format!("10.0.0.{}", id.len())],
            weight: 1,
            ownership: own,
            replica_ownership: rep,
            tokens: if own > 0.0 { 16 } else { 0 },
            grace_ends_at: None,
        }
    }

    fn ring_response() -> RingResponse {
        RingResponse {
            epoch: 7,
            settings: SettingsView {
                rf: 2,
                strategy: "balanced".into(),
                tokens_per_member: 16,
                zone_aware: true,
                mode: "ack".into(),
                max_moves_per_member: None,
                max_moves: None,
            },
            members: vec![
                member("db-0", MemberState::Up, Some("a"), 0.3334, 0.3333),
                member("db-10", MemberState::Down, None, 0.6666, 0.6667),
                MemberView {
                    addresses: vec![],
                    ..member("db-2", MemberState::Joining, Some("b"), 0.0, 0.0)
                },
            ],
            balance: 1.0004,
            tokens: None,
            compact_tokens: None,
            plan_in_flight: false,
            leader: Some("coord-1".into()),
        }
    }

    fn range_view(start: u64, end: u64) -> RangeView {
        RangeView {
            start: start.to_string(),
            end: end.to_string(),
        }
    }

    fn move_view(id: &str, start: u64, end: u64, from: &str, to: &str, state: &str) -> MoveView {
        MoveView {
            id: id.into(),
            range: range_view(start, end),
            from: from.into(),
            to: to.into(),
            state: state.into(),
        }
    }

    fn summary() -> SummaryView {
        SummaryView {
            moved_fraction: 0.25,
            ideal_fraction: 0.2,
            moves: 2,
            states: [("done".to_owned(), 1), ("pending".to_owned(), 1)].into(),
            members: [
                (
                    "db-0".to_owned(),
                    FlowView {
                        inbound: 0.0,
                        outbound: 0.25,
                    },
                ),
                (
                    "db-3".to_owned(),
                    FlowView {
                        inbound: 0.25,
                        outbound: 0.0,
                    },
                ),
            ]
            .into(),
            waves: None,
        }
    }

    #[test]
    fn ring_prints_header_and_aligned_member_table() {
        let expected = "\
epoch:    7
settings: rf 2, balanced tokens, 16 per member, zone-aware, mode ack
balance:  1.000 (max load / target)
plan:     none
leader:   coord-1

MEMBER  STATE    ZONE  ADDRESSES  TOKENS  OWNERSHIP(%)  REPLICAS(%)
db-0    up       a     10.0.0.4       16         33.34        33.33
db-10   down     -     10.0.0.5       16         66.66        66.67
db-2    joining  b     -               0          0.00         0.00
";
        assert_eq!(ring(&ring_response()), expected);
    }

    #[test]
    fn members_lists_ids_states_and_addresses() {
        let expected = "\
MEMBER  STATE    ZONE  WEIGHT  ADDRESSES
db-0    up       a          1  10.0.0.4
db-10   down     -          1  10.0.0.5
db-2    joining  b          1  -
";
        assert_eq!(members(&ring_response()), expected);
    }

    #[test]
    fn the_summary_line_gives_the_expected_waves_and_the_settings_the_pace() {
        let mut s = summary();
        s.waves = Some(3);
        assert!(
            summary_line(&s).ends_with("; about 3 waves at the pace\n"),
            "{}",
            summary_line(&s)
        );
        let mut settings = ring_response().settings;
        settings.max_moves_per_member = Some(1);
        assert!(
            settings_line(&settings)
                .ends_with(", at most 1 moves per member and unlimited in all at once"),
            "{}",
            settings_line(&settings)
        );
    }

    #[test]
    fn no_plan_says_so() {
        assert_eq!(plan(&PlanResponse { plan: None }), "no plan pending\n");
    }

    #[test]
    fn plan_prints_summary_moves_and_flows() {
        let response = PlanResponse {
            plan: Some(PlanView {
                id: "p-8".into(),
                from_epoch: 7,
                to_epoch: 8,
                state: "in_progress".into(),
                moves: vec![
                    move_view("m-1", 0, 4_611_686_018_427_387_904, "db-0", "db-3", "done"),
                    move_view(
                        "m-22",
                        18_446_744_073_709_551_615,
                        1000,
                        "db-0",
                        "db-3",
                        "pending",
                    ),
                ],
                summary: summary(),
                cleanups: vec![CleanupView {
                    member: "db-0".into(),
                    range: range_view(0, 1000),
                }],
                members: vec!["db-0".into(), "db-3".into()],
                created_at: Some("2026-11-28T07:00:00Z".into()),
                changed_at: None,
                progress: Default::default(),
            }),
        };
        let expected = "\
plan p-8: epoch 7 -> 8, in_progress
moved 25.00% of replicas (ideal 20.00%); 2 moves: 1 done, 1 pending
cleanups: 1 range after commit, on 1 member

ID    RANGE                         FROM  TO    STATE
m-1   (0, 4611686018427387904]      db-0  db-3  done
m-22  (18446744073709551615, 1000]  db-0  db-3  pending

MEMBER  IN(%)  OUT(%)
db-0     0.00   25.00
db-3    25.00    0.00
";
        assert_eq!(plan(&response), expected);
    }

    #[test]
    fn preview_prints_ring_moves_and_flows() {
        let response = PreviewResponse {
            from_epoch: 7,
            members: vec![member("db-0", MemberState::Up, Some("a"), 1.0, 1.0)],
            balance: 1.0,
            moves: vec![],
            summary: SummaryView {
                moves: 0,
                moved_fraction: 0.0,
                ideal_fraction: 0.0,
                states: BTreeMap::new(),
                members: BTreeMap::new(),
                waves: None,
            },
        };
        let expected = "\
preview from epoch 7: balance 1.000 (max load / target)
moved 0.00% of replicas (ideal 0.00%); 0 moves

MEMBER  STATE  ZONE  ADDRESSES  TOKENS  OWNERSHIP(%)  REPLICAS(%)
db-0    up     a     10.0.0.4       16        100.00       100.00

no moves

MEMBER  IN(%)  OUT(%)
";
        assert_eq!(preview(&response), expected);
    }

    #[test]
    fn lookup_prints_key_values() {
        let response = LookupResponse {
            epoch: 7,
            key: "user:42".into(),
            token: "11400714819323198485".into(),
            owner: "db-1".into(),
            replicas: vec!["db-1".into(), "db-2".into()],
            range: range_view(11_000_000_000_000_000_000, 11_500_000_000_000_000_000),
        };
        let expected = "\
key:      user:42
token:    11400714819323198485
owner:    db-1
replicas: db-1, db-2
range:    (11000000000000000000, 11500000000000000000]
epoch:    7
";
        assert_eq!(lookup(&response), expected);
    }

    #[test]
    fn member_ranges_prints_figures_and_ranges() {
        let quarter = 1u64 << 62;
        let response = MemberRangesResponse {
            epoch: 7,
            member: "db-0".into(),
            state: MemberState::Up,
            owns: vec![range_view(0, quarter)],
            replicates: vec![range_view(0, quarter), range_view(quarter, 2 * quarter)],
            receiving: vec![move_view(
                "m-3",
                2 * quarter,
                3 * quarter,
                "db-1",
                "db-0",
                "pending",
            )],
            handing_off: vec![],
            cleanups: vec![],
        };
        let expected = "\
member:      db-0
state:       up
epoch:       7
owns:        1 range, 25.00% of the token space
replicates:  2 ranges, 50.00% of the token space
receiving:   1 move
handing off: 0 moves
cleanups:    0 ranges, 0.00% of the token space

WHAT        RANGE                                        SHARE(%)  MOVE
owns        (0, 4611686018427387904]                        25.00  -
replicates  (0, 4611686018427387904]                        25.00  -
replicates  (4611686018427387904, 9223372036854775808]      25.00  -
receiving   (9223372036854775808, 13835058055282163712]     25.00  m-3 from db-1 (pending)
";
        assert_eq!(member_ranges(&response), expected);
    }

    #[test]
    fn ranges_with_rf_1_lists_each_range_once() {
        let quarter = 1u64 << 62;
        let owned = vec![range_view(0, quarter), range_view(2 * quarter, 3 * quarter)];
        let response = MemberRangesResponse {
            epoch: 3,
            member: "db-0".into(),
            state: MemberState::Up,
            owns: owned.clone(),
            replicates: owned,
            receiving: vec![],
            handing_off: vec![],
            cleanups: vec![],
        };
        let expected = "\
member:      db-0
state:       up
epoch:       3
owns:        2 ranges, 50.00% of the token space
replicates:  the ranges it owns (no other replicas)
receiving:   0 moves
handing off: 0 moves
cleanups:    0 ranges, 0.00% of the token space

WHAT  RANGE                                        SHARE(%)  MOVE
owns  (0, 4611686018427387904]                        25.00  -
owns  (9223372036854775808, 13835058055282163712]     25.00  -
";
        assert_eq!(member_ranges(&response), expected);
    }

    fn status_response() -> StatusResponse {
        let ring = ring_response();
        let members = ring
            .members
            .into_iter()
            .map(|member| StatusMember {
                grace_left_seconds: (member.state == MemberState::Down).then_some(42.4),
                member,
            })
            .collect();
        StatusResponse {
            epoch: 7,
            settings: ring.settings,
            balance: 1.0004,
            members,
            outside: vec![
                OutsideEndpoint {
                    id: "db-5".into(),
                    reason: OutsideReason::NotReady,
                    zone: Some("a".into()),
                    addresses: vec!["10.0.0.9".into()],
                    planned_in_seconds: None,
                },
                OutsideEndpoint {
                    id: "db-6".into(),
                    reason: OutsideReason::Settling,
                    zone: None,
                    addresses: vec![],
                    planned_in_seconds: Some(3.2),
                },
            ],
            plan: Some(StatusPlan {
                id: "e7-abc".into(),
                from_epoch: 7,
                to_epoch: 8,
                state: "in_progress".into(),
                summary: summary(),
                done: 1,
                created_at: Some("2026-11-28T07:00:00Z".into()),
                changed_at: Some("2026-11-28T07:02:00Z".into()),
                age_seconds: Some(192.0),
                idle_seconds: Some(20.0),
            }),
            planned_in_seconds: None,
            source: SourceState::Synced,
            source_detail: None,
            leader: Some("coord-1".into()),
            now: "2026-11-28T07:03:12Z".into(),
        }
    }

    #[test]
    fn status_is_one_screen_with_plan_age_grace_left_and_endpoints_outside() {
        let expected = "\
epoch:    7
settings: rf 2, balanced tokens, 16 per member, zone-aware, mode ack
balance:  1.000 (max load / target)
source:   synced
leader:   coord-1
plan:     e7-abc: epoch 7 -> 8, in_progress, 1 of 2 moves done (1 pending)
moved:    25.00% of replicas (ideal 20.00%)
plan age: made 2026-11-28T07:00:00Z, 3m12s ago; last change 20s ago

MEMBER  STATE                ZONE  TOKENS  OWNS(%)  REPLICAS(%)  WEIGHT  ADDRESSES
db-0    up                   a         16    33.34        33.33       1  10.0.0.4
db-2    joining              b          0     0.00         0.00       1  -
db-10   down, leaves in 42s  -         16    66.66        66.67       1  10.0.0.5

outside the ring: 2 endpoints
ENDPOINT  WHY                          ZONE  ADDRESSES
db-5      not ready: joins once ready  a     10.0.0.9
db-6      settling: planned in 3s      -     -
";
        assert_eq!(status(&status_response()), expected);
    }

    #[test]
    fn status_without_plan_says_when_a_change_is_planned() {
        let mut response = status_response();
        response.plan = None;
        response.planned_in_seconds = Some(4.0);
        response.outside.clear();
        let text = status(&response);
        assert!(
            text.contains("plan:     none; a membership change is planned in 4s\n"),
            "{text}"
        );
        assert!(
            text.ends_with("outside the ring: none (the ring has every ready endpoint)\n"),
            "{text}"
        );
    }

    #[test]
    fn ids_sort_as_a_statefulset_counts() {
        let mut ids = vec!["db-10", "db-2", "cache", "db-1", "db-02", "db-"];
        ids.sort_by(|a, b| natural_order(a, b));
        assert_eq!(ids, ["cache", "db-", "db-1", "db-02", "db-2", "db-10"]);
    }

    #[test]
    fn durations_read_as_an_operator_writes_them() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.6), "1m00s");
        assert_eq!(duration(192.0), "3m12s");
        assert_eq!(duration(7500.0), "2h05m");
        assert_eq!(duration(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
        assert_eq!(duration(-5.0), "0s");
        assert_eq!(duration(f64::NAN), "0s");
    }
}
