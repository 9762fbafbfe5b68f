//! The immutable ring: sorted tokens, their owners, and every query on them.

use crate::index::TokenIndex;
use crate::{MemberId, MemberSpec, RingError, TOKEN_SPACE, Token, TokenRange, hash_key};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Replication factors up to this walk the ring with a fixed buffer
/// ([`Ring::replica_indices_at`]).
const WALK_BUFFER: usize = 8;

/// Owners a replica walk reads between two checks of whether it is done:
/// one member per zone over three zones takes 5.5 steps on average and is
/// done within 8 nine times out of ten; distinct members on a ring of many
/// members take `factor` steps.
const ZONE_STEP: usize = 8;
const DISTINCT_STEP: usize = 4;

/// No member: marks a free slot of the walk's buffer.
const NONE: u32 = u32::MAX;

/// The most tokens one member may carry (tokens per member × weight).
pub const MAX_TOKENS_PER_MEMBER: u32 = 1 << 16;

/// How tokens are chosen for members.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Member `m`'s `i`-th token is a hash of `(m, i)`: stateless and
    /// reproducible from member ids alone; balance only as good as the number
    /// of tokens allows.
    Hashed,
    /// Tokens are chosen so ownership stays even with few tokens: a joining
    /// member takes its share from the most loaded members, a leaving member's
    /// share goes to the least loaded. Depends on history, so it must be
    /// persisted.
    #[default]
    Balanced,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Hashed => "hashed",
            Strategy::Balanced => "balanced",
        })
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hashed" => Ok(Strategy::Hashed),
            "balanced" => Ok(Strategy::Balanced),
            other => Err(format!(
                "unknown strategy {other:?}: expected \"balanced\" or \"hashed\""
            )),
        }
    }
}

/// Settings of a ring that stay fixed over its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RingConfig {
    /// Token allocation strategy.
    pub strategy: Strategy,
    /// Tokens per unit of weight.
    pub tokens_per_member: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Balanced,
            tokens_per_member: 16,
        }
    }
}

impl RingConfig {
    /// A config with the given strategy and tokens per member.
    pub fn new(strategy: Strategy, tokens_per_member: u32) -> Self {
        Self {
            strategy,
            tokens_per_member,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), RingError> {
        if self.tokens_per_member == 0 || self.tokens_per_member > MAX_TOKENS_PER_MEMBER {
            return Err(RingError::BadTokensPerMember {
                got: self.tokens_per_member,
                max: MAX_TOKENS_PER_MEMBER,
            });
        }
        Ok(())
    }

    /// Tokens a member of `weight` is meant to carry.
    pub(crate) fn tokens_for(&self, spec: &MemberSpec) -> Result<u32, RingError> {
        let tokens = u64::from(self.tokens_per_member) * u64::from(spec.weight);
        if spec.weight == 0 {
            return Err(RingError::ZeroWeight(spec.id.clone()));
        }
        if tokens > u64::from(MAX_TOKENS_PER_MEMBER) {
            return Err(RingError::WeightTooLarge {
                id: spec.id.clone(),
                weight: spec.weight,
                tokens,
                max: u64::from(MAX_TOKENS_PER_MEMBER),
            });
        }
        Ok(tokens as u32)
    }
}

/// How many replicas a key has and whether they must span zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replication {
    /// Replication factor: distinct members per key.
    pub factor: usize,
    /// Take one member per zone first (as Cassandra's NetworkTopologyStrategy
    /// and dskit's zone-aware replication do), then fill with distinct members
    /// when there are fewer zones than the factor.
    pub zone_aware: bool,
}

impl Replication {
    /// `factor` replicas, zone-aware or not.
    pub fn new(factor: usize, zone_aware: bool) -> Self {
        Self { factor, zone_aware }
    }

    /// One replica: just the owner.
    pub const SINGLE: Replication = Replication {
        factor: 1,
        zone_aware: false,
    };
}

/// Where a token lands: the position of its owning token, that token's range
/// and its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location<'a> {
    /// Position of the owning token in the sorted token array.
    pub position: usize,
    /// The owning token's range `(previous token, token]`.
    pub range: TokenRange,
    /// The member that owns the range.
    pub owner: &'a MemberId,
}

/// A member's share of the ring.
#[derive(Clone, Debug, PartialEq)]
pub struct Ownership {
    /// The member.
    pub id: MemberId,
    /// Fraction of the token space (or of all replicas) it holds, in [0, 1].
    pub fraction: f64,
    /// The fraction its weight entitles it to.
    pub target: f64,
}

/// A virtual-node consistent-hash ring.
///
/// Immutable: changes produce a new ring ([`Ring::apply`]), so a reader can
/// keep using the old one while the next is built. Tokens are sorted and
/// distinct; token `t` owns `(previous token, t]`, the first token also owns
/// the wrap-around part.
///
/// Cloning is cheap: the arrays are shared behind an `Arc`, so the
/// coordinator, its state, its plan and every published view can hold the
/// same ring without copying megabytes.
#[derive(Clone)]
pub struct Ring(pub(crate) Arc<RingData>);

/// The contents of a [`Ring`].
pub(crate) struct RingData {
    pub(crate) config: RingConfig,
    /// Sorted by id; a member's index here is what `owners` holds.
    pub(crate) members: Vec<MemberSpec>,
    /// Zone number of each member (members without a zone share one number).
    zone_of: Vec<u32>,
    zone_count: usize,
    pub(crate) tokens: Vec<Token>,
    pub(crate) owners: Vec<u32>,
    /// The lookup index, built by the first lookup or by
    /// [`Ring::prepare_lookups`]: a ring made on the way to a plan (an edit
    /// that loses to another candidate, one polished again, a plan's target
    /// compared and stored) is never looked up in, and building the index
    /// was 1.8 ms of every such ring at 256,000 tokens.
    index: OnceLock<TokenIndex>,
    /// Each member's primary ownership in tokens ([`Ring::owned_tokens`]),
    /// computed once: the balance, the figures and the allocator's bound
    /// all start from it.
    owned: OnceLock<Vec<u128>>,
    /// For each position, how far clockwise the second and the third zone
    /// begin ([`zone_steps`]); built by the first zone-aware query of 2 or 3
    /// replicas, so a ring never asked for them (a ring of one zone, a
    /// client asking owners only) holds none.
    zone_steps: OnceLock<Vec<[u8; 2]>>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("config", &self.0.config)
            .field("members", &self.0.members.len())
            .field("tokens", &self.0.tokens.len())
            .finish()
    }
}

impl PartialEq for Ring {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || self.0.config == other.0.config
                && self.0.members == other.0.members
                && self.0.tokens == other.0.tokens
                && self.0.owners == other.0.owners
    }
}

impl Eq for Ring {}

impl Ring {
    /// An empty ring.
    pub fn new(config: RingConfig) -> Result<Self, RingError> {
        config.validate()?;
        Ok(Self::from_sorted_parts(
            config,
            Vec::new(),
            Vec::new(),
            Vec::new(),
        ))
    }

    /// A ring holding `members`, with tokens chosen by the config's strategy.
    pub fn with_members(
        config: RingConfig,
        members: impl IntoIterator<Item = MemberSpec>,
    ) -> Result<Self, RingError> {
        Self::new(config)?.apply(&crate::MembershipChange {
            join: members.into_iter().collect(),
            ..Default::default()
        })
    }

    /// A ring from explicit token assignments, as a client receives them
    /// from `GET /v1/ring?tokens=true`. Checks every invariant: unique
    /// non-empty ids, weights, distinct tokens, tokens only of listed members,
    /// every member with at least one token.
    pub fn from_assignments(
        config: RingConfig,
        members: impl IntoIterator<Item = MemberSpec>,
        tokens: impl IntoIterator<Item = (Token, MemberId)>,
    ) -> Result<Self, RingError> {
        config.validate()?;
        let mut members: Vec<MemberSpec> = members.into_iter().collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        for pair in members.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(RingError::DuplicateMember(pair[0].id.clone()));
            }
        }
        for m in &members {
            if m.id.as_str().is_empty() {
                return Err(RingError::EmptyMemberId);
            }
            config.tokens_for(m)?;
        }
        let mut assigned: BTreeMap<Token, u32> = BTreeMap::new();
        let mut has_token = vec![false; members.len()];
        for (token, id) in tokens {
            let index = members
                .binary_search_by(|m| m.id.cmp(&id))
                .map_err(|_| RingError::UnknownMember(id.clone()))?;
            if assigned.insert(token, index as u32).is_some() {
                return Err(RingError::InvalidSnapshot(format!(
                    "token {token} is assigned twice"
                )));
            }
            has_token[index] = true;
        }
        if let Some(i) = has_token.iter().position(|&h| !h) {
            return Err(RingError::InvalidSnapshot(format!(
                "member {:?} has no token",
                members[i].id.as_str()
            )));
        }
        let (tokens, owners) = assigned.into_iter().unzip();
        Ok(Self::from_sorted_parts(config, members, tokens, owners))
    }

    /// A ring from members sorted by id, tokens sorted ascending and the
    /// index (into `members`) of each token's owner: the form a stored ring
    /// is read back from without re-sorting. Checks every invariant (as
    /// [`Ring::from_assignments`]) and reports a broken one as
    /// [`RingError::InvalidSnapshot`] (or the member error it is).
    pub fn from_sorted(
        config: RingConfig,
        members: Vec<MemberSpec>,
        tokens: Vec<Token>,
        owners: Vec<u32>,
    ) -> Result<Self, RingError> {
        check_parts(&config, &members, &tokens, &owners)?;
        Ok(Self::from_sorted_parts(config, members, tokens, owners))
    }

    /// Checks every invariant [`Ring::from_sorted`] checks (what a stored
    /// ring must satisfy to be read back), in one pass over the arrays.
    pub fn check(&self) -> Result<(), RingError> {
        check_parts(
            &self.0.config,
            &self.0.members,
            &self.0.tokens,
            &self.0.owners,
        )
    }

    /// Builds a ring from members sorted by id and `(token, member index)`
    /// pairs sorted by token. Callers guarantee both orders and distinctness.
    pub(crate) fn from_sorted_parts(
        config: RingConfig,
        members: Vec<MemberSpec>,
        tokens: Vec<Token>,
        owners: Vec<u32>,
    ) -> Self {
        let mut zones: BTreeMap<Option<&str>, u32> = BTreeMap::new();
        for m in &members {
            let next = zones.len() as u32;
            zones.entry(m.zone.as_deref()).or_insert(next);
        }
        let zone_of: Vec<u32> = members.iter().map(|m| zones[&m.zone.as_deref()]).collect();
        let zone_count = zones.len();
        Self(Arc::new(RingData {
            config,
            members,
            zone_of,
            zone_count,
            tokens,
            owners,
            index: OnceLock::new(),
            owned: OnceLock::new(),
            zone_steps: OnceLock::new(),
        }))
    }

    /// Whether `other` is this very ring (a clone of it), not merely an
    /// equal one: a constant-time test for caches keyed by a ring.
    pub fn is_same(&self, other: &Ring) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The lookup index, built on first use.
    #[inline]
    fn index(&self) -> &TokenIndex {
        self.0
            .index
            .get_or_init(|| TokenIndex::build(&self.0.tokens, &self.0.owners))
    }

    /// Builds what lookups read (the token index) now, if no lookup has
    /// yet: a server calls it for a ring it is about to serve, off the path
    /// that made the ring, so that no request pays for it.
    pub fn prepare_lookups(&self) {
        self.index();
    }

    /// The ring's settings.
    pub fn config(&self) -> RingConfig {
        self.0.config
    }

    /// Members sorted by id.
    pub fn members(&self) -> &[MemberSpec] {
        &self.0.members
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.members.len()
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.0.members.is_empty()
    }

    /// The member with this id.
    pub fn member(&self, id: &str) -> Option<&MemberSpec> {
        self.member_index(id).map(|i| &self.0.members[i])
    }

    /// Position of a member in [`Ring::members`].
    pub fn member_index(&self, id: &str) -> Option<usize> {
        self.0
            .members
            .binary_search_by(|m| m.id.as_str().cmp(id))
            .ok()
    }

    /// The sorted token array.
    pub fn tokens(&self) -> &[Token] {
        &self.0.tokens
    }

    /// The member index owning each token of [`Ring::tokens`].
    pub fn owner_indices(&self) -> &[u32] {
        &self.0.owners
    }

    /// Every token with its owner, sorted by token.
    pub fn token_owners(&self) -> impl ExactSizeIterator<Item = (Token, &MemberId)> + '_ {
        self.0
            .tokens
            .iter()
            .zip(&self.0.owners)
            .map(|(&t, &o)| (t, &self.0.members[o as usize].id))
    }

    /// The tokens of one member, sorted.
    pub fn tokens_of(&self, id: &str) -> Result<Vec<Token>, RingError> {
        let member = self
            .member_index(id)
            .ok_or_else(|| RingError::UnknownMember(id.into()))? as u32;
        Ok(self
            .0
            .tokens
            .iter()
            .zip(&self.0.owners)
            .filter(|&(_, &o)| o == member)
            .map(|(&t, _)| t)
            .collect())
    }

    /// The zone number of a member index (members sharing a zone share it).
    pub fn zone_index(&self, member: usize) -> u32 {
        self.0.zone_of[member]
    }

    /// Number of distinct zones (a missing zone counts as one zone).
    pub fn zone_count(&self) -> usize {
        self.0.zone_count
    }

    /// The position of the token owning `token`: the first token `>= token`,
    /// wrapping to the first. The ring must not be empty.
    #[inline]
    fn successor(&self, token: Token) -> usize {
        self.index().lookup(&self.0.tokens, &self.0.owners, token).0
    }

    /// The range of the token at `position`.
    pub fn range_at(&self, position: usize) -> TokenRange {
        let end = self.0.tokens[position];
        let start = if position == 0 {
            self.0.tokens[self.0.tokens.len() - 1]
        } else {
            self.0.tokens[position - 1]
        };
        TokenRange::new(start, end)
    }

    /// The owner of a key (hashed with xxh3-64).
    #[inline]
    pub fn owner(&self, key: &[u8]) -> Result<&MemberId, RingError> {
        self.owner_of_token(hash_key(key))
    }

    /// The owner of a token.
    #[inline]
    pub fn owner_of_token(&self, token: Token) -> Result<&MemberId, RingError> {
        if self.0.tokens.is_empty() {
            return Err(RingError::Empty);
        }
        let owner = self.index().owner(&self.0.tokens, &self.0.owners, token);
        Ok(&self.0.members[owner as usize].id)
    }

    /// Where a token lands: owning position, range and owner.
    pub fn locate(&self, token: Token) -> Result<Location<'_>, RingError> {
        if self.0.tokens.is_empty() {
            return Err(RingError::Empty);
        }
        let position = self.successor(token);
        Ok(Location {
            position,
            range: self.range_at(position),
            owner: &self.0.members[self.0.owners[position] as usize].id,
        })
    }

    /// Checks a replication setting against this ring.
    pub fn check_replication(&self, replication: &Replication) -> Result<(), RingError> {
        if self.0.tokens.is_empty() {
            return Err(RingError::Empty);
        }
        if replication.factor == 0 {
            return Err(RingError::ZeroReplicationFactor);
        }
        if replication.factor > self.0.members.len() {
            return Err(RingError::ReplicationFactorTooLarge {
                requested: replication.factor,
                members: self.0.members.len(),
            });
        }
        Ok(())
    }

    /// The replicas of a key: `replication.factor` distinct members, walking
    /// clockwise from the key's token (zone-aware: one per zone first).
    pub fn replicas(
        &self,
        key: &[u8],
        replication: &Replication,
    ) -> Result<Vec<&MemberId>, RingError> {
        self.replicas_of_token(hash_key(key), replication)
    }

    /// The replicas of a token.
    pub fn replicas_of_token(
        &self,
        token: Token,
        replication: &Replication,
    ) -> Result<Vec<&MemberId>, RingError> {
        self.check_replication(replication)?;
        let mut picked = Vec::with_capacity(replication.factor);
        self.replica_indices_at(self.successor(token), replication, &mut picked);
        Ok(picked
            .into_iter()
            .map(|m| &self.0.members[m as usize].id)
            .collect())
    }

    /// The replicas of a key as member indices (into [`Ring::members`]),
    /// written into `out` without allocating: the hot-path form of
    /// [`Ring::replicas`].
    pub fn replica_indices(
        &self,
        key: &[u8],
        replication: &Replication,
        out: &mut Vec<u32>,
    ) -> Result<(), RingError> {
        self.check_replication(replication)?;
        self.replica_indices_at(self.successor(hash_key(key)), replication, out);
        Ok(())
    }

    /// Member indices of the replicas of the range at `position`, into `out`
    /// (cleared first). The replication must have passed
    /// [`Ring::check_replication`]; then exactly `factor` distinct members
    /// come out, the owner first.
    #[inline]
    pub fn replica_indices_at(
        &self,
        position: usize,
        replication: &Replication,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        if replication.factor == 1 {
            // Zones or not, the owner alone.
            out.push(self.0.owners[position]);
        } else if replication.zone_aware
            && replication.factor <= 3
            && replication.factor <= self.0.zone_count
            && self.replicas_by_zone_steps(position, replication.factor, out)
        {
            // One member from each of the first `factor` zones met: read
            // from the precomputed steps.
        } else if replication.factor <= WALK_BUFFER && self.0.zone_count <= 64 {
            self.replicas_walk_short(position, replication, out);
        } else {
            self.replicas_walk_long(position, replication, out);
        }
    }

    /// Zone-aware replicas for a factor of 2 or 3, no more than the zones:
    /// the owner at `position` and those where the walk meets its second
    /// and third zone, which [`zone_steps`] recorded. Writes them and returns
    /// true, or returns false (writing nothing) when a step is too long to
    /// have been recorded.
    #[inline(always)]
    fn replicas_by_zone_steps(&self, position: usize, factor: usize, out: &mut Vec<u32>) -> bool {
        let owners = &self.0.owners;
        let n = owners.len();
        let steps = self
            .0
            .zone_steps
            .get_or_init(|| zone_steps(owners, &self.0.zone_of, self.0.zone_count));
        let [second, third] = steps[position];
        if second == 0 || (factor == 3 && third == 0) {
            return false;
        }
        // A step is shorter than the ring: one subtraction wraps it.
        let wrap = |step: u8| {
            let at = position + usize::from(step);
            if at >= n { at - n } else { at }
        };
        let picks = [owners[position], owners[wrap(second)], owners[wrap(third)]];
        out.extend_from_slice(&picks[..factor]);
        true
    }

    /// The owners clockwise from `position`, once around the ring.
    #[inline]
    fn clockwise(&self, position: usize) -> impl Iterator<Item = u32> + '_ {
        let owners = &self.0.owners;
        owners[position..]
            .iter()
            .chain(&owners[..position])
            .copied()
    }

    /// The `K` owners clockwise from `position` (wrapping, more than once on
    /// a ring with fewer tokens).
    #[inline(always)]
    fn owners_from<const K: usize>(&self, position: usize) -> [u32; K] {
        let owners = &self.0.owners;
        match owners.get(position..position + K) {
            Some(run) => std::array::from_fn(|i| run[i]),
            None => std::array::from_fn(|i| owners[(position + i) % owners.len()]),
        }
    }

    /// [`Ring::replica_indices_at`] for up to [`WALK_BUFFER`] replicas and
    /// up to 64 zones, the usual case. The walk reads the owner array (16 a
    /// cache line) [`ZONE_STEP`] or [`DISTINCT_STEP`] owners at a time and
    /// decides with few data-dependent branches: each owner is written to
    /// the next free slot and counted only if it is new (a new zone, then a
    /// new member), so a member that was not counted is overwritten by the
    /// next one. Whether the walk is done is asked once per step of owners;
    /// owners read past the last one needed may be counted too, but only the
    /// first picks are kept, and they are the same.
    #[inline]
    fn replicas_walk_short(&self, position: usize, replication: &Replication, out: &mut Vec<u32>) {
        let rf = replication.factor;
        let n = self.0.owners.len();
        // Slots past the picks hold NONE (no member has that index), a
        // member that was not counted, or picks beyond those wanted.
        let mut picked = [NONE; 2 * WALK_BUFFER];
        let mut count = 0usize;
        if replication.zone_aware && self.0.zone_count > 1 {
            // First walk: one member per zone, as long as zones remain.
            let wanted = rf.min(self.0.zone_count);
            let zone_of = &self.0.zone_of;
            let mut seen = 0u64;
            let mut at = position;
            let mut walked = 0;
            while count < wanted && walked < n {
                for member in self.owners_from::<ZONE_STEP>(at) {
                    let zone = 1u64 << (zone_of[member as usize] & 63);
                    picked[count % (2 * WALK_BUFFER)] = member;
                    count += usize::from(seen & zone == 0);
                    seen |= zone;
                }
                at = (at + ZONE_STEP) % n;
                walked += ZONE_STEP;
            }
            count = count.min(wanted);
            // Slots after the picks may hold members skipped for their zone
            // only, or picks beyond those wanted: they must not look picked
            // below.
            for (i, slot) in picked.iter_mut().enumerate() {
                if i >= count {
                    *slot = NONE;
                }
            }
        }
        if count < rf {
            // (Second) walk: distinct members in clockwise order. `filter`
            // has bit `m % 64` set for every picked member `m`: a clear bit
            // means new, exactly; a set bit (a pick, or for rings of more
            // than 64 members sometimes another member) is checked against
            // the picks.
            let mut filter = 0u64;
            for &member in &picked[..count] {
                filter |= 1 << (member & 63);
            }
            let mut at = position;
            let mut walked = 0;
            while count < rf && walked < n {
                for member in self.owners_from::<DISTINCT_STEP>(at) {
                    let bit = 1u64 << (member & 63);
                    let new =
                        filter & bit == 0 || !picked[..count.min(WALK_BUFFER)].contains(&member);
                    picked[count % (2 * WALK_BUFFER)] = member;
                    count += usize::from(new);
                    filter |= bit;
                }
                at = (at + DISTINCT_STEP) % n;
                walked += DISTINCT_STEP;
            }
            count = count.min(rf);
        }
        // A copy of fixed length, then the length: cheaper than a copy of
        // `count` elements.
        out.extend_from_slice(&picked[..WALK_BUFFER]);
        out.truncate(count);
    }

    /// [`Ring::replica_indices_at`] for any factor and any number of zones.
    fn replicas_walk_long(&self, position: usize, replication: &Replication, out: &mut Vec<u32>) {
        let rf = replication.factor;
        if replication.zone_aware && self.0.zone_count > 1 {
            // First walk: one member per zone, as long as zones remain.
            let zones_wanted = rf.min(self.0.zone_count);
            let mut zones_seen = vec![false; self.0.zone_count];
            for member in self.clockwise(position) {
                let zone = self.0.zone_of[member as usize] as usize;
                if !zones_seen[zone] {
                    zones_seen[zone] = true;
                    out.push(member);
                    if out.len() == zones_wanted {
                        break;
                    }
                }
            }
        }
        // (Second) walk: distinct members in clockwise order.
        if out.len() < rf {
            for member in self.clockwise(position) {
                if !out.contains(&member) {
                    out.push(member);
                    if out.len() == rf {
                        break;
                    }
                }
            }
        }
    }

    /// The ranges a member owns (as primary), adjacent ranges merged, in
    /// token order of their ends.
    pub fn ranges_of(&self, id: &str) -> Result<Vec<TokenRange>, RingError> {
        let member = self
            .member_index(id)
            .ok_or_else(|| RingError::UnknownMember(id.into()))? as u32;
        let n = self.0.tokens.len();
        if self.0.owners.iter().all(|&o| o == member) {
            return Ok(vec![TokenRange::FULL]);
        }
        // Start right after a token the member does not own, so that runs of
        // adjacent ranges are never cut by the array's wrap-around.
        let first_foreign = self
            .0
            .owners
            .iter()
            .position(|&o| o != member)
            .expect("some token has another owner");
        let mut ranges = Vec::new();
        let mut run_start: Option<Token> = None;
        for step in 1..=n {
            let position = (first_foreign + step) % n;
            if self.0.owners[position] == member {
                if run_start.is_none() {
                    run_start = Some(self.range_at(position).start);
                }
            } else if let Some(start) = run_start.take() {
                let end = self.range_at(position).start;
                ranges.push(TokenRange::new(start, end));
            }
        }
        ranges.sort_by_key(|r| r.end);
        Ok(ranges)
    }

    /// Each member's target share of the token space (its weight over the
    /// total weight), indexed like [`Ring::members`].
    pub fn targets(&self) -> Vec<f64> {
        let total: u64 = self.0.members.iter().map(|m| u64::from(m.weight)).sum();
        self.0
            .members
            .iter()
            .map(|m| f64::from(m.weight) / total as f64)
            .collect()
    }

    /// Exact token-space ownership per member index, in tokens (sums to 2^64).
    pub fn owned_tokens(&self) -> Vec<u128> {
        self.owned().to_vec()
    }

    /// [`Ring::owned_tokens`], computed once per ring.
    pub(crate) fn owned(&self) -> &[u128] {
        self.0.owned.get_or_init(|| {
            let mut owned = vec![0u128; self.0.members.len()];
            for position in 0..self.0.tokens.len() {
                owned[self.0.owners[position] as usize] += self.range_at(position).len();
            }
            owned
        })
    }

    /// Fraction of the token space each member owns as primary.
    pub fn ownership(&self) -> Vec<Ownership> {
        self.ownership_from(self.owned(), 1)
    }

    /// Load and target of each member as fractions of all replicas
    /// (`factor` copies of the token space): [`Ring::load_shares`], checked
    /// against the ring first.
    pub fn replica_ownership(
        &self,
        replication: &Replication,
    ) -> Result<Vec<Ownership>, RingError> {
        self.check_replication(replication)?;
        Ok(self.load_shares(replication))
    }

    fn ownership_from(&self, owned: &[u128], copies: usize) -> Vec<Ownership> {
        let targets = self.targets();
        self.0
            .members
            .iter()
            .zip(owned)
            .zip(targets)
            .map(|((m, &o), target)| Ownership {
                id: m.id.clone(),
                fraction: o as f64 / (TOKEN_SPACE as f64 * copies as f64),
                target,
            })
            .collect()
    }

    /// The primary balance: the largest ratio of a member's primary
    /// ownership to its weight's share (max/mean for equal weights). 1.0 is
    /// perfect; an empty ring reports 1.0. DESIGN §4's balance, over
    /// replicas, is [`Ring::replica_balance`].
    pub fn balance(&self) -> f64 {
        balance_of(&self.ownership())
    }
}

/// The invariants of a ring's parts: unique non-empty ids sorted, valid
/// weights, tokens sorted and distinct, owners in range, every member with
/// a token.
/// For each position of a ring of two zones or more, the steps clockwise to
/// the first owner of a second zone and to the first of a third zone, or 0
/// when there is no such owner or it lies more than 255 steps away (the walk
/// then reads the owners instead). With them, a zone-aware factor of 2 or 3
/// is the owners at those positions, read from the cache line of the first
/// one most of the time (steps average 1.5 and 4.5 with three equal zones),
/// instead of a walk that looks each owner's zone up. Two bytes a token:
/// 500 KiB at 256,000 tokens, built in 0.7–1.3 ms there (one pass, on the
/// ring's first query that needs them).
fn zone_steps(owners: &[u32], zone_of: &[u32], zone_count: usize) -> Vec<[u8; 2]> {
    let n = owners.len();
    if zone_count < 2 || n == 0 {
        return Vec::new();
    }
    let mut steps = vec![[0u8; 2]; n];
    // Walking backwards, `first`, `second` and `third` are the first three
    // zones met clockwise from `at`, in the order met, each with where it
    // is met first (a position past `n` is one round later); `NONE` for a
    // zone not met yet. The walk starts 256 positions into the next round,
    // far enough for every step that is recorded.
    let [mut first, mut second, mut third] = [(NONE, 0usize); 3];
    for at in (0..n + n.min(256)).rev() {
        let zone = zone_of[owners[if at >= n { at - n } else { at }] as usize];
        if zone != first.0 {
            if zone != second.0 {
                third = second;
            }
            second = first;
        }
        first = (zone, at);
        if at < n {
            let step = |(z, met): (u32, usize)| {
                if z == NONE {
                    0
                } else {
                    u8::try_from(met - at).unwrap_or(0)
                }
            };
            steps[at] = [step(second), step(third)];
        }
    }
    steps
}

fn check_parts(
    config: &RingConfig,
    members: &[MemberSpec],
    tokens: &[Token],
    owners: &[u32],
) -> Result<(), RingError> {
    let bad = RingError::InvalidSnapshot;
    config.validate()?;
    for (i, m) in members.iter().enumerate() {
        if m.id.as_str().is_empty() {
            return Err(RingError::EmptyMemberId);
        }
        if i > 0 && members[i - 1].id >= m.id {
            return Err(bad(format!(
                "members must be sorted by id and unique; {:?} comes after {:?}",
                m.id.as_str(),
                members[i - 1].id.as_str()
            )));
        }
        config.tokens_for(m)?;
    }
    if tokens.len() != owners.len() {
        return Err(bad(format!(
            "{} tokens but {} owners",
            tokens.len(),
            owners.len()
        )));
    }
    if let Some(pair) = tokens.windows(2).find(|p| p[0] >= p[1]) {
        return Err(bad(format!(
            "tokens must be sorted and distinct; {} comes after {}",
            pair[1], pair[0]
        )));
    }
    let mut has_token = vec![false; members.len()];
    for &o in owners {
        match has_token.get_mut(o as usize) {
            Some(h) => *h = true,
            None => {
                return Err(bad(format!(
                    "a token's owner is member number {o} of {}",
                    members.len()
                )));
            }
        }
    }
    if let Some(i) = has_token.iter().position(|&h| !h) {
        return Err(bad(format!(
            "member {:?} has no token",
            members[i].id.as_str()
        )));
    }
    Ok(())
}

/// Max of fraction/target over members: the balance figure (max/mean for
/// equal weights). 1.0 for an empty list.
pub fn balance_of(ownership: &[Ownership]) -> f64 {
    ownership
        .iter()
        .map(|o| o.fraction / o.target)
        .fold(None, |acc: Option<f64>, x| {
            Some(acc.map_or(x, |a| a.max(x)))
        })
        .unwrap_or(1.0)
}

/// Coefficient of variation of fraction/target over members (0 is perfect).
pub fn spread_of(ownership: &[Ownership]) -> f64 {
    if ownership.is_empty() {
        return 0.0;
    }
    let ratios: Vec<f64> = ownership.iter().map(|o| o.fraction / o.target).collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let variance = ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / ratios.len() as f64;
    variance.sqrt() / mean
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps to a second and a third zone, found by walking from every
    /// position: the obviously-right form of [`zone_steps`].
    fn walked_steps(owners: &[u32], zone_of: &[u32]) -> Vec<[u8; 2]> {
        let n = owners.len();
        let zone = |at: usize| zone_of[owners[at % n] as usize];
        (0..n)
            .map(|at| {
                let mut met = vec![zone(at)];
                let mut steps = [0u8; 2];
                for step in 1..n {
                    if met.len() == 3 {
                        break;
                    }
                    if !met.contains(&zone(at + step)) {
                        steps[met.len() - 1] = u8::try_from(step).unwrap_or(0);
                        met.push(zone(at + step));
                    }
                }
                steps
            })
            .collect()
    }

    /// A ring of `members` in `zones` (member `i` in zone `zone(i)`) whose
    /// tokens' owners are `owners`.
    fn ring_of(members: usize, zone: impl Fn(usize) -> usize, owners: &[u32]) -> Ring {
        let specs = (0..members)
            .map(|i| MemberSpec::new(format!("m{i:03}")).with_zone(format!("z{}", zone(i))))
            .collect();
        let tokens = (0..owners.len() as u64).map(|t| t * 1000).collect();
        Ring::from_sorted(
            RingConfig::new(Strategy::Hashed, 1024),
            specs,
            tokens,
            owners.to_vec(),
        )
        .expect("valid ring")
    }

    fn check(ring: &Ring) {
        let data = &ring.0;
        let mut fast = Vec::new();
        let mut walked = Vec::new();
        for rf in 1..=ring.len().min(5) {
            let replication = Replication::new(rf, true);
            for position in 0..data.owners.len() {
                ring.replica_indices_at(position, &replication, &mut fast);
                walked.clear();
                ring.replicas_walk_long(position, &replication, &mut walked);
                assert_eq!(fast, walked, "rf {rf} at {position}");
            }
        }
        let built = data.zone_steps.get().expect("built by the queries");
        assert_eq!(*built, walked_steps(&data.owners, &data.zone_of));
    }

    #[test]
    fn zone_steps_match_the_walk_with_runs_past_255_and_wrap_around() {
        // Zone 0 holds a run of 300 tokens, so steps from its start are too
        // long to record; zone 2's only token is the last one, so the steps
        // to it from the first tokens wrap around.
        let mut owners = vec![0u32; 300];
        owners.extend([1, 3, 1, 3, 0, 1]);
        owners.extend(std::iter::repeat_n(4, 260));
        owners.push(2);
        check(&ring_of(5, |i| [0, 1, 2, 1, 0][i], &owners));
    }

    #[test]
    fn zone_steps_match_the_walk_on_random_rings() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for zones in 2..=5usize {
            for members in [zones, zones + 1, 7, 20] {
                for tokens in [members, 50, 600] {
                    // Members of unequal zones: lower zones hold more members,
                    // and member 0 holds most tokens half the time.
                    let zone = |i: usize| if i < zones { i } else { (i * 7) % zones % 3 };
                    let heavy = next() % 2 == 0;
                    let mut owners: Vec<u32> = (0..members as u32).collect();
                    owners.extend((members..tokens).map(|_| {
                        let r = next();
                        if heavy && r % 100 < 97 {
                            0
                        } else {
                            (r % members as u64) as u32
                        }
                    }));
                    // Shuffle, so every member keeps a token somewhere.
                    for i in (1..owners.len()).rev() {
                        owners.swap(i, (next() % (i as u64 + 1)) as usize);
                    }
                    check(&ring_of(members, zone, &owners));
                }
            }
        }
    }
}
