//! Load, targets and balance in replica units (DESIGN §4).
//!
//! Data is counted in replica units: a range of length `L` held by `k`
//! members counts `k × L`, so the whole ring holds `rf × 2^64`. A member's
//! *load* is what it holds as any replica; its *target* is its weight's share
//! of the total, or, zone-aware with `rf ≥ zones`, its weight's share of its
//! own zone's copies (every key has exactly one replica in each zone then, so
//! each zone is a ring of its own). *Balance* is the largest load / target.
//!
//! Zone-aware with *more* replicas than zones (3 over 2 zones, say, once a
//! zone has lost its last member) the replica walk picks one member per zone
//! and then fills the other `rf − zones` copies with distinct members as
//! without zones; targets follow the walk: each member's share of its zone's
//! one copy, plus its weight's share of the `rf − zones` extra copies over all
//! members (water-filled, since nobody holds more than one copy in all).
//!
//! Nobody can hold more than one copy of the token space, and with
//! zone-aware replication over at least `rf` zones no zone can either, so
//! shares are water-filled: a share above the cap is cut to it and the rest
//! goes to the others in proportion to their weights.

use crate::{MemberSpec, Ownership, Replication, Ring, TOKEN_SPACE, Token, TokenRange};

/// Shares of `total` in proportion to `weights`, none above `cap` (the
/// excess of a capped one goes to the others in proportion).
pub(crate) fn water_fill(weights: &[f64], total: f64, cap: f64) -> Vec<f64> {
    let mut shares = vec![0.0; weights.len()];
    let mut capped = vec![false; weights.len()];
    let mut remaining = total;
    loop {
        let weight: f64 = weights
            .iter()
            .zip(&capped)
            .filter(|&(_, &c)| !c)
            .map(|(w, _)| w)
            .sum();
        if weight <= 0.0 {
            return shares;
        }
        let mut changed = false;
        for i in 0..weights.len() {
            if !capped[i] && remaining * weights[i] / weight > cap {
                capped[i] = true;
                shares[i] = cap;
                remaining -= cap;
                changed = true;
            }
        }
        if !changed {
            for i in 0..weights.len() {
                if !capped[i] {
                    shares[i] = remaining * weights[i] / weight;
                }
            }
            return shares;
        }
    }
}

/// Shares of `total` in proportion to `weights`, member `i`'s none above
/// `caps[i]` (the excess of a capped one goes to the others in proportion).
fn water_fill_capped(weights: &[f64], total: f64, caps: &[f64]) -> Vec<f64> {
    let mut shares = vec![0.0; weights.len()];
    let mut capped = vec![false; weights.len()];
    let mut remaining = total;
    loop {
        let weight: f64 = (0..weights.len())
            .filter(|&i| !capped[i])
            .map(|i| weights[i])
            .sum();
        if weight <= 0.0 || remaining <= 0.0 {
            return shares;
        }
        let mut changed = false;
        for i in 0..weights.len() {
            if !capped[i] && remaining * weights[i] / weight > caps[i] {
                capped[i] = true;
                shares[i] = caps[i];
                remaining -= caps[i];
                changed = true;
            }
        }
        if !changed {
            for i in 0..weights.len() {
                if !capped[i] {
                    shares[i] = remaining * weights[i] / weight;
                }
            }
            return shares;
        }
    }
}

/// How targets are worked out for a replication over a set of members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetRule {
    /// Every member: its weight's share of `rf × 2^64`.
    Global,
    /// Zone-aware with more zones than `rf`: every key has replicas in `rf`
    /// distinct zones, so a zone holds at most one copy; zones get their
    /// weight's share (capped), members theirs of the zone's.
    ZonesCapped,
    /// Zone-aware with `rf = zones`: every zone holds one copy; each member
    /// its share of its zone's.
    PerZone,
    /// Zone-aware with `rf > zones ≥ 2` (a zone emptied, say): every zone
    /// holds one copy, shared by its members as with
    /// [`TargetRule::PerZone`], and the walk fills the other `rf − zones`
    /// copies with distinct members, shared by weight over all members as
    /// with [`TargetRule::Global`] (none above one copy in all).
    PerZoneAndFill,
}

impl TargetRule {
    /// The rule for `rf` replicas over `zones` zones.
    pub(crate) fn of(replication: &Replication, zones: usize) -> Self {
        if !replication.zone_aware || zones <= 1 {
            TargetRule::Global
        } else if replication.factor == zones {
            TargetRule::PerZone
        } else if replication.factor > zones {
            TargetRule::PerZoneAndFill
        } else {
            TargetRule::ZonesCapped
        }
    }
}

/// Targets in tokens for members (by index) with zone numbers `zone_of`
/// (`zones` distinct), for `rf` effective replicas.
pub(crate) fn targets(
    members: &[MemberSpec],
    zone_of: &[u32],
    zones: usize,
    replication: &Replication,
) -> Vec<f64> {
    let space = TOKEN_SPACE as f64;
    let rf = replication.factor as f64;
    let weights: Vec<f64> = members.iter().map(|m| f64::from(m.weight)).collect();
    let rule = TargetRule::of(replication, zones);
    if rule == TargetRule::Global {
        return water_fill(&weights, rf * space, space);
    }
    let zone_totals: Vec<f64> = if rule == TargetRule::ZonesCapped {
        let mut zone_weight = vec![0.0; zones];
        for (i, w) in weights.iter().enumerate() {
            zone_weight[zone_of[i] as usize] += w;
        }
        water_fill(&zone_weight, rf * space, space)
    } else {
        // One copy per zone (the first walk).
        vec![space; zones]
    };
    let mut out = vec![0.0; members.len()];
    for (z, &zone_total) in zone_totals.iter().enumerate() {
        let index: Vec<usize> = (0..members.len())
            .filter(|&i| zone_of[i] as usize == z)
            .collect();
        let w: Vec<f64> = index.iter().map(|&i| weights[i]).collect();
        for (k, share) in water_fill(&w, zone_total, space).into_iter().enumerate() {
            out[index[k]] = share;
        }
    }
    if rule == TargetRule::PerZoneAndFill {
        // The second walk's copies, by weight over everyone, up to one copy
        // each in all.
        let caps: Vec<f64> = out.iter().map(|&base| (space - base).max(0.0)).collect();
        let extra = water_fill_capped(&weights, (rf - zones as f64) * space, &caps);
        for (target, e) in out.iter_mut().zip(extra) {
            *target += e;
        }
    }
    out
}

impl Ring {
    /// The replication in force on this ring: the factor capped at the
    /// member count (at least 1).
    pub fn effective(&self, replication: &Replication) -> Replication {
        Replication {
            factor: replication.factor.min(self.len()).max(1),
            zone_aware: replication.zone_aware,
        }
    }

    /// What each member (by index) holds as any replica, in tokens: the sum
    /// over ranges of their length for every member in the range's replica
    /// set. Sums to `rf × 2^64` (the factor capped at the member count);
    /// empty for an empty ring.
    pub fn replica_loads(&self, replication: &Replication) -> Vec<u128> {
        if self.is_empty() {
            return Vec::new();
        }
        let replication = self.effective(replication);
        if TargetRule::of(&replication, self.zone_count()) == TargetRule::PerZone
            && replication.factor == self.zone_count()
        {
            return self.loads_zone_by_zone();
        }
        self.loads_by_walking(&replication)
    }

    /// [`Ring::replica_loads`] by walking every range's replicas, for an
    /// effective replication.
    fn loads_by_walking(&self, replication: &Replication) -> Vec<u128> {
        if replication.factor == 1 {
            return self.owned_tokens();
        }
        let mut owned = vec![0u128; self.len()];
        let mut picked = Vec::with_capacity(replication.factor);
        for position in 0..self.tokens().len() {
            let len = self.range_at(position).len();
            self.replica_indices_at(position, replication, &mut picked);
            for &m in &picked {
                owned[m as usize] += len;
            }
        }
        owned
    }

    /// [`Ring::replica_loads`] when every key has exactly one replica in
    /// each zone (zone-aware, `rf` = zones): a key's replica in zone `z` is
    /// the owner of the first token of zone `z` clockwise from it, so each
    /// zone's tokens form a ring of their own and a member holds, for each
    /// of its tokens, the stretch back to the previous token of its zone.
    /// The same figures to the last token as walking every range's replicas,
    /// in one pass without walks (a tenth of the time at 256,000 tokens).
    fn loads_zone_by_zone(&self) -> Vec<u128> {
        let tokens = self.tokens();
        let owners = self.owner_indices();
        let mut loads = vec![0u128; self.len()];
        // The last token of each zone: where its first token's range starts.
        let mut previous: Vec<Option<Token>> = vec![None; self.zone_count()];
        for (&t, &o) in tokens.iter().zip(owners).rev() {
            let zone = self.zone_index(o as usize) as usize;
            if previous[zone].is_none() {
                previous[zone] = Some(t);
            }
        }
        for (&t, &o) in tokens.iter().zip(owners) {
            let zone = self.zone_index(o as usize) as usize;
            let start = previous[zone].replace(t).expect("every zone has a token");
            loads[o as usize] += TokenRange::new(start, t).len();
        }
        loads
    }

    /// Each member's target load (by index) in tokens, as DESIGN §4 defines
    /// it: its weight's share of `rf × 2^64`, or zone-aware with
    /// `rf ≥ zones`, of its zone's copy (plus, with `rf > zones`, its share
    /// of the copies the walk fills beyond one per zone). Nobody's exceeds
    /// one copy.
    pub fn replica_targets(&self, replication: &Replication) -> Vec<f64> {
        if self.is_empty() {
            return Vec::new();
        }
        let replication = self.effective(replication);
        let zone_of: Vec<u32> = (0..self.len()).map(|i| self.zone_index(i)).collect();
        targets(self.members(), &zone_of, self.zone_count(), &replication)
    }

    /// Load and target of every member as fractions of all replicas
    /// (`rf × 2^64`, the factor capped at the member count): DESIGN §4's
    /// measures. [`balance_of`](crate::balance_of) of it is the balance.
    pub fn load_shares(&self, replication: &Replication) -> Vec<Ownership> {
        if self.is_empty() {
            return Vec::new();
        }
        let effective = self.effective(replication);
        let total = TOKEN_SPACE as f64 * effective.factor as f64;
        let loads = self.replica_loads(&effective);
        let targets = self.replica_targets(&effective);
        self.members()
            .iter()
            .zip(loads)
            .zip(targets)
            .map(|((m, load), target)| Ownership {
                id: m.id.clone(),
                fraction: load as f64 / total,
                target: target / total,
            })
            .collect()
    }

    /// DESIGN §4's balance: the largest load / target over members (1.0 is
    /// perfect; an empty ring reports 1.0).
    pub fn replica_balance(&self, replication: &Replication) -> f64 {
        crate::balance_of(&self.load_shares(replication))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemberSpec, RingConfig, Strategy};

    #[test]
    fn water_fill_caps_and_redistributes() {
        let shares = water_fill(&[3.0, 1.0, 1.0], 2.0, 1.0);
        assert!((shares[0] - 1.0).abs() < 1e-12);
        assert!((shares[1] - 0.5).abs() < 1e-12);
        assert!((shares[2] - 0.5).abs() < 1e-12);
        let even = water_fill(&[1.0, 1.0], 1.0, 1.0);
        assert_eq!(even, vec![0.5, 0.5]);
    }

    #[test]
    fn loads_sum_to_rf_copies_and_targets_too() {
        let members =
            (0..7).map(|i| MemberSpec::new(format!("m{i}")).with_zone(format!("z{}", i % 3)));
        let ring = Ring::with_members(RingConfig::default(), members).unwrap();
        for (rf, zone_aware) in [(1, false), (2, false), (3, false), (2, true), (3, true)] {
            let replication = Replication::new(rf, zone_aware);
            let loads: u128 = ring.replica_loads(&replication).iter().sum();
            assert_eq!(loads, rf as u128 * TOKEN_SPACE);
            let targets: f64 = ring.replica_targets(&replication).iter().sum();
            assert!((targets / (rf as f64 * TOKEN_SPACE as f64) - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn loads_zone_by_zone_are_the_loads_of_walking_every_range() {
        // Zones of unequal size, one of a single member with one token,
        // hashed and balanced layouts, rf = zones = 2 and 3.
        for (strategy, tokens) in [
            (Strategy::Balanced, 16),
            (Strategy::Hashed, 7),
            (Strategy::Balanced, 1),
        ] {
            for zones in [2usize, 3] {
                for n in [zones, zones + 1, 10, 31] {
                    let members = (0..n).map(|i| {
                        let zone = if i == n - 1 && n > zones {
                            0
                        } else {
                            i % zones
                        };
                        MemberSpec::new(format!("m{i}"))
                            .with_zone(format!("z{zone}"))
                            .with_weight(1 + (i % 3) as u32)
                    });
                    let ring =
                        Ring::with_members(RingConfig::new(strategy, tokens), members).unwrap();
                    let replication = Replication::new(zones, true);
                    assert_eq!(ring.zone_count(), zones);
                    assert_eq!(
                        ring.loads_zone_by_zone(),
                        ring.loads_by_walking(&replication),
                        "{strategy:?} × {tokens}, {n} members over {zones} zones"
                    );
                }
            }
        }
    }

    #[test]
    fn zone_aware_targets_are_shares_of_the_zone() {
        // Zones of 2, 1 and 1 members, rf 3: the lone members hold a whole
        // copy each, the pair half a copy each.
        let members = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "z")]
            .map(|(id, zone)| MemberSpec::new(id).with_zone(zone));
        let ring = Ring::with_members(RingConfig::default(), members).unwrap();
        let targets = ring.replica_targets(&Replication::new(3, true));
        let space = TOKEN_SPACE as f64;
        assert_eq!(targets, vec![space / 2.0, space / 2.0, space, space]);
    }

    #[test]
    fn more_replicas_than_zones_share_the_zone_copy_then_the_rest_by_weight() {
        // rf 3 over two zones of 4 and 3 members (a third zone emptied):
        // each holds its share of its zone's copy, plus a seventh of the
        // third copy the walk fills with distinct members.
        let members = (0..7).map(|i| MemberSpec::new(format!("m{i}")).with_zone(["x", "y"][i % 2]));
        let ring = Ring::with_members(RingConfig::default(), members).unwrap();
        let targets = ring.replica_targets(&Replication::new(3, true));
        let space = TOKEN_SPACE as f64;
        for (i, t) in targets.iter().enumerate() {
            let zone_share = if i % 2 == 0 { 0.25 } else { 1.0 / 3.0 };
            assert!(
                (t / space - zone_share - 1.0 / 7.0).abs() < 1e-12,
                "m{i}: {t}"
            );
        }
        // A zone of one member holds a whole copy and no more: the fill
        // goes to the others.
        let members = [("a", "x"), ("b", "y"), ("c", "y"), ("d", "y")]
            .map(|(id, zone)| MemberSpec::new(id).with_zone(zone));
        let ring = Ring::with_members(RingConfig::default(), members).unwrap();
        let targets = ring.replica_targets(&Replication::new(3, true));
        assert!((targets[0] / space - 1.0).abs() < 1e-12);
        for t in &targets[1..] {
            assert!((t / space - 2.0 / 3.0).abs() < 1e-12);
        }
    }
}
