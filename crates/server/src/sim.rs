//! A deterministic simulation of the coordinator (DESIGN §9), in the manner
//! of FoundationDB's and TigerBeetle's: one seed, one history.
//!
//! The world is a handful of pods (joining, leaving, blipping shorter and
//! longer than the grace, flapping, changing zone or weight — a weight
//! raised or lowered, also mid-plan, and put back within the grace or
//! after —, a scale-up reverted mid-plan), a membership source that has outages, a store that fails,
//! answers slowly and is shared by two coordinators while a lease changes
//! hands (a deposed leader keeps acting for a few steps before it notices),
//! shards acking in any order (duplicates, stale ids, cancelled moves), and
//! crashes before and after saves. The coordinators are the real pure
//! [`Coordinator`]; around them, this module plays the runtime's protocol
//! (store, then show; on a conflict take the stored state over through the
//! very [`resolve_conflict`] the ConfigMap store uses).
//!
//! After every step it checks DESIGN §4's and §5's rules and panics with a
//! message naming the seed and the step: durability, monotonic epochs,
//! minimality (rf 1, and rf ≥ 2 zone-aware with as many zones as replicas,
//! each zone's ring measured against its own ideal; other settings are
//! measured and reported), stability of
//! moves, visibility of cancelled moves, `source_lost` only when every
//! holder is gone, no orphaned data, the grace counting only while the
//! source is synced, readiness, no write over a successor's state, and that
//! an ack marks done only a move of the plan lineage the shard had its id
//! from (shards remember ids of earlier plans and report them late).
//!
//! `cargo test -p ringleader --lib sim` runs 300 seeds; the long mode is
//! `RINGLEADER_SIM_SEEDS=100000 RINGLEADER_SIM_STEPS=200 cargo test --release
//! -p ringleader --lib sim -- --nocapture` (`RINGLEADER_SIM_FIRST_SEED`
//! moves the range; a failing seed reruns alone with
//! `RINGLEADER_SIM_SEEDS=1 RINGLEADER_SIM_FIRST_SEED=<seed>`).

use crate::coordinator::{Coordinator, StoreHealth};
use crate::settings::{Mode, Pace, RingSettings, Timing};
use crate::state::{PlanRecord, PlanState, Resolution, State, resolve_conflict};
use ringleader_planner::{
    Holdings, MoveState, Placement, holdings_with, ideal_from, zone_ideal_from,
};
use ringleader_ring::{MemberId, MemberSpec, Replication, Ring, Strategy, TOKEN_SPACE};
use ringleader_watch::{Member, MemberId as PodId, MemberSet};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, never zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

const GRACE: Duration = Duration::from_secs(10);
const SETTLE: Duration = Duration::from_secs(2);
const SETTLE_MAX: Duration = Duration::from_secs(6);

/// One pod of the simulated StatefulSet.
#[derive(Clone, Debug)]
struct Pod {
    /// In the Service's slices at all.
    present: bool,
    ready: bool,
    zone: Option<String>,
    /// Time the coordinator could have counted it down: while the source
    /// was synced and the pod was not ready (or absent) in what it delivered.
    down_counted: Duration,
    /// The last such stretch, once it is back (a plan made just before it
    /// came back is checked against it).
    last_streak: Duration,
    /// Its weight, as the Service's `ringleader.io/weights` annotation gives it.
    weight: u32,
}

/// The largest weight the simulation gives a pod (the source allows 64; a
/// few are enough to exercise uneven targets and keep rings small).
const SIM_MAX_WEIGHT: u32 = 4;

/// The store both coordinators share: a ConfigMap in miniature (a version
/// that every write must name).
#[derive(Default)]
struct Store {
    version: u64,
    bytes: Option<Vec<u8>>,
    state: Option<State>,
    /// Hashes of every state ever stored.
    history: HashSet<u64>,
    fail_next: u32,
    /// Who wrote each version, for failure messages.
    writers: Vec<usize>,
}

impl Store {
    fn position(&self) -> (u64, u64) {
        self.state.as_ref().map_or((0, 0), State::position)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Down,
    Follower,
    Leader,
}

struct Node {
    role: Role,
    coordinator: Option<Coordinator>,
    /// The store version last read or written (the write fence).
    seen: Option<u64>,
    /// What a follower shows: the last state read (or stored as leader).
    followed: Option<State>,
    /// Steps left before a deposed leader notices.
    stale_for: u32,
    /// The highest position this node ever showed.
    max_shown: (u64, u64),
}

impl Node {
    fn shown(&self) -> Option<State> {
        match self.role {
            Role::Down => None,
            Role::Leader => self.coordinator.as_ref().map(|c| (**c.shown()).clone()),
            Role::Follower => self.followed.clone(),
        }
    }
}

/// What the simulation measured over its seeds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Figures {
    /// Steps run.
    pub steps: u64,
    /// Plans and revisions checked for minimality, by replication factor
    /// and whether some of their moves were done already.
    pub plans: BTreeMap<(usize, bool), u64>,
    /// The worst moved / ideal, by the same, over plans whose ideal is at
    /// least 1 % of the replicas (below, ratios of tiny numbers say little).
    pub worst: BTreeMap<(usize, bool), f64>,
    /// The worst moved − ideal, as a fraction of all replicas, by the same.
    pub excess: BTreeMap<(usize, bool), f64>,
    /// [`Figures::worst`] over plans where no member changes zone: a zone
    /// change re-pairs replicas while loads barely change, so DESIGN's
    /// ideal (what members lack) is tiny and the ratio says little.
    pub worst_same_zones: BTreeMap<(usize, bool), f64>,
    /// The worst moved over the zone-aware lower bound
    /// (`ringleader_planner::zone_ideal_from`, never below the ideal), over
    /// every plan whose bound is at least 1 % of the replicas.
    pub worst_zone_bound: BTreeMap<(usize, bool), f64>,
    /// Plans cancelled by a return to the committed member set.
    pub cancels: u64,
    /// Epochs committed.
    pub commits: u64,
    /// Save conflicts resolved by taking the stored state over.
    pub takeovers: u64,
    /// Epochs committed whose weights differ from the previous epoch's
    /// for a member in both (weight changes planned through to the end).
    pub weight_commits: u64,
}

impl Figures {
    /// Adds another run's figures to these: counts add up, worst figures
    /// keep the worse.
    fn absorb(&mut self, other: Figures) {
        self.steps += other.steps;
        self.cancels += other.cancels;
        self.commits += other.commits;
        self.takeovers += other.takeovers;
        self.weight_commits += other.weight_commits;
        for (key, n) in other.plans {
            *self.plans.entry(key).or_default() += n;
        }
        for (key, w) in other.worst {
            let e = self.worst.entry(key).or_insert(0.0);
            *e = e.max(w);
        }
        for (key, w) in other.excess {
            let e = self.excess.entry(key).or_insert(0.0);
            *e = e.max(w);
        }
        for (key, w) in other.worst_same_zones {
            let e = self.worst_same_zones.entry(key).or_insert(0.0);
            *e = e.max(w);
        }
        for (key, w) in other.worst_zone_bound {
            let e = self.worst_zone_bound.entry(key).or_insert(0.0);
            *e = e.max(w);
        }
    }
}

struct Sim {
    seed: u64,
    step: u64,
    rng: Rng,
    t0: Instant,
    elapsed: Duration,
    settings: RingSettings,
    timing: Timing,
    pods: BTreeMap<String, Pod>,
    next_pod: usize,
    /// Blips that end: (when, pod).
    returns: Vec<(Duration, String)>,
    /// Weight changes put back: (when, pod, the weight it had).
    weight_reverts: Vec<(Duration, String, u32)>,
    source_synced: bool,
    outage_until: Option<Duration>,
    /// What the source last delivered.
    delivered: MemberSet,
    store: Store,
    nodes: [Node; 2],
    holder: Option<usize>,
    /// Acks answered as stored: (plan's from_epoch, move id).
    acked: Vec<(u64, String)>,
    /// Move ids shards were given, with the plan lineage that gave them (a
    /// shard may report one late, after its plan was cancelled or replaced).
    known_ids: Vec<(String, u64)>,
    /// Plan lineages of the stored history as the simulation counts them
    /// (from the states alone, not from the coordinator's numbering): a
    /// stored plan in progress or cancelled continues the lineage of the
    /// plan stored before it when that one was in progress from the same
    /// epoch; any other starts the next.
    lineage: u64,
    /// The lineage of the plan of each stored position.
    lineage_at: HashMap<(u64, u64), u64>,
    /// For each move id acked, the lineages whose plans the shards had it
    /// from: an ack may mark a move done only in a plan of one of those.
    meant: HashMap<String, BTreeSet<u64>>,
    last_stored: Option<State>,
    /// Each node's working state after its last input.
    working: [Option<State>; 2],
    max_epoch_shown: u64,
    figures: Figures,
}

fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let rf = match rng.below(10) {
            0..=5 => 1,
            6..=7 => 2,
            _ => 3,
        };
        let settings = RingSettings {
            rf,
            strategy: if rng.chance(85) {
                Strategy::Balanced
            } else {
                Strategy::Hashed
            },
            tokens_per_member: [4, 8, 16][rng.below(3) as usize],
            zone_aware: rf > 1 && rng.chance(50),
            mode: if rng.chance(85) {
                Mode::Ack
            } else {
                Mode::Auto
            },
            // Pacing on: 1, 2 (the default) or 3 moves per member, and a
            // cluster-wide cap on every fifth seed. Taken from the seed, not
            // the generator, so each seed's history is the same whatever
            // the pace (only which moves are ready differs).
            pace: Pace::new(
                Some(1 + (seed % 3) as u32),
                seed.is_multiple_of(5).then_some(3),
            ),
        };
        let timing = Timing {
            settle: SETTLE,
            settle_max: SETTLE_MAX,
            down_grace: GRACE,
        };
        let mut sim = Sim {
            seed,
            step: 0,
            rng,
            t0: Instant::now(),
            elapsed: Duration::ZERO,
            settings,
            timing,
            pods: BTreeMap::new(),
            next_pod: 0,
            returns: Vec::new(),
            weight_reverts: Vec::new(),
            source_synced: true,
            outage_until: None,
            delivered: MemberSet::new(),
            store: Store::default(),
            nodes: [
                Node {
                    role: Role::Follower,
                    coordinator: None,
                    seen: None,
                    followed: None,
                    stale_for: 0,
                    max_shown: (0, 0),
                },
                Node {
                    role: Role::Follower,
                    coordinator: None,
                    seen: None,
                    followed: None,
                    stale_for: 0,
                    max_shown: (0, 0),
                },
            ],
            holder: None,
            acked: Vec::new(),
            known_ids: Vec::new(),
            lineage: 0,
            lineage_at: HashMap::new(),
            meant: HashMap::new(),
            last_stored: None,
            working: [None, None],
            max_epoch_shown: 0,
            figures: Figures::default(),
        };
        for _ in 0..3 {
            sim.add_pod();
        }
        sim.deliver();
        sim.acquire(0);
        sim
    }

    fn now(&self) -> Instant {
        self.t0 + self.elapsed
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "sim seed {} step {}: {what}\n(rerun: RINGLEADER_SIM_SEEDS=1 RINGLEADER_SIM_FIRST_SEED={} cargo test -p ringleader --lib sim)",
            self.seed, self.step, self.seed
        )
    }

    fn add_pod(&mut self) {
        let name = format!("p{}", self.next_pod);
        self.next_pod += 1;
        let zone = (self.settings.zone_aware || self.rng.chance(30))
            .then(|| format!("z{}", self.rng.below(3)));
        self.pods.insert(
            name,
            Pod {
                present: true,
                ready: true,
                zone,
                down_counted: Duration::ZERO,
                last_streak: Duration::ZERO,
                weight: 1,
            },
        );
    }

    fn present(&self) -> usize {
        self.pods.values().filter(|p| p.present).count()
    }

    fn pick_pod(&mut self) -> Option<String> {
        let n = self.present() as u64;
        (n > 0).then(|| {
            let i = self.rng.below(n) as usize;
            self.pods
                .iter()
                .filter(|(_, p)| p.present)
                .nth(i)
                .map(|(name, _)| name.clone())
                .expect("in range")
        })
    }

    fn member_set(&self) -> MemberSet {
        self.pods
            .iter()
            .filter(|(_, pod)| pod.present)
            .map(|(name, pod)| Member {
                id: PodId::new(name.as_str()),
                addresses: vec![format!("10.0.0.{}", name.len())],
                zone: pod.zone.clone(),
                node_name: None,
                ports: Vec::new(),
                ready: pod.ready,
                serving: pod.ready,
                terminating: false,
                weight: Some(pod.weight),
            })
            .collect()
    }

    /// The source delivers the world to the nodes that lead (when synced).
    fn deliver(&mut self) {
        if !self.source_synced {
            return;
        }
        self.delivered = self.member_set();
        let now = self.now();
        for i in 0..2 {
            if self.nodes[i].role == Role::Leader
                && let Some(c) = self.nodes[i].coordinator.as_mut()
            {
                c.observe(self.delivered.clone(), now);
                self.track(i);
                if let Some(c) = self.nodes[i].coordinator.as_mut() {
                    c.source_synced(true, now);
                }
                self.track(i);
            }
        }
    }

    /// Node `i` takes the lease: it loads the stored state and leads.
    fn acquire(&mut self, i: usize) {
        if self.nodes[i].role == Role::Down {
            return;
        }
        self.holder = Some(i);
        let state = match &self.store.state {
            Some(s) => s.clone(),
            None => State::fresh(self.settings).expect("valid settings"),
        };
        if state.epoch < self.max_epoch_shown {
            self.fail(format_args!(
                "node {i} loaded epoch {} but epoch {} was shown",
                state.epoch, self.max_epoch_shown
            ));
        }
        let mut c = Coordinator::new(state, self.settings, self.timing);
        let now = self.now();
        c.source_synced(self.source_synced, now);
        c.observe(self.delivered.clone(), now);
        let node = &mut self.nodes[i];
        node.seen = Some(self.store.version);
        node.coordinator = Some(c);
        node.role = Role::Leader;
        node.stale_for = 0;
        self.working[i] = None;
        self.track(i);
    }

    /// The runtime's protocol: store the working state if it changed, and
    /// show it only once stored. `Ok` when the store holds it.
    fn persist(&mut self, i: usize) -> Result<(), String> {
        let now = self.now();
        let node = &mut self.nodes[i];
        if node.role != Role::Leader {
            return Err("not leading".into());
        }
        let Some(c) = node.coordinator.as_mut() else {
            return Err("down".into());
        };
        let Some(save) = c.to_save() else {
            return Ok(());
        };
        if self.store.fail_next > 0 {
            self.store.fail_next -= 1;
            c.save_failed("injected failure".into());
            return Err("injected failure".into());
        }
        let bytes = save.state.encode().expect("states encode");
        if node.seen != Some(self.store.version) {
            // 409: read what is stored and decide with the store's rule.
            node.seen = Some(self.store.version);
            let stored = self.store.bytes.clone().unwrap_or_default();
            return match resolve_conflict(&save.state, &stored, "sim") {
                Ok(Resolution::AlreadyStored) => {
                    c.saved(save);
                    Ok(())
                }
                Ok(Resolution::TakeOver(state)) => {
                    self.figures.takeovers += 1;
                    c.adopt(*state, now);
                    self.working[i] = Some(c.state().clone());
                    Err("conflict: took the stored state over".into())
                }
                Err(e) => self.fail(format_args!(
                    "stored state unreadable ({:?}): {e}",
                    self.settings
                )),
            };
        }
        // Accepted: a state derived from what the store holds.
        let before = self.store.position();
        if save.state.position() <= before && self.store.state.is_some() {
            self.fail(format_args!(
                "node {i} wrote position {:?} over {:?}: positions must grow",
                save.state.position(),
                before
            ));
        }
        self.store.version += 1;
        self.store.writers.push(i);
        self.store.history.insert(hash(&bytes));
        self.store.bytes = Some(bytes);
        self.store.state = Some(save.state.clone());
        node.seen = Some(self.store.version);
        c.saved(save);
        // Who the writer paced around (down members' moves wait).
        let unavailable = c.unavailable();
        // Every stored state is checked against the one before, in order.
        if let Some(stored) = self.store.state.clone() {
            let previous = self.last_stored.replace(stored.clone());
            self.check_transition(previous.as_ref(), &stored, Some(&unavailable));
        }
        Ok(())
    }

    fn persist_all(&mut self) {
        for i in 0..2 {
            let _ = self.persist(i);
        }
    }

    /// Time passes: blips end, outages end, deadlines fire.
    fn advance(&mut self, by: Duration) {
        let end = self.elapsed + by;
        let mut stuck = 0;
        loop {
            let now = self.now();
            let mut next = end;
            for node in &self.nodes {
                if node.role == Role::Leader
                    && let Some(d) = node.coordinator.as_ref().and_then(|c| c.next_deadline(now))
                {
                    next = next.min(d.saturating_duration_since(self.t0).max(self.elapsed));
                }
            }
            for (at, _) in &self.returns {
                next = next.min((*at).max(self.elapsed));
            }
            for (at, _, _) in &self.weight_reverts {
                next = next.min((*at).max(self.elapsed));
            }
            if let Some(at) = self.outage_until {
                next = next.min(at.max(self.elapsed));
            }
            let step = next - self.elapsed;
            stuck = if step.is_zero() { stuck + 1 } else { 0 };
            if stuck > 20 {
                self.fail("the coordinator asks for a tick again and again at the same instant");
            }
            self.count_down_time(step);
            self.elapsed = next;
            let now = self.now();
            let (due, later): (Vec<_>, Vec<_>) = self
                .returns
                .drain(..)
                .partition(|(at, _)| *at <= self.elapsed);
            self.returns = later;
            let mut changed = false;
            for (_, name) in due {
                if let Some(pod) = self.pods.get_mut(&name) {
                    pod.ready = true;
                    changed = true;
                }
            }
            let (due, later): (Vec<_>, Vec<_>) = self
                .weight_reverts
                .drain(..)
                .partition(|(at, _, _)| *at <= self.elapsed);
            self.weight_reverts = later;
            for (_, name, weight) in due {
                if let Some(pod) = self.pods.get_mut(&name) {
                    pod.weight = weight;
                    changed = true;
                }
            }
            if self.outage_until.is_some_and(|at| at <= self.elapsed) {
                self.outage_until = None;
                self.source_synced = true;
                changed = true;
            }
            if changed {
                self.deliver();
            }
            for i in 0..2 {
                if self.nodes[i].role == Role::Leader
                    && let Some(c) = self.nodes[i].coordinator.as_mut()
                {
                    c.tick(now);
                    self.track(i);
                }
            }
            self.persist_all();
            if self.elapsed >= end {
                break;
            }
        }
    }

    /// The grace the coordinator may have counted, by pod.
    fn count_down_time(&mut self, by: Duration) {
        if !self.source_synced || by.is_zero() {
            return;
        }
        let delivered = &self.delivered;
        for (name, pod) in &mut self.pods {
            let up = delivered
                .get(name)
                .is_some_and(|m| m.ready && !m.terminating);
            if up {
                if !pod.down_counted.is_zero() {
                    pod.last_streak = pod.down_counted;
                }
                pod.down_counted = Duration::ZERO;
            } else {
                pod.down_counted += by;
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        (0..2).find(|&i| self.nodes[i].role == Role::Leader && self.holder == Some(i))
    }

    fn ack(&mut self) {
        let Some(i) = (0..2)
            .filter(|&i| self.nodes[i].role == Role::Leader)
            .nth(self.rng.below(2) as usize)
            .or_else(|| (0..2).find(|&i| self.nodes[i].role == Role::Leader))
        else {
            return;
        };
        let shown = self.nodes[i].shown();
        // The id, with the lineage of the plan the shard had it from (none
        // for an id no plan gave).
        let shown_lineage = shown
            .as_ref()
            .and_then(|s| self.lineage_at.get(&s.position()).copied());
        let plan_moves: Vec<(Option<u64>, String)> = shown
            .as_ref()
            .and_then(|s| s.plan.as_ref())
            .map(|p| {
                p.plan
                    .moves
                    .iter()
                    .map(|m| (shown_lineage, m.id.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if !plan_moves.is_empty() && shown_lineage.is_none() {
            self.fail(format_args!("node {i} shows a plan that was never stored"));
        }
        let id = match self.rng.below(10) {
            0..=6 if !plan_moves.is_empty() => {
                plan_moves[self.rng.below(plan_moves.len() as u64) as usize].clone()
            }
            7 | 8 if !self.known_ids.is_empty() => {
                let (id, lineage) =
                    &self.known_ids[self.rng.below(self.known_ids.len() as u64) as usize];
                (Some(*lineage), id.clone())
            }
            _ => (None, format!("{:016x}", self.rng.next())),
        };
        let Some(c) = self.nodes[i].coordinator.as_mut() else {
            return;
        };
        let plan_epoch = c.state().in_flight().map(|p| p.from_epoch);
        let ok = c.move_done(&id.1).is_ok();
        if ok && let Some(lineage) = id.0 {
            self.meant.entry(id.1.clone()).or_default().insert(lineage);
        }
        self.track(i);
        // Only an ack whose answer waited for a save is a promise that the
        // move stays done: a repeated report changes nothing and is answered
        // from what the node holds, which a deposed leader that has not
        // noticed yet holds stale (seed 86953 of the long run: node 1,
        // deposed, answered a repeat of a move its successor had since
        // cancelled with the plan; a later plan listed a move of the same
        // id as `source_lost`). The first report's promise is checked.
        let saves = self.nodes[i]
            .coordinator
            .as_ref()
            .is_some_and(Coordinator::has_unsaved);
        if ok && saves {
            let answered = self.persist(i).is_ok()
                && !self.nodes[i]
                    .coordinator
                    .as_ref()
                    .is_some_and(Coordinator::has_unsaved);
            if answered && let Some(epoch) = plan_epoch {
                self.acked.push((epoch, id.1));
            }
        }
    }

    fn crash(&mut self, i: usize) {
        if self.nodes[i].role == Role::Leader && self.rng.chance(50) {
            // Crash before the save: an input lands, nothing is stored.
            let now = self.now();
            if let Some(c) = self.nodes[i].coordinator.as_mut() {
                c.tick(now + Duration::from_secs(1));
            }
        }
        let node = &mut self.nodes[i];
        node.role = Role::Down;
        node.coordinator = None;
        node.followed = None;
        if self.holder == Some(i) {
            self.holder = None;
        }
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].role != Role::Down {
            return;
        }
        if let Some(s) = &self.store.state
            && s.epoch < self.max_epoch_shown
        {
            self.fail(format_args!(
                "after a crash the store holds epoch {} but epoch {} was shown",
                s.epoch, self.max_epoch_shown
            ));
        }
        self.nodes[i].role = Role::Follower;
        self.nodes[i].followed = self.store.state.clone();
        self.nodes[i].seen = Some(self.store.version);
        if self.holder.is_none() {
            self.acquire(i);
        }
    }

    /// The lease changes hands; the old leader may not notice for a while.
    fn hand_over(&mut self) {
        let Some(old) = self.holder else {
            if let Some(i) = (0..2).find(|&i| self.nodes[i].role != Role::Down) {
                self.acquire(i);
            }
            return;
        };
        let new = 1 - old;
        if self.nodes[new].role == Role::Down {
            return;
        }
        self.nodes[old].stale_for = self.rng.below(4) as u32;
        self.acquire(new);
        if self.nodes[old].stale_for == 0 {
            self.step_down(old);
        }
    }

    /// A leader that lost the lease stops, and shows what it stored last.
    fn step_down(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.role != Role::Leader {
            return;
        }
        node.followed = node.coordinator.take().map(|c| (**c.shown()).clone());
        node.role = Role::Follower;
    }

    fn one_step(&mut self) {
        self.step += 1;
        for i in 0..2 {
            if self.nodes[i].role == Role::Leader && self.holder != Some(i) {
                if self.nodes[i].stale_for == 0 {
                    self.step_down(i);
                } else {
                    self.nodes[i].stale_for -= 1;
                }
            }
        }
        let mut world_changed = false;
        match self.rng.below(100) {
            0..=7 if self.present() < 9 => {
                self.add_pod();
                world_changed = true;
            }
            8..=12 if self.present() > 1 => {
                if let Some(p) = self.pick_pod()
                    && let Some(pod) = self.pods.get_mut(&p)
                {
                    pod.present = false;
                    world_changed = true;
                }
            }
            13..=19 => {
                // A blip, shorter or longer than the grace.
                if let Some(p) = self.pick_pod() {
                    let back = if self.rng.chance(60) {
                        self.rng.millis(200, 8_000)
                    } else {
                        self.rng.millis(11_000, 30_000)
                    };
                    if let Some(pod) = self.pods.get_mut(&p) {
                        pod.ready = false;
                    }
                    self.returns.push((self.elapsed + back, p));
                    world_changed = true;
                }
            }
            20..=23 => {
                if let Some(p) = self.pick_pod()
                    && let Some(pod) = self.pods.get_mut(&p)
                {
                    pod.ready = !pod.ready;
                    world_changed = true;
                }
            }
            24..=26 => {
                if let Some(p) = self.pick_pod() {
                    let zone = format!("z{}", self.rng.below(3));
                    if let Some(pod) = self.pods.get_mut(&p) {
                        pod.zone = Some(zone);
                    }
                    world_changed = true;
                }
            }
            27..=30 => {
                // Back to the committed member set (a scale-up reverted).
                if let Some(committed) = self
                    .leader()
                    .and_then(|i| self.nodes[i].coordinator.as_ref())
                    .map(|c| c.state().committed.clone())
                    && !committed.is_empty()
                {
                    for (name, pod) in &mut self.pods {
                        let spec = committed.member(name.as_str());
                        pod.present = spec.is_some();
                        pod.ready = true;
                        pod.weight = spec.map_or(1, |s| s.weight);
                    }
                    self.returns.clear();
                    self.weight_reverts.clear();
                    world_changed = true;
                }
            }
            31..=50 => self.ack(),
            51..=53 => {
                // A duplicate ack.
                if let Some((_, id)) = self.acked.last().cloned()
                    && let Some(i) = self.leader()
                    && let Some(c) = self.nodes[i].coordinator.as_mut()
                {
                    let _ = c.move_done(&id);
                    self.track(i);
                    let _ = self.persist(i);
                }
            }
            54..=57 => {
                let i = self.rng.below(2) as usize;
                self.crash(i);
            }
            58..=61 => {
                let i = self.rng.below(2) as usize;
                self.restart(i);
            }
            62..=64 => self.store.fail_next = 1 + self.rng.below(3) as u32,
            65..=67 => {
                // A slow save: the world moves on while it is written.
                self.persist_all();
                let by = self.rng.millis(100, 4_000);
                self.advance(by);
            }
            68..=70 => {
                if self.outage_until.is_none() {
                    self.source_synced = false;
                    let now = self.now();
                    for i in 0..2 {
                        if let Some(c) = self.nodes[i].coordinator.as_mut() {
                            c.source_synced(false, now);
                            self.track(i);
                        }
                    }
                    let by = self.rng.millis(1_000, 40_000);
                    self.outage_until = Some(self.elapsed + by);
                }
            }
            71..=74 => self.hand_over(),
            75..=78 => {
                // A weight raised or lowered (the Service's annotation
                // edited), often put back: within the grace or after.
                if let Some(p) = self.pick_pod() {
                    let before = self.pods.get(&p).map_or(1, |pod| pod.weight);
                    let after = if before == 1 || (before < SIM_MAX_WEIGHT && self.rng.chance(50)) {
                        before + 1 + self.rng.below(u64::from(SIM_MAX_WEIGHT - before)) as u32
                    } else {
                        1 + self.rng.below(u64::from(before - 1)) as u32
                    };
                    if let Some(pod) = self.pods.get_mut(&p) {
                        pod.weight = after.clamp(1, SIM_MAX_WEIGHT);
                    }
                    if self.rng.chance(40) {
                        let back = if self.rng.chance(60) {
                            self.rng.millis(200, 8_000)
                        } else {
                            self.rng.millis(11_000, 30_000)
                        };
                        self.weight_reverts.push((self.elapsed + back, p, before));
                    }
                    world_changed = true;
                }
            }
            _ => {
                let by = if self.rng.chance(70) {
                    self.rng.millis(50, 3_000)
                } else {
                    self.rng.millis(3_000, 20_000)
                };
                self.advance(by);
            }
        }
        if world_changed {
            self.deliver();
        }
        if self.holder.is_none()
            && let Some(i) = (0..2).find(|&i| self.nodes[i].role == Role::Follower)
        {
            self.acquire(i);
        }
        self.persist_all();
        // Followers read the store.
        for node in &mut self.nodes {
            if node.role == Role::Follower {
                node.followed = self.store.state.clone().or(node.followed.take());
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let store_position = self.store.position();
        // Durability and monotonic epochs in what each node shows.
        for i in 0..2 {
            let Some(shown) = self.nodes[i].shown() else {
                continue;
            };
            if self.nodes[i].role == Role::Leader
                && shown.epoch + shown.revision > 0
                && shown.position() != self.nodes[i].max_shown
            {
                let bytes = shown.encode().expect("encodes");
                if !self.store.history.contains(&hash(&bytes)) {
                    self.fail(format_args!(
                        "node {i} shows epoch {} revision {} that was never stored",
                        shown.epoch, shown.revision
                    ));
                }
            }
            if shown.position() > store_position {
                self.fail(format_args!(
                    "node {i} shows {:?}, ahead of the store's {store_position:?}",
                    shown.position()
                ));
            }
            if shown.position() < self.nodes[i].max_shown {
                self.fail(format_args!(
                    "node {i} went back from {:?} to {:?}",
                    self.nodes[i].max_shown,
                    shown.position()
                ));
            }
            self.nodes[i].max_shown = shown.position();
            self.max_epoch_shown = self.max_epoch_shown.max(shown.epoch);
            // Readiness: ready ⇒ lookups answer and the last save succeeded.
            if self.nodes[i].role == Role::Leader
                && let Some(c) = &self.nodes[i].coordinator
                && c.readiness().is_ok()
            {
                let any_ready = self.delivered.iter().any(|m| m.ready && !m.terminating);
                if shown.committed.is_empty() && any_ready {
                    self.fail(format_args!("node {i} is ready but cannot answer lookups"));
                }
                if *c.store_health() != StoreHealth::Saved {
                    self.fail(format_args!("node {i} is ready but its last save failed"));
                }
            }
        }
        // Every new stored state against the previous one.
        if let Some(stored) = self.store.state.clone()
            && self.last_stored.as_ref() != Some(&stored)
        {
            let previous = self.last_stored.replace(stored.clone());
            self.check_transition(previous.as_ref(), &stored, None);
        }
        // Acked moves stay done.
        if let Some(stored) = &self.store.state {
            for (epoch, id) in &self.acked {
                if stored.epoch < *epoch {
                    self.fail(format_args!(
                        "acked move {id} of epoch {epoch} lost: store at {}",
                        stored.epoch
                    ));
                }
                if stored.epoch == *epoch
                    && let Some(p) = &stored.plan
                    && p.from_epoch == *epoch
                    && let Some(m) = p.plan.get(id)
                    && m.state != MoveState::Done
                {
                    self.fail(format_args!("acked move {id} is {} in the store", m.state));
                }
            }
        }
    }

    /// Counts the lineage of the stored state `now` (after `previous`), and
    /// checks that every move done since `previous` was acked by a shard
    /// that had its id from a plan of the lineage it is done in: a late
    /// report of a cancelled or replaced plan's move must never mark a
    /// later plan's move done (the cancel's cleanups may have dropped the
    /// copy). Also that the coordinator's own lineage numbers follow these
    /// (the same across revisions, a larger one for a plan made afresh).
    fn check_lineage(&mut self, previous: Option<&State>, now: &State) {
        let previous_lineage = previous.and_then(|p| self.lineage_at.get(&p.position()).copied());
        let before = previous.and_then(|p| p.in_flight());
        let continues = |plan: &PlanRecord| {
            before.is_some_and(|b| b.from_epoch == plan.from_epoch)
                && plan.state != PlanState::Committed
        };
        let lineage = match &now.plan {
            Some(record) if !continues(record) => {
                if previous.is_some_and(|p| p.lineage >= now.lineage) {
                    self.fail(format_args!(
                        "plan {} is made afresh but keeps lineage {} (it was {})",
                        record.id,
                        now.lineage,
                        previous.map_or(0, |p| p.lineage.0)
                    ));
                }
                self.lineage += 1;
                self.lineage
            }
            Some(record) => {
                if previous.is_some_and(|p| p.lineage != now.lineage) {
                    self.fail(format_args!(
                        "plan {} revises the plan before it but changed lineage {} to {}",
                        record.id,
                        previous.map_or(0, |p| p.lineage.0),
                        now.lineage
                    ));
                }
                self.lineage
            }
            None => self.lineage,
        };
        self.lineage_at.insert(now.position(), lineage);
        // Moves done since `previous`, with the lineage they are done in.
        let was_done = |id: &str, plan: Option<&PlanRecord>| {
            plan.and_then(|p| p.plan.get(id))
                .is_some_and(|m| m.state == MoveState::Done)
        };
        let mut done: Vec<(String, u64)> = Vec::new();
        if let Some(record) = now
            .plan
            .as_ref()
            .filter(|p| p.state != PlanState::Committed)
        {
            let earlier = before.filter(|_| continues(record));
            for m in record
                .plan
                .moves
                .iter()
                .filter(|m| m.state == MoveState::Done)
            {
                if !was_done(m.id.as_str(), earlier) {
                    done.push((m.id.to_string(), lineage));
                }
            }
        }
        if let (Some(b), Some(committed_lineage)) = (before, previous_lineage)
            && now.epoch == b.to_epoch
        {
            // The plan stored before committed (in ack mode its done moves
            // are kept as the last committed ones).
            for m in &now.last_committed {
                if !was_done(m.id.as_str(), Some(b)) {
                    done.push((m.id.to_string(), committed_lineage));
                }
            }
        }
        for (id, lineage) in done {
            let meant = self.meant.get(&id);
            if !meant.is_some_and(|m| m.contains(&lineage)) {
                self.fail(format_args!(
                    "move {id} is done in plan lineage {lineage}, but the shards that acked it had it \
                     from lineages {meant:?}: a late report of another plan's move marked it done"
                ));
            }
        }
        // What shards learn: the ids of this plan, with its lineage (a
        // bounded memory, newest in place of a random older one).
        for m in now.plan.iter().flat_map(|p| &p.plan.moves) {
            let entry = (m.id.to_string(), lineage);
            if self.known_ids.contains(&entry) {
                continue;
            }
            if self.known_ids.len() < 64 {
                self.known_ids.push(entry);
            } else {
                let k = self.rng.below(64) as usize;
                self.known_ids[k] = entry;
            }
        }
    }

    /// The pace (constant in a run): no member has more moves in progress
    /// than its limit, nor the cluster, and every free slot a pending move
    /// could take is taken (a done move frees its slots at once), except
    /// by moves from or to a member the writer knew to be down (they wait;
    /// with `unavailable` unknown, that part is not checked).
    fn check_pace(&self, record: &PlanRecord, unavailable: Option<&BTreeSet<MemberId>>) {
        let pace = record.settings.pace;
        let limit = pace
            .max_moves_per_member
            .map_or(usize::MAX, |n| n.get() as usize);
        for (member, n) in ringleader_planner::in_progress(&record.plan) {
            if n > limit {
                self.fail(format_args!(
                    "{member} has {n} moves in progress, above the limit of {limit}; plan {}",
                    record.id
                ));
            }
        }
        let running = record
            .plan
            .moves
            .iter()
            .filter(|m| m.state == MoveState::Ready)
            .count();
        if pace
            .max_moves
            .is_some_and(|max| running > max.get() as usize)
        {
            self.fail(format_args!(
                "{running} moves in progress, above --max-moves"
            ));
        }
        let Some(unavailable) = unavailable else {
            return;
        };
        let mut again = record.plan.clone();
        let target = &record.target;
        let more = ringleader_planner::pace(
            &mut again,
            pace,
            |id| target.member(id.as_str()).is_none(),
            |id| unavailable.contains(id),
        );
        if !more.is_empty() {
            self.fail(format_args!(
                "moves {more:?} could run but wait: the plan {} was not paced after its last change",
                record.id
            ));
        }
    }

    /// Stability, between consecutive revisions a coordinator makes (shown
    /// or not): moves still needed keep id, source and state.
    fn check_stability(&self, old: &PlanRecord, now: &State) {
        let Some(record) = &now.plan else {
            return;
        };
        if record.from_epoch != old.from_epoch || record.state == PlanState::Committed {
            return;
        }
        let to = Placement::new(record.target.clone(), record.settings.replication())
            .expect("valid settings");
        let from = Placement::new(now.committed.clone(), now.settings.replication())
            .expect("valid settings");
        let held = holdings_with(&from, &record.plan);
        let old_held = holdings_with(&from, &old.plan);
        let target = Holdings::of(&to);
        for m in old.plan.moves.iter().filter(|m| m.state.is_runnable()) {
            let needed = record.target.member(m.from.as_str()).is_some()
                && old_held.holds_all(&m.from, m.range)
                && held.holds_none(&m.to, m.range)
                && target.holds_all(&m.to, m.range);
            let kept = record
                .plan
                .get(m.id.as_str())
                .is_some_and(|n| n.state.is_runnable() && n.from == m.from && n.to == m.to);
            if needed && !kept {
                self.fail(format_args!(
                    "move {} ({} → {}) is still needed but was not kept: now {:?}; plan {} -> {}",
                    m.id,
                    m.from,
                    m.to,
                    record.plan.get(m.id.as_str()).map(|n| n.state),
                    old.id,
                    record.id,
                ));
            }
        }
    }

    /// Follows node `i`'s working state after every input.
    fn track(&mut self, i: usize) {
        let Some(c) = self.nodes[i].coordinator.as_ref() else {
            self.working[i] = None;
            return;
        };
        let now = c.state();
        if let Some(previous) = &self.working[i]
            && previous.position() != now.position()
            && let Some(old) = previous.in_flight()
        {
            self.check_stability(old, now);
        }
        if std::env::var("RINGLEADER_SIM_TRACE").is_ok() {
            eprintln!(
                "step {} node {i}: epoch {} rev {} plan {:?}",
                self.step,
                now.epoch,
                now.revision,
                now.plan
                    .as_ref()
                    .map(|p| (p.id.as_str(), p.state, p.plan.moves.len()))
            );
        }
        self.working[i] = Some(now.clone());
    }

    /// `unavailable`: the members the writer knew to be down, when known.
    fn check_transition(
        &mut self,
        previous: Option<&State>,
        now: &State,
        unavailable: Option<&BTreeSet<MemberId>>,
    ) {
        if let Some(p) = previous.filter(|p| p.epoch < now.epoch) {
            self.figures.commits += 1;
            let reweighted = now.committed.members().iter().any(|m| {
                p.committed
                    .member(m.id.as_str())
                    .is_some_and(|before| before.weight != m.weight)
            });
            if reweighted {
                self.figures.weight_commits += 1;
            }
            // Balance: every committed one-replica `balanced` ring is
            // within the allocator's bound (an unbalanced one makes the next
            // plan pay to repair it: seed 219,731).
            let settings = now.settings;
            if settings.rf == 1 && settings.strategy == Strategy::Balanced {
                let bound = crate::rebalance::balance_bound(settings.tokens_per_member);
                let balance = now.committed.balance();
                if balance > bound + 1e-9 {
                    self.fail(format_args!(
                        "epoch {} committed a ring at balance {balance:.4}, over the bound {bound:.4} for {} tokens per member; members {:?}",
                        now.epoch,
                        settings.tokens_per_member,
                        now.committed.members().iter().map(|m| (m.id.as_str(), m.weight)).collect::<Vec<_>>(),
                    ));
                }
            }
            self.acked.retain(|(e, _)| *e >= now.epoch);
        }
        self.check_lineage(previous, now);
        let Some(record) = &now.plan else {
            return;
        };
        if record.state == PlanState::Committed {
            return;
        }
        if record.state == PlanState::InProgress && record.settings.mode == Mode::Ack {
            self.check_pace(record, unavailable);
        }
        let from = Placement::new(now.committed.clone(), now.settings.replication())
            .expect("valid settings");
        let to = Placement::new(record.target.clone(), record.settings.replication())
            .expect("valid settings");
        let held = holdings_with(&from, &record.plan);
        let previous_plan = previous
            .and_then(|p| p.plan.as_ref())
            .filter(|p| p.from_epoch == record.from_epoch && p.state == PlanState::InProgress);
        let same_moves = previous_plan.is_some_and(|p| {
            p.id == record.id
                && p.plan.moves.len() == record.plan.moves.len()
                && p.plan
                    .moves
                    .iter()
                    .zip(&record.plan.moves)
                    .all(|(a, b)| a.id == b.id && a.range == b.range)
        });
        if record.state == PlanState::Cancelled {
            if record.plan.moves.iter().any(|m| m.state.is_open()) {
                self.fail("a cancelled plan still has open moves");
            }
            if previous
                .and_then(|p| p.plan.as_ref())
                .map(|p| (&p.id, p.state))
                != Some((&record.id, PlanState::Cancelled))
            {
                self.figures.cancels += 1;
            }
        }
        // Visibility: a revision lists every move of the plan it revises;
        // done stays done, cancelled stays cancelled.
        if let Some(old) = previous_plan {
            for m in &old.plan.moves {
                let Some(n) = record.plan.get(m.id.as_str()) else {
                    self.fail(format_args!(
                        "move {} ({}) vanished from plan {} (now {}); writers {:?}; roles {:?}",
                        m.id,
                        m.state,
                        old.id,
                        record.id,
                        self.store.writers.iter().rev().take(4).collect::<Vec<_>>(),
                        self.nodes.iter().map(|n| n.role).collect::<Vec<_>>()
                    ));
                };
                let ok = match m.state {
                    MoveState::Done => n.state == MoveState::Done,
                    // A move needed again (same range, source and
                    // target) comes back under its id in a revision.
                    MoveState::Cancelled => true,
                    _ => true,
                };
                if !ok {
                    self.fail(format_args!(
                        "move {} went from {} to {}",
                        m.id, m.state, n.state
                    ));
                }
            }
        }
        // source_lost only when every holder of the range is gone.
        for m in record
            .plan
            .moves
            .iter()
            .filter(|m| m.state == MoveState::SourceLost)
        {
            if let Some(h) = held
                .holders_over(m.range)
                .into_iter()
                .find(|h| record.target.member(h.as_str()).is_some())
            {
                self.fail(format_args!(
                    "move {} ({} → {}, {}) is source_lost but {h} holds its range; plan {} {:?}; previous plan {:?}",
                    m.id, m.from, m.to, m.range, record.id, record.state,
                    previous.and_then(|p| p.plan.as_ref()).map(|p| (p.id.clone(), p.state, p.plan.get(m.id.as_str()).map(|o| o.state)))
                ));
            }
        }
        // The grace counted only while synced: a member leaves only after
        // being down (as the source said, while synced) for the grace.
        if let Some(p) = previous {
            let before_ring = p.in_flight().map_or(&p.committed, |f| &f.target);
            if !same_moves {
                for spec in before_ring.members() {
                    if record.target.member(spec.id.as_str()).is_none() {
                        let counted = self
                            .pods
                            .get(spec.id.as_str())
                            .map_or(Duration::MAX, |pod| pod.down_counted.max(pod.last_streak));
                        if counted < GRACE {
                            self.fail(format_args!(
                                "{} left the ring after {counted:?} down while synced (grace {GRACE:?}); world {:?}; delivered {:?}; nodes {:?}",
                                spec.id,
                                self.pods.get(spec.id.as_str()).map(|p| (p.present, p.ready)),
                                self.delivered.get(spec.id.as_str()).map(|m| m.ready),
                                self.nodes.iter().map(|n| (n.role, n.coordinator.as_ref().and_then(|c| c.lifecycles().get(&spec.id).copied()), n.coordinator.as_ref().map(|c| c.state().committed.members().iter().map(|m| m.id.to_string()).collect::<Vec<_>>()))).collect::<Vec<_>>()
                            ));
                        }
                    }
                }
            }
        }
        if record.state != PlanState::InProgress || same_moves {
            return;
        }
        // No orphaned data: carrying the plan out gives the target.
        let after = held.overlay(
            record
                .plan
                .moves
                .iter()
                .filter(|m| m.state.is_open())
                .map(|m| (m.range, &m.to)),
            record.plan.cleanups.iter().map(|c| (c.range, &c.member)),
        );
        if after.canonical() != Holdings::of(&to).canonical() {
            self.fail(format_args!(
                "plan {} does not lead to its target",
                record.id
            ));
        }
        // Minimality, measured from the holdings.
        let rf = to.effective_replication().factor;
        let moved: u128 = record
            .plan
            .moves
            .iter()
            .filter(|m| m.state.is_open())
            .map(|m| m.range.len())
            .sum();
        let ideal = ideal_from(&held, &to) * TOKEN_SPACE as f64 * rf as f64;
        let replicas = TOKEN_SPACE as f64 * rf as f64;
        let ratio = if ideal < 0.01 * replicas {
            1.0
        } else {
            moved as f64 / ideal
        };
        let progressed = record.plan.moves.iter().any(|m| m.state == MoveState::Done);
        let key = (self.settings.rf, progressed);
        let key = if self.settings.strategy == Strategy::Balanced {
            key
        } else {
            (0, progressed)
        };
        *self.figures.plans.entry(key).or_default() += 1;
        let worst = self.figures.worst.entry(key).or_insert(0.0);
        *worst = worst.max(ratio);
        let zones_changed = record.target.members().iter().any(|m| {
            now.committed
                .member(m.id.as_str())
                .is_some_and(|before| before.zone != m.zone)
        });
        if !zones_changed {
            let worst = self.figures.worst_same_zones.entry(key).or_insert(0.0);
            *worst = worst.max(ratio);
        }
        let zone_bound = zone_ideal_from(&held, &to) * replicas;
        if zone_bound >= 0.01 * replicas {
            let worst = self.figures.worst_zone_bound.entry(key).or_insert(0.0);
            *worst = worst.max(moved as f64 / zone_bound.max(ideal));
        }
        if std::env::var("RINGLEADER_SIM_SHOW_RATIO")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|show| ratio > show)
        {
            eprintln!(
                "sim seed {} step {}: moved/ideal {ratio:.3} ({:.4} / {:.4} of replicas), rf {rf}, {:?}, {} moves done; members {:?} -> {:?}; {} tokens per member, zone-aware {}; weights {:?} -> {:?}; replica balance {:.3} -> {:.3}",
                self.seed,
                self.step,
                moved as f64 / replicas,
                ideal / replicas,
                self.settings.strategy,
                record
                    .plan
                    .moves
                    .iter()
                    .filter(|m| m.state == MoveState::Done)
                    .count(),
                now.committed
                    .members()
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>(),
                record
                    .target
                    .members()
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>(),
                self.settings.tokens_per_member,
                self.settings.zone_aware,
                now.committed
                    .members()
                    .iter()
                    .map(|m| m.weight)
                    .collect::<Vec<_>>(),
                record
                    .target
                    .members()
                    .iter()
                    .map(|m| m.weight)
                    .collect::<Vec<_>>(),
                now.committed.replica_balance(&from.effective_replication()),
                record.target.replica_balance(&to.effective_replication()),
            );
        }
        let excess = self.figures.excess.entry(key).or_insert(0.0);
        *excess = excess.max((moved as f64 - ideal) / replicas);
        // Asserted where the coordinator can reach it: rf 1, balanced
        // tokens (hashed ones are only as even as their count allows),
        // every plan and every revision: within 5 % of the ideal. From the
        // committed placement (or before any move is done) the allocator's
        // edits get there; after moves are done a range can have several
        // holders, and the candidate laid out from the holdings
        // (crate::held_target) moves the ideal exactly (seeds
        // 250,001–270,000 reached 1.67 with the allocator's edits alone;
        // 421,289 and 473,057, fresh plans of 3 members × 4 tokens with
        // weights changing, 1.10 and 1.19: the layout is tried for them
        // too).
        // Zone-aware with as many zones as replicas, each zone's tokens are
        // a one-replica ring and the same holds (the per-zone layout,
        // crate::held_target::zoned_target).
        let zones: BTreeSet<Option<&str>> = record
            .target
            .members()
            .iter()
            .map(|m| m.zone.as_deref())
            .collect();
        let one_ring_per_zone = self.settings.zone_aware
            && rf == self.settings.rf
            && zones.len() == rf
            && !zones.contains(&None);
        // There a range counts for one holder in each zone (DESIGN's ideal
        // lets two holders of one zone both keep it): the ideal zone by
        // zone, never below DESIGN's, is the bound.
        let least = if one_ring_per_zone {
            ideal.max(per_zone_ideal(&held, &record.target))
        } else {
            ideal
        };
        // A plan whose target is the one it had (lost moves given a source
        // once a done move holds their range) chose nothing: it was held to
        // this when its target was; done moves since shrink the ideal by
        // what they did, and whatever excess it had stays.
        let retargeted =
            previous_plan.is_none_or(|p| p.id != record.id || p.target != record.target);
        if retargeted
            && (self.settings.rf == 1 || one_ring_per_zone)
            && self.settings.strategy == Strategy::Balanced
            && moved as f64
                > crate::coordinator::MINIMAL_SLACK * least
                    + crate::coordinator::minimal_tokens(record.target.members().len())
        {
            self.fail(format_args!(
                "plan {} moves {:.5} of the data ({moved} tokens), the ideal from the holdings is {:.5}, the bound {:.5} (ratio {:.3}); {:?}; {} moves done before; revision of {:?}; members {:?} -> {:?}; zones {:?}; committed balance {:.4}, target balance {:.4}",
                record.id,
                moved as f64 / TOKEN_SPACE as f64,
                ideal / TOKEN_SPACE as f64,
                least / TOKEN_SPACE as f64,
                moved as f64 / least,
                self.settings,
                record.plan.moves.iter().filter(|m| m.state == MoveState::Done).count(),
                previous_plan.map(|p| p.id.clone()),
                now.committed.members().iter().map(|m| (m.id.as_str(), m.weight)).collect::<Vec<_>>(),
                record.target.members().iter().map(|m| (m.id.as_str(), m.weight)).collect::<Vec<_>>(),
                record.target.members().iter().map(|m| m.zone.as_deref()).collect::<Vec<_>>(),
                now.committed.balance(),
                record.target.balance(),
            ));
        }
    }
}

/// DESIGN §4's ideal zone by zone, in tokens of all replicas, for a
/// zone-aware `target` with as many zones as replicas: there each zone's
/// tokens are a one-replica ring of their own, so a range held by several
/// members of one zone counts for one of them (a tighter bound than
/// [`ideal_from`], which lets up to `rf` holders keep it whatever their
/// zones).
fn per_zone_ideal(held: &Holdings, target: &Ring) -> f64 {
    let zones: BTreeSet<&str> = target
        .members()
        .iter()
        .filter_map(|m| m.zone.as_deref())
        .collect();
    zones
        .into_iter()
        .map(|zone| {
            let members: Vec<MemberSpec> = target
                .members()
                .iter()
                .filter(|m| m.zone.as_deref() == Some(zone))
                .cloned()
                .collect();
            let tokens: Vec<_> = target
                .token_owners()
                .filter(|(_, id)| members.iter().any(|m| &m.id == *id))
                .map(|(t, id)| (t, id.clone()))
                .collect();
            let ring = Ring::from_assignments(target.config(), members, tokens)
                .expect("a zone's tokens make a ring");
            let placement =
                Placement::new(ring, Replication::new(1, false)).expect("one replica is valid");
            ideal_from(held, &placement) * TOKEN_SPACE as f64
        })
        .sum()
}

/// Runs `steps` steps of seed `seed`; panics on the first broken rule.
pub(crate) fn run(seed: u64, steps: u64) -> Figures {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.one_step();
    }
    sim.figures.steps = steps;
    sim.figures
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_coordinator_keeps_every_rule_over_random_histories() {
    let seeds = env("RINGLEADER_SIM_SEEDS", 300);
    let first = env("RINGLEADER_SIM_FIRST_SEED", 1);
    let steps = env("RINGLEADER_SIM_STEPS", 200);
    let threads = env("RINGLEADER_SIM_THREADS", 1).max(1);
    let started = Instant::now();
    let totals = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut total = Figures::default();
                    let mut seed = first + t;
                    while seed < first + seeds {
                        total.absorb(run(seed, steps));
                        seed += threads;
                        let done = (seed - first) / threads;
                        if done.is_multiple_of(5000) {
                            eprintln!(
                                "sim progress: thread {t} ran {done} seeds (up to seed {}) in {:?}, clean",
                                seed - threads,
                                started.elapsed()
                            );
                        }
                    }
                    total
                })
            })
            .collect();
        let mut all = Figures::default();
        for h in handles {
            all.absorb(h.join().expect("a simulation thread panicked"));
        }
        all
    });
    eprintln!(
        "sim: seeds {first}..{} × {steps} steps in {:?}: {} steps, {} commits ({} changing a weight), {} cancels, {} take-overs; plans checked by (rf, moves done) {:?}; worst moved/ideal (ideal ≥ 1 %) {:?}; worst moved − ideal (of all replicas) {:?}; worst moved/ideal where no member changes zone {:?}; worst moved over the zone-aware bound {:?}",
        first + seeds,
        started.elapsed(),
        totals.steps,
        totals.commits,
        totals.weight_commits,
        totals.cancels,
        totals.takeovers,
        totals.plans,
        totals.worst,
        totals.excess,
        totals.worst_same_zones,
        totals.worst_zone_bound
    );
    if seeds >= 100 && steps >= 100 {
        assert!(
            totals.weight_commits > 0,
            "no weight change was ever committed: the histories do not exercise weights"
        );
    }
}
