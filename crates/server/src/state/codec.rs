//! The stored state's byte layout, format 2: compact, so that 1,000 members
//! × 256 tokens with a plan in flight stays a few MB (format 1's JSON was
//! 5.7 MB), and quick to write and read on the way from a member change to
//! its plan.
//!
//! ```text
//! "RLST"  varint format (2)
//! varint n, n bytes of JSON: the header (settings, epochs, members of both
//!         rings, the plan's id, state, settings and summary, and the tables
//!         of member names and move states the sections below index into)
//! committed ring: varint count; count × varint token delta (the first from
//!         0); count × varint owner index
//! if a plan: its target ring as a difference from the committed one
//!         (committed positions dropped, kept positions whose owner changed,
//!         tokens added), then its moves and cleanups, ranges as a signed
//!         delta of the start from the previous start and the length
//! the last committed plan's done moves (as moves)
//! ```
//!
//! Tokens are what make a state large, and are close to random 64-bit
//! numbers: sorted and delta-coded they take about 6–7 bytes each. A plan's
//! target shares all but a few of the committed ring's tokens, so it costs
//! what the change costs. A move's id is stored only when it is not the one
//! derived from its lineage, range, source and target ([`MoveId::derive`]),
//! which is the usual case: the header holds the lineage once for the plan
//! (the state's, [`State::lineage`]) and once for the last committed plan's
//! moves. States written before lineages have neither field: their ids
//! derive unnumbered, as they were written. Names and move states go through JSON tables, so a state
//! or a field added to them (serde) needs no change here.
//!
//! Format 1 (the JSON of earlier builds) is still read, so an upgrade keeps
//! its state; it is never written.

use super::{PlanRecord, PlanState, PlanTimes, State};
use crate::settings::RingSettings;
use ringleader_planner::{Cleanup, Lineage, Move, MoveId, MoveState, Plan, Summary};
use ringleader_ring::{MemberId, MemberSpec, Ring, RingConfig, Strategy, Token, TokenRange};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// What a format-2 state starts with.
pub const MAGIC: &[u8; 4] = b"RLST";

/// The binary format this build writes.
pub const BINARY_FORMAT: u32 = 2;

/// The header: everything but tokens, moves and cleanups.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    settings: RingSettings,
    epoch: u64,
    revision: u64,
    committed: RingHead,
    plan: Option<PlanHead>,
    /// Member ids the moves and cleanups name, by index.
    names: Vec<MemberId>,
    /// Move states, by index.
    move_states: Vec<MoveState>,
    /// The state's lineage ([`State::lineage`]): the plan's derived move ids
    /// carry it. Absent (0) in states written before lineages.
    #[serde(default, skip_serializing_if = "Lineage::is_unnumbered")]
    lineage: Lineage,
    /// The lineage the last committed plan's done moves were derived in.
    #[serde(default, skip_serializing_if = "Lineage::is_unnumbered")]
    last_committed_lineage: Lineage,
}

/// A ring's settings and members (its tokens are in a section).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RingHead {
    strategy: Strategy,
    tokens_per_member: u32,
    members: Vec<MemberSpec>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanHead {
    id: String,
    from_epoch: u64,
    to_epoch: u64,
    state: PlanState,
    settings: RingSettings,
    target: RingHead,
    summary: Summary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    changed_ms: Option<u64>,
}

impl RingHead {
    fn of(ring: &Ring) -> Self {
        let config = ring.config();
        Self {
            strategy: config.strategy,
            tokens_per_member: config.tokens_per_member,
            members: ring.members().to_vec(),
        }
    }
}

/// Appends `v` as LEB128.
fn put(out: &mut Vec<u8>, mut v: u64) {
    if v < 1 << 56 {
        // Up to 8 bytes (token deltas are 6 or 7): the 7-bit groups spread
        // into bytes and the continuation bits set without a branch per
        // byte, written as one word and cut to length. (Byte by byte, the
        // branch on each byte mispredicts once a value, at 256,000 tokens
        // a few ms of every save.)
        let spread = (v & 0x7f)
            | (v & (0x7f << 7)) << 1
            | (v & (0x7f << 14)) << 2
            | (v & (0x7f << 21)) << 3
            | (v & (0x7f << 28)) << 4
            | (v & (0x7f << 35)) << 5
            | (v & (0x7f << 42)) << 6
            | (v & (0x7f << 49)) << 7;
        let len = (64 - (v | 1).leading_zeros()).div_ceil(7) as usize;
        let continuation = 0x8080_8080_8080_8080_u64 & ((1_u64 << (8 * (len - 1))) - 1);
        let at = out.len();
        out.extend_from_slice(&(spread | continuation).to_le_bytes());
        out.truncate(at + len);
        return;
    }
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a signed difference, zigzag-coded.
fn put_signed(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads the sections back, every read bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.at) else {
                return Err(format!("it ends inside a number at byte {}", self.at));
            };
            self.at += 1;
            if shift == 63 && b > 1 {
                return Err(format!("a number overflows at byte {}", self.at));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("a number overflows at byte {}", self.at))
    }

    fn signed(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A count of items that take at least `min_bytes` each: never more than
    /// the bytes left allow, so a corrupt count cannot allocate without end.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize, String> {
        let n = self.varint()?;
        let left = (self.bytes.len() - self.at) / min_bytes.max(1);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| format!("it claims {n} {what}, more than its bytes can hold"))
    }

    /// An index below `len`.
    fn index(&mut self, what: &str, len: usize) -> Result<usize, String> {
        let i = self.varint()?;
        usize::try_from(i)
            .ok()
            .filter(|&i| i < len)
            .ok_or_else(|| format!("{what} number {i} is out of range (there are {len})"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| format!("it ends inside a field at byte {}", self.at))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }
}

/// Format 2 bytes of a state.
pub(super) fn encode(state: &State) -> Result<Vec<u8>, String> {
    let committed = &state.committed;
    // Everything after the committed ring's tokens first (it fills the
    // tables the header names), then the header, then the ring's tokens
    // written straight into the output: the bulk is copied once.
    let mut body = Vec::new();
    let mut tables = Tables::default();
    if let Some(p) = &state.plan {
        target_diff(&mut body, committed, &p.target);
        put_moves(&mut body, &p.plan.moves, state.lineage, &mut tables);
        put(&mut body, p.plan.cleanups.len() as u64);
        let mut previous = 0;
        for c in &p.plan.cleanups {
            put(&mut body, tables.name(&c.member));
            put_range(&mut body, c.range, &mut previous);
        }
    }
    // The committed plan was of an earlier lineage than the state's once a
    // plan is made after it: its moves' ids say which.
    let last_committed_lineage = state
        .last_committed
        .first()
        .and_then(|m| m.id.lineage())
        .unwrap_or(Lineage::UNNUMBERED);
    put_moves(
        &mut body,
        &state.last_committed,
        last_committed_lineage,
        &mut tables,
    );
    let header = Header {
        settings: state.settings,
        epoch: state.epoch,
        revision: state.revision,
        committed: RingHead::of(committed),
        plan: state.plan.as_ref().map(|p| PlanHead {
            id: p.id.clone(),
            from_epoch: p.from_epoch,
            to_epoch: p.to_epoch,
            state: p.state,
            settings: p.settings,
            target: RingHead::of(&p.target),
            summary: p.plan.summary.clone(),
            created_ms: p.times.created_ms,
            changed_ms: p.times.changed_ms,
        }),
        names: tables.names,
        move_states: tables.states,
        lineage: state.lineage,
        last_committed_lineage,
    };
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let tokens = committed.tokens().len() * 9 + 16;
    let mut out = Vec::with_capacity(16 + header.len() + tokens + body.len());
    out.extend_from_slice(MAGIC);
    put(&mut out, u64::from(BINARY_FORMAT));
    put(&mut out, header.len() as u64);
    out.extend_from_slice(&header);
    ring_tokens(&mut out, committed);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The member names and move states the sections index into.
#[derive(Default)]
struct Tables {
    names: Vec<MemberId>,
    name_index: HashMap<MemberId, u64>,
    states: Vec<MoveState>,
}

impl Tables {
    fn name(&mut self, id: &MemberId) -> u64 {
        if let Some(&i) = self.name_index.get(id) {
            return i;
        }
        self.names.push(id.clone());
        let i = self.names.len() as u64 - 1;
        self.name_index.insert(id.clone(), i);
        i
    }

    fn state(&mut self, state: MoveState) -> u64 {
        let i = match self.states.iter().position(|s| *s == state) {
            Some(i) => i,
            None => {
                self.states.push(state);
                self.states.len() - 1
            }
        };
        i as u64
    }
}

/// Moves whose ids were derived in `lineage` store none.
fn put_moves(out: &mut Vec<u8>, moves: &[Move], lineage: Lineage, tables: &mut Tables) {
    put(out, moves.len() as u64);
    let mut previous = 0;
    for m in moves {
        put_range(out, m.range, &mut previous);
        put(out, tables.name(&m.from));
        put(out, tables.name(&m.to));
        put(out, tables.state(m.state));
        put_move_id(out, m, lineage);
    }
}

/// Rings from this many tokens have their token deltas written in two
/// halves at once (a save at 1,000 × 256 is on the way from a member
/// change to its plan, and the token deltas are most of its time).
const PARALLEL_TOKENS: usize = 1 << 16;

fn ring_tokens(out: &mut Vec<u8>, ring: &Ring) {
    if ring.tokens().len() < PARALLEL_TOKENS {
        write_ring_tokens(out, ring);
        return;
    }
    // (Encoding the section ahead, on a thread beside the planning of a
    // plan that commits at once, was tried: the planning got slower by
    // what the save gained.)
    let section = section_of(ring);
    out.extend_from_slice(section.get_or_init(|| {
        let mut bytes = Vec::with_capacity(ring.tokens().len() * 9 + 16);
        write_ring_tokens(&mut bytes, ring);
        bytes
    }));
}

/// A large ring's encoded token section, filled by the first save that
/// writes it.
type Section = Arc<OnceLock<Vec<u8>>>;

/// The token section of the last large ring encoded, or being encoded.
/// Every save of a state writes its committed ring whole, and that ring
/// changes only when a plan commits: a plan in flight is saved on every
/// move report, and rewriting 256,000 tokens each time was most of the
/// save. One ring is kept (2.3 MB at 1,000 × 256), the ring with it.
static LAST_SECTION: Mutex<Option<(Ring, Section)>> = Mutex::new(None);

/// The cached section of `ring`, or a new empty one put in its place.
fn section_of(ring: &Ring) -> Section {
    let mut last = LAST_SECTION.lock().unwrap_or_else(PoisonError::into_inner);
    match &*last {
        Some((cached, section)) if cached == ring => section.clone(),
        _ => {
            let section = Section::default();
            // The ring this replaces is dropped here, after the lock.
            let _replaced = last.replace((ring.clone(), section.clone()));
            drop(last);
            section
        }
    }
}

/// The committed ring's section: the count, the token deltas, the owners.
/// A large ring's deltas and owners are written in two halves at once:
/// this thread the first half of each, a helper the second.
fn write_ring_tokens(out: &mut Vec<u8>, ring: &Ring) {
    let (tokens, owners) = (ring.tokens(), ring.owner_indices());
    put(out, tokens.len() as u64);
    if tokens.len() < PARALLEL_TOKENS {
        put_deltas(out, tokens, 0);
        put_owners(out, owners);
        return;
    }
    let middle = tokens.len() / 2;
    let (head, tail) = tokens.split_at(middle);
    let (owners_head, owners_tail) = owners.split_at(middle);
    let before_tail = head[middle - 1];
    let halves = std::thread::scope(|scope| {
        let helper = std::thread::Builder::new()
            .name("state-encode".into())
            .spawn_scoped(scope, || {
                let mut deltas = Vec::with_capacity(tail.len() * 8);
                put_deltas(&mut deltas, tail, before_tail);
                let mut owners = Vec::with_capacity(tail.len() * 2);
                put_owners(&mut owners, owners_tail);
                (deltas, owners)
            });
        put_deltas(out, head, 0);
        let mut first_owners = Vec::with_capacity(head.len() * 2);
        put_owners(&mut first_owners, owners_head);
        helper
            .ok()
            .and_then(|h| h.join().ok())
            .map(|(deltas, owners)| (deltas, first_owners, owners))
    });
    match halves {
        Some((deltas, first_owners, owners)) => {
            out.extend_from_slice(&deltas);
            out.extend_from_slice(&first_owners);
            out.extend_from_slice(&owners);
        }
        // No thread to be had: the rest here.
        None => {
            put_deltas(out, tail, before_tail);
            put_owners(out, owners);
        }
    }
}

fn put_owners(out: &mut Vec<u8>, owners: &[u32]) {
    for &o in owners {
        put(out, u64::from(o));
    }
}

/// Each token's difference from the one before it (`previous` for the
/// first).
fn put_deltas(out: &mut Vec<u8>, tokens: &[Token], mut previous: Token) {
    for &t in tokens {
        put(out, t - previous);
        previous = t;
    }
}

fn put_range(out: &mut Vec<u8>, range: TokenRange, previous: &mut Token) {
    put_signed(out, range.start.wrapping_sub(*previous) as i64);
    put(out, range.end.wrapping_sub(range.start));
    *previous = range.start;
}

fn put_move_id(out: &mut Vec<u8>, m: &Move, lineage: Lineage) {
    let id = m.id.as_str();
    if MoveId::derive(lineage, m.range, &m.from, &m.to).as_str() == id {
        out.push(0);
        return;
    }
    if let Ok(v) = u64::from_str_radix(id, 16)
        && format!("{v:016x}") == id
    {
        out.push(1);
        out.extend_from_slice(&v.to_le_bytes());
        return;
    }
    out.push(2);
    put(out, id.len() as u64);
    out.extend_from_slice(id.as_bytes());
}

/// The target ring as a difference from the committed one: committed
/// positions dropped, kept positions whose owner is another member, tokens
/// added (with their owners, as indices into the target's members).
fn target_diff(out: &mut Vec<u8>, committed: &Ring, target: &Ring) {
    if target.is_same(committed) {
        // The very ring (a plan committed as soon as made, with its target
        // the committed ring): nothing removed, re-owned or added, without
        // comparing 256,000 tokens to themselves (0.6-0.8 ms of a save).
        for _ in 0..3 {
            put(out, 0);
        }
        return;
    }
    // Committed member index → target member index (u32::MAX: not in it).
    let to_target: Vec<u32> = committed
        .members()
        .iter()
        .map(|m| {
            target
                .member_index(m.id.as_str())
                .map_or(u32::MAX, |i| i as u32)
        })
        .collect();
    let (ct, co) = (committed.tokens(), committed.owner_indices());
    let (tt, to) = (target.tokens(), target.owner_indices());
    let (mut removed, mut reowned, mut added) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < ct.len() || j < tt.len() {
        if j == tt.len() || (i < ct.len() && ct[i] < tt[j]) {
            removed.push(i);
            i += 1;
        } else if i == ct.len() || tt[j] < ct[i] {
            added.push((tt[j], to[j]));
            j += 1;
        } else {
            if to_target[co[i] as usize] != to[j] {
                reowned.push((i, to[j]));
            }
            i += 1;
            j += 1;
        }
    }
    put(out, removed.len() as u64);
    let mut previous = 0;
    for p in removed {
        put(out, (p - previous) as u64);
        previous = p;
    }
    put(out, reowned.len() as u64);
    let mut previous = 0;
    for (p, owner) in reowned {
        put(out, (p - previous) as u64);
        put(out, u64::from(owner));
        previous = p;
    }
    put(out, added.len() as u64);
    let mut previous = 0;
    for (t, owner) in added {
        put(out, t - previous);
        put(out, u64::from(owner));
        previous = t;
    }
}

/// Reads format 2 bytes (after the magic); errors say what is wrong.
pub(super) fn decode(bytes: &[u8]) -> Result<State, String> {
    let mut r = Reader { bytes, at: 0 };
    let format = r.varint()?;
    if format != u64::from(BINARY_FORMAT) {
        return Err(format!(
            "it was written in format {format}, and this build reads formats 1 and \
             {BINARY_FORMAT} (run the ringleader version that wrote it)"
        ));
    }
    let header_len = r.count("header bytes", 1)?;
    let header: Header = serde_json::from_slice(r.take(header_len)?)
        .map_err(|e| format!("its header is unreadable ({e})"))?;
    let committed = read_ring(&mut r, &header.committed)
        .map_err(|e| format!("its committed ring is invalid: {e}"))?;
    let plan = match header.plan {
        None => None,
        Some(p) => {
            let target = read_target(&mut r, &committed, &p.target)
                .map_err(|e| format!("its plan's target ring is invalid: {e}"))?;
            let moves = read_moves(&mut r, &header.names, &header.move_states, header.lineage)
                .map_err(|e| format!("its plan's moves are invalid: {e}"))?;
            let cleanups = read_cleanups(&mut r, &header.names)
                .map_err(|e| format!("its plan's cleanups are invalid: {e}"))?;
            Some(PlanRecord {
                id: p.id,
                from_epoch: p.from_epoch,
                to_epoch: p.to_epoch,
                state: p.state,
                target,
                settings: p.settings,
                plan: Plan {
                    moves,
                    cleanups,
                    summary: p.summary,
                },
                times: PlanTimes {
                    created_ms: p.created_ms,
                    changed_ms: p.changed_ms,
                },
            })
        }
    };
    let last_committed = read_moves(
        &mut r,
        &header.names,
        &header.move_states,
        header.last_committed_lineage,
    )
    .map_err(|e| format!("its last committed plan's moves are invalid: {e}"))?;
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes follow the end of the state",
            bytes.len() - r.at
        ));
    }
    Ok(State {
        settings: header.settings,
        epoch: header.epoch,
        revision: header.revision,
        committed,
        plan,
        last_committed,
        lineage: header.lineage,
    })
}

fn config_of(head: &RingHead) -> RingConfig {
    RingConfig::new(head.strategy, head.tokens_per_member)
}

fn read_ring(r: &mut Reader<'_>, head: &RingHead) -> Result<Ring, String> {
    // A token takes at least one byte of delta and one of owner.
    let n = r.count("tokens", 2)?;
    let mut tokens = Vec::with_capacity(n);
    let mut previous: Token = 0;
    for _ in 0..n {
        let t = previous
            .checked_add(r.varint()?)
            .ok_or("a token is past the end of the token space")?;
        tokens.push(t);
        previous = t;
    }
    let owners = (0..n)
        .map(|_| r.index("owner", head.members.len()).map(|i| i as u32))
        .collect::<Result<Vec<_>, _>>()?;
    Ring::from_sorted(config_of(head), head.members.clone(), tokens, owners)
        .map_err(|e| e.to_string())
}

fn read_target(r: &mut Reader<'_>, committed: &Ring, head: &RingHead) -> Result<Ring, String> {
    let members = &head.members;
    let (ct, co) = (committed.tokens(), committed.owner_indices());
    let to_target: Vec<Option<u32>> = committed
        .members()
        .iter()
        .map(|m| {
            members
                .binary_search_by(|t| t.id.cmp(&m.id))
                .ok()
                .map(|i| i as u32)
        })
        .collect();
    // Positions, strictly increasing, below `ct.len()`.
    let positions = |r: &mut Reader<'_>, what: &str, with_owner: bool| {
        let n = r.count(what, if with_owner { 2 } else { 1 })?;
        let mut out = Vec::with_capacity(n);
        let mut previous: Option<usize> = None;
        for _ in 0..n {
            let step = usize::try_from(r.varint()?).map_err(|_| "a position is too large")?;
            let p = match previous {
                None => step,
                Some(q) if step > 0 => q.checked_add(step).ok_or("a position is too large")?,
                Some(_) => return Err(format!("{what}: a position is listed twice")),
            };
            if p >= ct.len() {
                return Err(format!("{what}: position {p} is past the committed ring"));
            }
            let owner = if with_owner {
                r.index("owner", members.len())? as u32
            } else {
                0
            };
            out.push((p, owner));
            previous = Some(p);
        }
        Ok::<_, String>(out)
    };
    let removed = positions(r, "dropped tokens", false)?;
    let reowned = positions(r, "tokens with a new owner", true)?;
    let n = r.count("added tokens", 2)?;
    let mut added = Vec::with_capacity(n);
    let mut previous: Token = 0;
    for _ in 0..n {
        let t = previous
            .checked_add(r.varint()?)
            .ok_or("an added token is past the end of the token space")?;
        added.push((t, r.index("owner", members.len())? as u32));
        previous = t;
    }
    let mut tokens = Vec::with_capacity(ct.len() - removed.len() + added.len());
    let mut owners = Vec::with_capacity(tokens.capacity());
    let (mut removed, mut reowned) = (removed.iter().peekable(), reowned.iter().peekable());
    let mut added = added.into_iter().peekable();
    for (i, (&t, &o)) in ct.iter().zip(co).enumerate() {
        while let Some(&(a, owner)) = added.peek() {
            if a >= t {
                break;
            }
            tokens.push(a);
            owners.push(owner);
            added.next();
        }
        if removed.peek().is_some_and(|&&(p, _)| p == i) {
            removed.next();
            if reowned.peek().is_some_and(|&&(p, _)| p == i) {
                return Err(format!("position {i} is both dropped and re-owned"));
            }
            continue;
        }
        let owner = match reowned.peek() {
            Some(&&(p, owner)) if p == i => {
                reowned.next();
                owner
            }
            _ => to_target[o as usize].ok_or_else(|| {
                format!(
                    "token {t} is kept, but its owner {:?} is not in the target",
                    committed.members()[o as usize].id.as_str()
                )
            })?,
        };
        tokens.push(t);
        owners.push(owner);
    }
    for (a, owner) in added {
        tokens.push(a);
        owners.push(owner);
    }
    Ring::from_sorted(config_of(head), members.clone(), tokens, owners).map_err(|e| e.to_string())
}

fn read_range(r: &mut Reader<'_>, previous: &mut Token) -> Result<TokenRange, String> {
    let start = previous.wrapping_add(r.signed()? as u64);
    let end = start.wrapping_add(r.varint()?);
    *previous = start;
    Ok(TokenRange::new(start, end))
}

/// Moves; a derived id is derived in `lineage`.
fn read_moves(
    r: &mut Reader<'_>,
    names: &[MemberId],
    states: &[MoveState],
    lineage: Lineage,
) -> Result<Vec<Move>, String> {
    // A move takes at least 6 bytes: range (2), from, to, state, id kind.
    let n = r.count("moves", 6)?;
    let mut moves = Vec::with_capacity(n);
    let mut previous = 0;
    for _ in 0..n {
        let range = read_range(r, &mut previous)?;
        let from = names[r.index("member name", names.len())?].clone();
        let to = names[r.index("member name", names.len())?].clone();
        let state = states[r.index("move state", states.len())?];
        let id = match r.take(1)?[0] {
            0 => MoveId::derive(lineage, range, &from, &to),
            1 => {
                let raw: [u8; 8] = r.take(8)?.try_into().map_err(|_| "short move id")?;
                MoveId::from(format!("{:016x}", u64::from_le_bytes(raw)).as_str())
            }
            2 => {
                let len = r.count("move id bytes", 1)?;
                let text = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| "a move id is not UTF-8".to_owned())?;
                MoveId::from(text)
            }
            other => return Err(format!("a move id is of unknown kind {other}")),
        };
        moves.push(Move {
            id,
            range,
            from,
            to,
            state,
        });
    }
    Ok(moves)
}

fn read_cleanups(r: &mut Reader<'_>, names: &[MemberId]) -> Result<Vec<Cleanup>, String> {
    let n = r.count("cleanups", 3)?;
    let mut cleanups = Vec::with_capacity(n);
    let mut previous = 0;
    for _ in 0..n {
        let member = names[r.index("member name", names.len())?].clone();
        let range = read_range(r, &mut previous)?;
        cleanups.push(Cleanup { member, range });
    }
    Ok(cleanups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StoreError;
    use ringleader_planner::Placement;
    use ringleader_planner::PlanOptions;

    fn spec(i: usize) -> MemberSpec {
        MemberSpec::new(format!("db-{i}")).with_zone(format!("z{}", i % 3))
    }

    /// 20 members, a plan to 23 with moves in every state, ids derived,
    /// hex and free-form; the plan of `lineage`, the last committed one's
    /// moves of the lineage before (unnumbered both, for 0).
    fn state_of(lineage: Lineage) -> State {
        let settings = RingSettings {
            rf: 3,
            zone_aware: true,
            ..RingSettings::default()
        };
        let committed = Ring::with_members(settings.ring_config(), (0..20).map(spec)).unwrap();
        let members: Vec<_> = (1..23).map(spec).collect();
        let target = committed.rebalance_to(&members).unwrap();
        let from = Placement::new(committed.clone(), settings.replication()).unwrap();
        let to = Placement::new(target.clone(), settings.replication()).unwrap();
        let options = PlanOptions {
            lineage,
            ..PlanOptions::default()
        };
        let mut plan = ringleader_planner::plan(&from, &to, &options).unwrap();
        assert!(plan.moves.len() >= 4 && !plan.cleanups.is_empty());
        plan.moves[0].state = MoveState::Done;
        plan.moves[1].state = MoveState::Cancelled;
        plan.moves[2].state = MoveState::SourceLost;
        plan.moves[2].id = MoveId::from("00000000deadbeef");
        plan.moves[3].id = MoveId::from("kept from an older plan");
        let mut state = State::fresh(settings).unwrap();
        let before = Lineage(lineage.0.saturating_sub(1));
        state.last_committed = plan.moves[4..].iter().take(3).cloned().collect();
        for m in &mut state.last_committed {
            m.state = MoveState::Done;
            m.id = MoveId::derive(before, m.range, &m.from, &m.to);
        }
        state.committed = committed;
        state.epoch = 4;
        state.revision = 9;
        state.lineage = lineage;
        state.plan = Some(PlanRecord {
            id: "e4-x".into(),
            from_epoch: 4,
            to_epoch: 5,
            state: PlanState::InProgress,
            target,
            settings,
            plan,
            times: PlanTimes {
                created_ms: Some(1),
                changed_ms: None,
            },
        });
        state
    }

    fn state() -> State {
        state_of(Lineage(7))
    }

    /// The shortcut for a target that is the committed ring itself writes
    /// what the full comparison writes for an equal copy of it.
    #[test]
    fn a_target_that_is_the_committed_ring_diffs_as_an_equal_copy_does() {
        let ring = state().committed;
        let copy = Ring::try_from(ringleader_ring::RingSnapshot::from(&ring)).unwrap();
        assert!(copy == ring && !copy.is_same(&ring));
        let (mut shortcut, mut compared) = (Vec::new(), Vec::new());
        target_diff(&mut shortcut, &ring, &ring.clone());
        target_diff(&mut compared, &ring, &copy);
        assert_eq!(shortcut, compared);
    }

    #[test]
    fn numbers_of_every_length_are_leb128_and_read_back() {
        let mut values = vec![0, 1, 0x7f, 0x80, u64::MAX];
        for bits in 7..64 {
            values.extend([(1 << bits) - 1, 1 << bits, (1 << bits) + 1]);
        }
        for v in values {
            let mut plain = Vec::new();
            let mut rest = v;
            while rest >= 0x80 {
                plain.push((rest as u8) | 0x80);
                rest >>= 7;
            }
            plain.push(rest as u8);
            let mut out = vec![0xaa];
            put(&mut out, v);
            assert_eq!(out[1..], plain[..], "{v:#x}");
            let mut r = Reader { bytes: &out, at: 1 };
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.at, out.len());
        }
    }

    /// A large ring is written in two halves at once, and its section is
    /// kept for the next save of the same ring: saved again, after another
    /// ring, and as a copy of it, every state reads back identical.
    #[test]
    fn a_large_ring_encoded_in_halves_and_kept_reads_back_identical() {
        let state_of = |members: usize| {
            let settings = RingSettings {
                strategy: Strategy::Hashed,
                tokens_per_member: 256,
                ..RingSettings::default()
            };
            let members = (0..members).map(|i| MemberSpec::new(format!("db-{i}")));
            let mut state = State::fresh(settings).unwrap();
            state.committed = Ring::with_members(settings.ring_config(), members).unwrap();
            assert!(state.committed.tokens().len() >= PARALLEL_TOKENS);
            state.epoch = 2;
            state
        };
        let (a, b) = (state_of(300), state_of(301));
        let first = a.encode().unwrap();
        assert_eq!(State::decode(&first, "test").unwrap(), a);
        assert_eq!(a.encode().unwrap(), first);
        let other = b.encode().unwrap();
        assert_eq!(State::decode(&other, "test").unwrap(), b);
        assert_eq!(a.encode().unwrap(), first);
        // The section written in halves is the one written in one go.
        let mut serial = Vec::new();
        put(&mut serial, a.committed.tokens().len() as u64);
        put_deltas(&mut serial, a.committed.tokens(), 0);
        put_owners(&mut serial, a.committed.owner_indices());
        let mut halves = Vec::new();
        write_ring_tokens(&mut halves, &a.committed);
        assert_eq!(halves, serial);
        let mut later = a.clone();
        later.epoch = 3;
        assert_eq!(
            State::decode(&later.encode().unwrap(), "test").unwrap(),
            later
        );
    }

    #[test]
    fn a_state_with_a_plan_reads_back_identical() {
        let state = state();
        let bytes = state.encode().unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(State::decode(&bytes, "t").unwrap(), state);
        // Without a plan, and empty.
        let mut bare = state.clone();
        bare.plan = None;
        assert_eq!(State::decode(&bare.encode().unwrap(), "t").unwrap(), bare);
        let fresh = State::fresh(RingSettings::default()).unwrap();
        assert_eq!(State::decode(&fresh.encode().unwrap(), "t").unwrap(), fresh);
    }

    #[test]
    fn format_1_json_still_reads() {
        // Format 1 was written by builds before lineages only.
        let state = state_of(Lineage::UNNUMBERED);
        assert_eq!(State::decode(&state.encode_format1(), "t").unwrap(), state);
    }

    /// A format-2 state as the build before lineages wrote it (3 → 4
    /// members, hashed, the first move done; one move of the last committed
    /// plan), with the ids that build derived for its moves.
    #[test]
    fn a_format_2_state_written_before_lineages_reads_with_its_ids_unchanged() {
        let hex = include_str!("fixtures/format2-before-lineages.hex").trim();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let state = State::decode(&bytes, "fixture").unwrap();
        assert_eq!(state.lineage, Lineage::UNNUMBERED);
        let ids: Vec<(&str, MoveState)> = state
            .plan
            .as_ref()
            .unwrap()
            .plan
            .moves
            .iter()
            .chain(&state.last_committed)
            .map(|m| (m.id.as_str(), m.state))
            .collect();
        assert_eq!(
            ids,
            [
                ("9234f0f2a1da6893", MoveState::Done),
                ("7756c945cf8c9bcc", MoveState::Pending),
                ("eb433f9ddd041e5c", MoveState::Pending),
                ("7756c945cf8c9bcc", MoveState::Done),
            ]
        );
        // Written again by this build, byte for byte the same.
        assert_eq!(state.encode().unwrap(), bytes);
    }

    #[test]
    fn derived_ids_of_a_lineage_are_stored_as_compactly_as_unnumbered_ones() {
        let numbered = state().encode().unwrap();
        let unnumbered = state_of(Lineage::UNNUMBERED).encode().unwrap();
        // The two lineages in the header, nothing per move.
        assert!(
            numbered.len() <= unnumbered.len() + 48,
            "{} bytes against {}",
            numbered.len(),
            unnumbered.len()
        );
        let read = State::decode(&numbered, "t").unwrap();
        assert_eq!(read.lineage, Lineage(7));
        let plan = &read.plan.as_ref().unwrap().plan;
        assert_eq!(plan.moves[0].id.lineage(), Some(Lineage(7)));
        assert_eq!(read.last_committed[0].id.lineage(), Some(Lineage(6)));
    }

    #[test]
    fn another_binary_format_is_refused_by_number() {
        let mut bytes = MAGIC.to_vec();
        put(&mut bytes, 3);
        let err = State::decode(&bytes, "state").unwrap_err().to_string();
        assert!(
            err.contains("format 3") && err.contains("formats 1 and 2"),
            "{err}"
        );
        assert!(err.contains("will not overwrite"), "{err}");
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_errors_not_panics() {
        let bytes = state().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    State::decode(&bytes[..len], "t"),
                    Err(StoreError::Corrupt { .. })
                ),
                "{len} of {} bytes",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = State::decode(&longer, "t").unwrap_err().to_string();
        assert!(err.contains("1 bytes follow"), "{err}");
    }

    #[test]
    fn a_count_larger_than_the_bytes_is_refused_before_allocating() {
        let mut bytes = Vec::new();
        put(&mut bytes, u64::from(BINARY_FORMAT));
        put(&mut bytes, u64::MAX);
        let err = decode(&bytes).unwrap_err();
        assert!(err.contains("more than its bytes can hold"), "{err}");
    }
}
