//! Text tables of API answers, as the operator CLI prints them
//! (`ringleader ring|plan|members|lookup KEY|preview FILE`).
//!
//! Pure functions from a response to a `String` (ending in a newline), so
//! the CLI stays a thin shell and the output is tested here. Columns are
//! separated by two spaces and aligned to their widest cell; numbers are
//! right-aligned; fractions print as percentages with two decimals; tokens in
//! tables are abbreviated (`1.845e19`), the JSON output has them whole.

use crate::api::{
    FlowView, LookupResponse, MemberRangesResponse, MemberView, MoveView, PlanResponse,
    PreviewResponse, RangeView, RingResponse, SummaryView,
};
use ringleader_ring::TokenRange;
use std::collections::BTreeMap;
use std::fmt::Write;

/// `ringleader ring`: epoch, settings and balance, then one row per member.
pub fn ring(response: &RingResponse) -> String {
    let s = &response.settings;
    let mut fields = vec![
        ("epoch", response.epoch.to_string()),
        (
            "settings",
            format!(
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
            ),
        ),
        (
            "balance",
            format!("{:.3} (max/mean ownership)", response.balance),
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
        "preview from epoch {}: balance {:.3} (max/mean ownership)\n",
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
    let mut out = key_values(&[
        ("member", response.member.clone()),
        ("state", response.state.as_str().to_owned()),
        ("epoch", response.epoch.to_string()),
        ("owns", ranges_figure(&response.owns)),
        ("replicates", ranges_figure(&response.replicates)),
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
    let plain = [
        ("owns", &response.owns),
        ("replicates", &response.replicates),
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

/// The members table of `ring` and `preview`.
fn ownership_table(members: &[MemberView]) -> String {
    let mut table = Table::new(&[
        ("MEMBER", Align::Left),
        ("STATE", Align::Left),
        ("ZONE", Align::Left),
        ("ADDRESSES", Align::Left),
        ("OWNERSHIP(%)", Align::Right),
        ("REPLICAS(%)", Align::Right),
    ]);
    for m in members {
        table.row(vec![
            m.id.clone(),
            m.state.as_str().to_owned(),
            zone(m),
            addresses(m),
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

/// `(start, end]` with both tokens abbreviated.
fn range(r: &RangeView) -> String {
    format!("({}, {}]", abbreviate(&r.start), abbreviate(&r.end))
}

/// A token in at most 8 characters: as is below 10^8, else with 4
/// significant digits and an exponent (`18446744073709551615` → `1.845e19`).
fn abbreviate(token: &str) -> String {
    match token.parse::<u64>() {
        Ok(t) if t >= 100_000_000 => {
            let digits = t.to_string().len() as i32 - 1;
            let mantissa = t as f64 / 10f64.powi(digits);
            // Rounding may carry into a new digit (9.9996 → 10.000).
            if format!("{mantissa:.3}").starts_with("10") {
                format!("1.000e{}", digits + 1)
            } else {
                format!("{mantissa:.3}e{digits}")
            }
        }
        _ => token.to_owned(),
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
    use crate::api::{CleanupView, MemberState, PlanView, SettingsView};

    fn member(id: &str, state: MemberState, zone: Option<&str>, own: f64, rep: f64) -> MemberView {
        MemberView {
            id: id.into(),
            state,
            zone: zone.map(Into::into),
            addresses: vec![format!("10.0.0.{}", id.len())],
            weight: 1,
            ownership: own,
            replica_ownership: rep,
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
        }
    }

    #[test]
    fn ring_prints_header_and_aligned_member_table() {
        let expected = "\
epoch:    7
settings: rf 2, balanced tokens, 16 per member, zone-aware, mode ack
balance:  1.000 (max/mean ownership)
plan:     none
leader:   coord-1

MEMBER  STATE    ZONE  ADDRESSES  OWNERSHIP(%)  REPLICAS(%)
db-0    up       a     10.0.0.4          33.34        33.33
db-10   down     -     10.0.0.5          66.66        66.67
db-2    joining  b     -                  0.00         0.00
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
            }),
        };
        let expected = "\
plan p-8: epoch 7 -> 8, in_progress
moved 25.00% of replicas (ideal 20.00%); 2 moves: 1 done, 1 pending
cleanups: 1 range after commit, on 1 member

ID    RANGE             FROM  TO    STATE
m-1   (0, 4.612e18]     db-0  db-3  done
m-22  (1.845e19, 1000]  db-0  db-3  pending

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
            },
        };
        let expected = "\
preview from epoch 7: balance 1.000 (max/mean ownership)
moved 0.00% of replicas (ideal 0.00%); 0 moves

MEMBER  STATE  ZONE  ADDRESSES  OWNERSHIP(%)  REPLICAS(%)
db-0    up     a     10.0.0.4         100.00       100.00

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

WHAT        RANGE                 SHARE(%)  MOVE
owns        (0, 4.612e18]            25.00  -
replicates  (0, 4.612e18]            25.00  -
replicates  (4.612e18, 9.223e18]     25.00  -
receiving   (9.223e18, 1.384e19]     25.00  m-3 from db-1 (pending)
";
        assert_eq!(member_ranges(&response), expected);
    }

    #[test]
    fn tokens_abbreviate_to_four_significant_digits() {
        assert_eq!(abbreviate("0"), "0");
        assert_eq!(abbreviate("99999999"), "99999999");
        assert_eq!(abbreviate("100000000"), "1.000e8");
        assert_eq!(abbreviate("18446744073709551615"), "1.845e19");
        assert_eq!(abbreviate("9999900000"), "1.000e10");
        assert_eq!(abbreviate("not-a-token"), "not-a-token");
    }
}
