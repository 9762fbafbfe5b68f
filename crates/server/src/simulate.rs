//! `ringleader simulate`: offline scenarios of joins and leaves.
//!
//! Builds a ring of N members, applies a sequence of membership changes and,
//! at each step, reports what an operator would care about: balance as
//! DESIGN §4 defines it (the largest load / target, in replica units, and the
//! loads' coefficient of variation), the primary balance, the data the plan
//! moves next to the ideal for that change (DESIGN §4's, and the zone-aware
//! lower bound that also counts the zone coverage the targets force), and
//! the plan's move count.

use anyhow::{Context as _, bail};
use ringleader_planner::{Placement, PlanOptions, plan, zone_ideal_fraction};
use ringleader_ring::{
    MemberId, MemberSpec, MembershipChange, Replication, Ring, RingConfig, Strategy, balance_of,
    spread_of,
};
use serde::Serialize;
use std::fmt::Write as _;
use std::str::FromStr;

/// One step of a scenario: members joining and leaving at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Members that join.
    pub join: usize,
    /// Members that leave (chosen at random, seeded).
    pub leave: usize,
}

impl FromStr for Step {
    type Err = String;

    /// `+3` (three join), `-1` (one leaves), `+2-1` (both at once).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("bad step {s:?}: write +N (N join), -N (N leave) or +N-M (both at once)");
        let mut step = Step { join: 0, leave: 0 };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let sign = rest.as_bytes()[0];
            let digits = rest[1..].bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: usize = rest[1..1 + digits].parse().map_err(|_| bad())?;
            match sign {
                b'+' => step.join += n,
                b'-' => step.leave += n,
                _ => return Err(bad()),
            }
            rest = &rest[1 + digits..];
        }
        Ok(step)
    }
}

/// A scenario to simulate.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Members at the start.
    pub members: usize,
    /// Ring settings.
    pub config: RingConfig,
    /// Replication used for plans.
    pub replication: Replication,
    /// Zones members are spread over (round-robin); 0 for none.
    pub zones: usize,
    /// The steps.
    pub steps: Vec<Step>,
    /// Seed for choosing who leaves.
    pub seed: u64,
}

/// What one step did.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    /// The step as written (`start` for the initial ring).
    pub step: String,
    /// Members after the step.
    pub members: usize,
    /// Tokens in the ring after the step.
    pub tokens: usize,
    /// Largest load / target over members, in replica units (DESIGN §4).
    pub balance: f64,
    /// Coefficient of variation of load / target.
    pub cv: f64,
    /// Largest primary ownership / weight's share.
    pub primary_balance: f64,
    /// Fraction of replicas the plan moves.
    pub moved: f64,
    /// Least fraction any plan could move (DESIGN §4: what members lack).
    pub ideal: f64,
    /// Least fraction any plan could move counting zone coverage too
    /// (`ringleader_planner::zone_ideal_from`); the ideal where zones don't
    /// constrain it.
    pub zone_ideal: f64,
    /// Moves in the plan.
    pub moves: usize,
}

/// Runs a scenario.
pub fn run(scenario: &Scenario) -> anyhow::Result<Vec<StepReport>> {
    let member = |i: usize| {
        let spec = MemberSpec::new(format!("m{i:04}"));
        if scenario.zones > 0 {
            spec.with_zone(format!("zone-{}", i % scenario.zones))
        } else {
            spec
        }
    };
    let mut ring = Ring::new(scenario.config)?
        .apply_for(
            &MembershipChange {
                join: (0..scenario.members).map(member).collect(),
                ..Default::default()
            },
            &scenario.replication,
        )
        .context("building the initial ring")?;
    let mut next = scenario.members;
    let mut rng = scenario.seed | 1;
    let replication = &scenario.replication;
    let mut reports = vec![report("start", &ring, replication, [0.0; 3], 0)];
    for step in &scenario.steps {
        if step.leave > ring.len() {
            bail!(
                "step -{} asks more members to leave than the {} the ring has",
                step.leave,
                ring.len()
            );
        }
        let mut change = MembershipChange::default();
        let mut ids: Vec<MemberId> = ring.members().iter().map(|m| m.id.clone()).collect();
        for _ in 0..step.leave {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            change
                .leave
                .push(ids.swap_remove((rng % ids.len() as u64) as usize));
        }
        for _ in 0..step.join {
            change.join.push(member(next));
            next += 1;
        }
        let after = ring.apply_for(&change, &scenario.replication)?;
        let label = match (step.join, step.leave) {
            (j, 0) => format!("+{j}"),
            (0, l) => format!("-{l}"),
            (j, l) => format!("+{j}-{l}"),
        };
        if after.is_empty() {
            reports.push(report(&label, &after, replication, [0.0; 3], 0));
        } else {
            let from = Placement::new(ring.clone(), scenario.replication)?;
            let to = Placement::new(after.clone(), scenario.replication)?;
            let plan = plan(&from, &to, &PlanOptions::default())?;
            reports.push(report(
                &label,
                &after,
                replication,
                [
                    plan.summary.moved_fraction,
                    plan.summary.ideal_fraction,
                    zone_ideal_fraction(&from, &to),
                ],
                plan.summary.moves,
            ));
        }
        ring = after;
    }
    Ok(reports)
}

fn report(
    step: &str,
    ring: &Ring,
    replication: &Replication,
    [moved, ideal, zone_ideal]: [f64; 3],
    moves: usize,
) -> StepReport {
    let shares = ring.load_shares(replication);
    StepReport {
        step: step.to_owned(),
        members: ring.len(),
        tokens: ring.tokens().len(),
        balance: balance_of(&shares),
        cv: spread_of(&shares),
        primary_balance: ring.balance(),
        moved,
        ideal,
        zone_ideal,
        moves,
    }
}

/// Random churn: `count` steps of one or two joins and/or leaves, keeping
/// the ring between `min` and `max` members.
pub fn churn(count: usize, start: usize, min: usize, max: usize, seed: u64) -> Vec<Step> {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut size = start;
    let mut steps = Vec::with_capacity(count);
    for _ in 0..count {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut join = (rng % 3) as usize;
        let mut leave = ((rng >> 8) % 3) as usize;
        if size + join > max {
            join = 0;
        }
        if size + join < min + leave {
            leave = (size + join).saturating_sub(min);
        }
        if join == 0 && leave == 0 {
            if size < max {
                join = 1;
            } else {
                leave = 1;
            }
        }
        size = size + join - leave;
        steps.push(Step { join, leave });
    }
    steps
}

/// The reports as an aligned table.
pub fn table(reports: &[StepReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "STEP",
        "MEMBERS",
        "TOKENS",
        "BALANCE",
        "CV",
        "PRIMARY",
        "MOVED",
        "IDEAL",
        "MOVED/ID",
        "MOVED/ZB",
        "MOVES"
    );
    for r in reports {
        let over = |ideal: f64| {
            if ideal > 0.0 {
                format!("{:.3}", r.moved / ideal)
            } else {
                "-".into()
            }
        };
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>7} {:>8.4} {:>7.4} {:>8.4} {:>8.4} {:>8.4} {:>8} {:>8} {:>6}",
            r.step,
            r.members,
            r.tokens,
            r.balance,
            r.cv,
            r.primary_balance,
            r.moved,
            r.ideal,
            over(r.ideal),
            over(r.zone_ideal),
            r.moves
        );
    }
    out
}

/// Worst figures over the steps after the first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Worst {
    /// Largest balance.
    pub balance: f64,
    /// Largest moved / DESIGN §4's ideal.
    pub moved_over_ideal: f64,
    /// Largest moved / the zone-aware lower bound.
    pub moved_over_zone_ideal: f64,
}

/// Worst figures over the steps after the first: balance and moved over
/// both ideals.
pub fn worst(reports: &[StepReport]) -> Worst {
    let ratio = |ideal: fn(&StepReport) -> f64| {
        reports
            .iter()
            .filter(|r| ideal(r) > 0.0)
            .map(|r| r.moved / ideal(r))
            .fold(0.0, f64::max)
    };
    Worst {
        balance: reports.iter().map(|r| r.balance).fold(1.0, f64::max),
        moved_over_ideal: ratio(|r| r.ideal),
        moved_over_zone_ideal: ratio(|r| r.zone_ideal),
    }
}

/// Parses a strategy name for clap.
pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_as_written() {
        assert_eq!("+3".parse::<Step>().unwrap(), Step { join: 3, leave: 0 });
        assert_eq!("-1".parse::<Step>().unwrap(), Step { join: 0, leave: 1 });
        assert_eq!("+2-1".parse::<Step>().unwrap(), Step { join: 2, leave: 1 });
        for bad in ["", "3", "+", "+x", "*2"] {
            assert!(bad.parse::<Step>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_scale_up_moves_about_the_ideal() {
        let scenario = Scenario {
            members: 10,
            config: RingConfig::default(),
            replication: Replication::SINGLE,
            zones: 0,
            steps: vec![Step { join: 3, leave: 0 }, Step { join: 0, leave: 1 }],
            seed: 7,
        };
        let reports = run(&scenario).unwrap();
        assert_eq!(reports.len(), 3);
        assert_eq!(reports[1].members, 13);
        assert_eq!(reports[2].members, 12);
        let worst = worst(&reports);
        assert!(worst.balance <= 1.05, "balance {}", worst.balance);
        assert!(worst.moved_over_ideal <= 1.05, "moved/ideal {worst:?}");
        // Without zones the zone-aware bound is the ideal.
        assert_eq!(worst.moved_over_zone_ideal, worst.moved_over_ideal);
        assert!((reports[1].ideal - 3.0 / 13.0).abs() < 1e-9);
    }

    #[test]
    fn churn_stays_within_bounds() {
        let steps = churn(200, 10, 3, 20, 1);
        let mut size = 10usize;
        for s in steps {
            size = size + s.join - s.leave;
            assert!((3..=20).contains(&size));
        }
    }
}
