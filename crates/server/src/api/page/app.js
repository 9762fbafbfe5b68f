// The operator's page: reads GET /v1/status, /v1/ring?tokens=compact and the
// watch stream (GET /v1/watch, read with fetch so a bearer token can be
// sent), and draws the ring, the plan, the summary and the members. No
// framework, no build step; every text goes in with textContent.
'use strict';

const SPACE = 18446744073709551616; // 2^64, as a double (exact).
const TOKEN_KEY = 'ringleader.read-token';
const MIN_ARC = 0.0015; // Arcs narrower than this fraction (0.54 degrees) are aggregated.
const MAX_MOVE_ROWS = 300;
const MAX_MEMBER_ROWS = 1000;
const SVG = 'http://www.w3.org/2000/svg';

const page = {
  status: null, // GET /v1/status
  byId: new Map(), // its members by id
  statusAt: 0, // performance.now() when it arrived
  ring: null, // GET /v1/ring?tokens=compact
  tokens: [], // its tokens, decoded and sorted
  ringEtag: null,
  plan: null, // the plan from the last watch event
  lastEventId: null,
  search: '',
  colourBy: 'auto',
  updates: 0,
  refreshing: null,
  again: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c);
  return node;
}

// ---- API ------------------------------------------------------------------

class Unauthorized extends Error {}

function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

async function getJson(path, extra) {
  const response = await fetch(path, { headers: headers(Object.assign({ Accept: 'application/json' }, extra)), cache: 'no-store' });
  if (response.status === 401) throw new Unauthorized();
  if (response.status === 304) return { notModified: true };
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : 'HTTP ' + response.status;
    throw new Error(path + ': ' + message);
  }
  return { body, etag: response.headers.get('ETag') };
}

let tokenWaiters = [];
function askForToken() {
  const form = $('auth');
  if (form.hidden) {
    form.hidden = false;
    $('token').focus();
  }
  setConn('error', 'read token needed');
  return new Promise((resolve) => tokenWaiters.push(resolve));
}

$('auth').addEventListener('submit', (event) => {
  event.preventDefault();
  try { sessionStorage.setItem(TOKEN_KEY, $('token').value.trim()); } catch (_) { /* private mode */ }
  $('token').value = '';
  $('auth').hidden = true;
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((w) => w());
  refresh();
});

// ---- refresh --------------------------------------------------------------

// Reads the status (and the ring's tokens when the epoch moved), then
// draws. Calls while one is running coalesce into one more.
function refresh() {
  if (page.refreshing) {
    page.again = true;
    return page.refreshing;
  }
  page.refreshing = (async () => {
    do {
      page.again = false;
      try {
        await load();
        showError(null);
      } catch (e) {
        if (e instanceof Unauthorized) {
          await askForToken();
          page.again = true;
        } else {
          showError(e.message);
        }
      }
    } while (page.again);
    page.refreshing = null;
  })();
  return page.refreshing;
}

async function load() {
  const status = (await getJson('/v1/status')).body;
  status.members.sort((x, y) => naturally(x.id, y.id));
  status.outside.sort((x, y) => naturally(x.id, y.id));
  if (!page.ring || page.ring.epoch !== status.epoch) {
    const extra = page.ringEtag ? { 'If-None-Match': page.ringEtag } : {};
    // The compact form: a quarter of the decimal one's size.
    const ring = await getJson('/v1/ring?tokens=compact', extra);
    if (!ring.notModified) {
      page.ring = ring.body;
      page.ringEtag = ring.etag;
      page.tokens = decodeTokens(ring.body.compact_tokens || []);
    }
  }
  // The watch events carry the plan; read it here only when they have not
  // brought this one (first load, or events missed while reconnecting).
  const stale = !page.plan || page.plan.id !== status.plan?.id || page.plan.to_epoch !== status.plan?.to_epoch;
  if (status.plan && stale) {
    page.plan = (await getJson('/v1/plan')).body.plan;
  }
  if (!status.plan) page.plan = null;
  page.status = status;
  page.byId = new Map(status.members.map((m) => [m.id, m]));
  page.statusAt = performance.now();
  page.updates += 1;
  draw();
}

function showError(message) {
  const box = $('error');
  box.hidden = !message;
  box.textContent = message || '';
}

function setConn(state, text) {
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = text;
}

// ---- the watch stream -----------------------------------------------------

// A WHATWG event-stream parser: feed it text as it arrives; it calls
// onEvent(id, type, data) for each complete event.
function sseParser(onEvent) {
  let buffer = '';
  let data = [];
  let type = '';
  let id = null;
  return (chunk) => {
    buffer += chunk;
    const lines = buffer.split(/\r\n|\r|\n/);
    buffer = lines.pop();
    for (const line of lines) {
      if (line === '') {
        if (data.length) onEvent(id, type || 'message', data.join('\n'));
        data = [];
        type = '';
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') type = value;
      else if (field === 'id') id = value;
    }
  };
}

function onEvent(id, type, data) {
  if (id) page.lastEventId = id;
  let event;
  try { event = JSON.parse(data); } catch (_) { return; }
  if ('plan' in event) page.plan = event.plan;
  refresh();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function watch() {
  let backoff = 500;
  for (;;) {
    const abort = new AbortController();
    let idle = null;
    const bump = () => {
      clearTimeout(idle);
      // The server sends a keep-alive every 15 s.
      idle = setTimeout(() => abort.abort(), 45000);
    };
    try {
      const h = headers({ Accept: 'text/event-stream' });
      if (page.lastEventId) h['Last-Event-ID'] = page.lastEventId;
      bump();
      const response = await fetch('/v1/watch', { headers: h, cache: 'no-store', signal: abort.signal });
      if (response.status === 401) {
        clearTimeout(idle);
        await askForToken();
        continue;
      }
      if (!response.ok || !response.body) throw new Error('the watch stream answered HTTP ' + response.status);
      setConn('live', 'live');
      backoff = 500;
      // Changes may have been missed while disconnected.
      refresh();
      const parse = sseParser(onEvent);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        bump();
        parse(value);
      }
      throw new Error('the watch stream ended');
    } catch (e) {
      clearTimeout(idle);
      const why = e.name === 'AbortError' ? 'the watch stream went quiet' : e.message;
      setConn('error', 'reconnecting (' + why + ')');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }
}

// ---- formatting -----------------------------------------------------------

// Ids in natural order: db-2 before db-10. One collator: building one per
// comparison (String.localeCompare with options) is slow.
const COLLATOR = new Intl.Collator(undefined, { numeric: true });
function naturally(x, y) {
  return COLLATOR.compare(x, y);
}

function pct(fraction) {
  return (fraction * 100).toFixed(2) + '%';
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + String(Math.floor(s / 3600) % 24).padStart(2, '0') + 'h';
}

// Seconds elapsed since the status arrived.
function elapsed() {
  return (performance.now() - page.statusAt) / 1000;
}

// A colour per member, stable across changes: StatefulSet ordinals (db-7)
// step around the wheel by the golden angle, other ids by a hash.
function memberHue(id) {
  const ordinal = /-(\d+)$/.exec(id);
  let n;
  if (ordinal) {
    n = Number(ordinal[1]);
  } else {
    n = 0;
    for (let i = 0; i < id.length; i += 1) n = (n * 31 + id.charCodeAt(i)) >>> 0;
  }
  return (n * 137.508 + 200) % 360;
}

function memberColour(id) {
  return 'hsl(' + memberHue(id).toFixed(1) + ', 62%, 52%)';
}

const STATE_COLOURS = { up: '#7aa6c2', down: '#d6423a', joining: '#2f6fd6', leaving: '#e08a1e' };

function byOwner() {
  if (page.colourBy === 'owner') return true;
  if (page.colourBy === 'state') return false;
  return page.status.members.length <= 40;
}

function matches(member) {
  const q = page.search;
  if (!q) return true;
  const hay = [member.id, member.state, member.zone || '', ...(member.addresses || [])].join(' ').toLowerCase();
  return q.split(/\s+/).every((word) => hay.includes(word));
}

// ---- the ring -------------------------------------------------------------

function point(r, fraction) {
  const a = fraction * 2 * Math.PI - Math.PI / 2;
  return [r * Math.cos(a), r * Math.sin(a)];
}

// An annular sector from fraction `a` to `b` (b > a, b - a <= 1).
function sector(r0, r1, a, b) {
  if (b - a >= 0.99999) {
    // A whole ring: two half circles each way.
    const ring = (r) => `M ${-r} 0 A ${r} ${r} 0 1 1 ${r} 0 A ${r} ${r} 0 1 1 ${-r} 0 Z`;
    return ring(r1) + ' ' + ring(r0);
  }
  const large = b - a > 0.5 ? 1 : 0;
  const [x0, y0] = point(r1, a);
  const [x1, y1] = point(r1, b);
  const [x2, y2] = point(r0, b);
  const [x3, y3] = point(r0, a);
  const f = (v) => v.toFixed(2);
  return `M ${f(x0)} ${f(y0)} A ${r1} ${r1} 0 ${large} 1 ${f(x1)} ${f(y1)} L ${f(x2)} ${f(y2)} A ${r0} ${r0} 0 ${large} 0 ${f(x3)} ${f(y3)} Z`;
}

// Every token of `?tokens=compact` (per member, base64 of little-endian
// u64s) as {at: fraction of the ring, member}, sorted.
function decodeTokens(compact) {
  const out = [];
  for (const { member, tokens } of compact) {
    const raw = atob(tokens);
    const bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i + 8 <= bytes.length; i += 8) {
      out.push({ at: Number(view.getBigUint64(i, true)) / SPACE, member });
    }
  }
  return out.sort((x, y) => x.at - y.at);
}

// The committed ring as arcs: token t owns (previous token, t]; the first
// token also owns the wrap-around. Adjacent arcs of one owner merge.
function ringArcs(tokens) {
  const n = tokens.length;
  if (n === 0) return [];
  const at = tokens.map((t) => t.at);
  const arcs = [];
  for (let i = 0; i < n; i += 1) {
    const start = i === 0 ? at[n - 1] - 1 : at[i - 1];
    const member = tokens[i].member;
    const last = arcs[arcs.length - 1];
    if (last && last.member === member) last.end = at[i];
    else arcs.push({ start, end: at[i], member, ranges: 1 });
  }
  // The last arc and the first may be one owner's across the wrap.
  if (arcs.length > 1 && arcs[0].member === arcs[arcs.length - 1].member) {
    const tail = arcs.pop();
    arcs[0].start = tail.start - 1;
  }
  return arcs;
}

// Merges adjacent arcs with the same key (a state, when colouring by
// state), remembering whose ranges they are.
function mergeByKey(arcs, keyOf) {
  const out = [];
  for (const a of arcs) {
    const key = keyOf(a);
    const last = out[out.length - 1];
    if (last && last.key === key && Math.abs(last.end - a.start) < 1e-12) {
      last.end = a.end;
      last.members.add(a.member);
    } else {
      out.push({ start: a.start, end: a.end, key, member: a.member, members: new Set([a.member]) });
    }
  }
  if (out.length > 1 && out[0].key === out[out.length - 1].key) {
    const tail = out.pop();
    out[0].start = tail.start - 1;
    for (const m of tail.members) out[0].members.add(m);
  }
  return out;
}

// States that must stay visible however small their arcs: a group of
// narrow arcs takes the most urgent state in it, else its largest key.
const URGENCY = { down: 3, leaving: 2, joining: 1 };

// Groups runs of narrow arcs into one, so 500 members stay drawable and
// readable.
function aggregate(arcs, urgent) {
  const out = [];
  let group = null;
  const flush = () => {
    if (!group) return;
    if (group.arcs.length === 1) {
      out.push(group.arcs[0]);
    } else {
      const share = new Map();
      for (const a of group.arcs) share.set(a.key, (share.get(a.key) || 0) + (a.end - a.start));
      const top = [...share.entries()].sort((x, y) => y[1] - x[1]);
      let key = top[0][0];
      if (urgent) {
        const worst = [...share.keys()].sort((x, y) => (URGENCY[y] || 0) - (URGENCY[x] || 0))[0];
        if (URGENCY[worst]) key = worst;
      }
      const members = new Set();
      for (const a of group.arcs) for (const m of a.members) members.add(m);
      out.push({ start: group.start, end: group.end, aggregated: true, key, top, count: group.arcs.length, members });
    }
    group = null;
  };
  for (const a of arcs) {
    if (a.end - a.start >= MIN_ARC) {
      flush();
      out.push(a);
    } else if (group && group.end - group.start < MIN_ARC * 2) {
      group.arcs.push(a);
      group.end = a.end;
    } else {
      flush();
      group = { start: a.start, end: a.end, arcs: [a] };
    }
  }
  flush();
  return out;
}

// Up to `limit` of a set of members, in natural order when the set is
// small (ring order otherwise: sorting a thousand names per arc is slow).
function names(members, limit) {
  let list = [...members];
  if (list.length <= 50) list.sort(naturally);
  const more = list.length - limit;
  list = list.slice(0, limit);
  return list.join(', ') + (more > 0 ? ' and ' + more + ' more' : '');
}

function drawRing() {
  const root = $('ring');
  root.replaceChildren();
  const status = page.status;
  const states = new Map(status.members.map((m) => [m.id, m.state]));
  const owner = byOwner();
  const colourOfKey = (key) => (owner ? memberColour(key) : STATE_COLOURS[key] || '#999');
  const R0 = 150;
  const R1 = 200;
  root.append(svg('circle', { class: 'guide', r: R1 + 8 }), svg('circle', { class: 'guide', r: R0 - 54 }));

  const tokens = page.ring && page.ring.epoch === status.epoch ? page.tokens : [];
  const byMember = ringArcs(tokens);
  const keyed = mergeByKey(byMember, owner ? (a) => a.member : (a) => states.get(a.member) || 'up');
  const arcs = aggregate(keyed, !owner);
  const rings = svg('g', { id: 'ring-arcs' });
  const over = [];
  // Widened urgent arcs cover at most a tenth of the ring between them.
  const urgentCount = owner ? 0 : arcs.filter((a) => URGENCY[a.key]).length;
  const urgentHalf = Math.min(0.0015, 0.05 / Math.max(1, urgentCount));
  for (const a of arcs) {
    let title;
    if (a.aggregated) {
      const shares = a.top.slice(0, 5).map(([k, v]) => k + ' ' + pct(v)).join(', ');
      title = a.count + ' small ranges, ' + pct(a.end - a.start) + ' of the ring: ' + shares + (a.top.length > 5 ? ', and ' + (a.top.length - 5) + ' more' : '');
    } else if (owner) {
      title = a.key + ' (' + (states.get(a.key) || '?') + '): ' + pct(a.end - a.start) + ' of the ring';
    } else {
      title = a.key + ': ' + pct(a.end - a.start) + ' of the ring, owned by ' + names(a.members, 8);
    }
    if (!owner && a.aggregated) title += ' (' + names(a.members, 8) + ')';
    const cls = ['arc'];
    if (a.aggregated) cls.push('aggregated');
    if (page.search && owner && !a.aggregated && !matches(memberById(a.key))) cls.push('dim');
    // A down, leaving or joining member's ranges stay visible however
    // narrow: widened about their middle and drawn over the others.
    const urgent = !owner && URGENCY[a.key];
    const mid = (a.start + a.end) / 2;
    const half = urgent ? Math.max((a.end - a.start) / 2, urgentHalf) : (a.end - a.start) / 2;
    const path = svg('path', { class: cls.join(' '), d: sector(R0, R1, mid - half, mid + half), fill: colourOfKey(a.key), 'data-key': a.key }, svg('title', {}, title));
    if (urgent) over.push(path);
    else rings.append(path);
  }
  rings.append(...over);
  root.append(rings);

  // A searched member's ranges, every one of them, on an outer band.
  if (page.search) {
    const band = svg('g', { id: 'highlight' });
    const found = new Set(status.members.filter(matches).map((m) => m.id));
    for (const a of byMember) {
      if (found.has(a.member)) {
        band.append(svg('path', { class: 'highlight', d: sector(R1 + 3, R1 + 12, a.start, Math.max(a.end, a.start + 0.0008)) }, svg('title', {}, a.member)));
      }
    }
    root.append(band);
  }

  // The plan's moves inside: the outer half of each band is the source's
  // colour, the inner half the target's.
  const plan = page.plan;
  if (plan) {
    const band = svg('g', { id: 'plan-arcs' });
    const moves = plan.moves.map((m) => {
      const start = Number(m.range.start) / SPACE;
      let end = Number(m.range.end) / SPACE;
      if (end <= start) end += 1;
      return { start, end, move: m };
    });
    const runs = [];
    for (const m of moves) {
      const last = runs[runs.length - 1];
      const same = last && last.move.from === m.move.from && last.move.to === m.move.to && last.move.state === m.move.state && Math.abs(last.end - m.start) < 1e-12;
      if (same) { last.end = m.end; last.count += 1; } else runs.push(Object.assign({ count: 1 }, m));
    }
    // Thousands of moves: narrow neighbours in one state draw as one.
    if (runs.length > 600) {
      const merged = [];
      for (const r of runs) {
        const last = merged[merged.length - 1];
        if (last && last.move.state === r.move.state && r.end - last.start < MIN_ARC * 2) {
          last.end = r.end;
          last.count += r.count;
          last.mixed = last.mixed || last.move.from !== r.move.from || last.move.to !== r.move.to;
        } else merged.push(Object.assign({}, r));
      }
      runs.splice(0, runs.length, ...merged);
    }
    // Narrow moves are widened, but all of them together to a fifth of the
    // ring at most.
    const least = Math.min(0.002, 0.2 / Math.max(1, runs.length));
    for (const r of runs) {
      const end = Math.max(r.end, r.start + least);
      const who = r.mixed ? 'between several members' : r.move.from + ' → ' + r.move.to;
      const title = (r.count > 1 ? r.count + ' moves' : 'move ' + r.move.id) + ': ' + who + ', ' + r.move.state + ', ' + pct(r.end - r.start) + ' of the ring';
      const g = svg('g', { class: 'move ' + r.move.state, 'data-move': r.move.id });
      g.append(
        svg('path', { d: sector(R0 - 26, R0 - 8, r.start, end), fill: owner ? memberColour(r.move.from) : '#8a93a6' }),
        svg('path', { d: sector(R0 - 46, R0 - 27, r.start, end), fill: owner ? memberColour(r.move.to) : STATE_COLOURS.joining }),
        svg('title', {}, title),
      );
      band.append(g);
    }
    root.append(band);
  }

  const up = status.members.filter((m) => m.state === 'up').length;
  root.append(
    svg('text', { class: 'small', y: -34 }, 'epoch'),
    svg('text', { class: 'big', y: -8, id: 'ring-epoch' }, String(status.epoch)),
    svg('text', { y: 16 }, status.members.length + ' members, ' + up + ' up'),
    svg('text', { class: 'small', y: 34 }, plan ? 'plan ' + plan.state.replace('_', ' ') + ' (inner band: from → to)' : 'no plan pending'),
  );
  drawLegend(owner, states);
}

function memberById(id) {
  return page.byId.get(id) || { id, state: '?', addresses: [] };
}

function drawLegend(owner, states) {
  const legend = $('legend');
  legend.replaceChildren();
  const entry = (colour, text) => {
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = colour;
    legend.append(el('span', {}, swatch, text));
  };
  if (owner) {
    for (const m of page.status.members) entry(memberColour(m.id), m.id);
  } else {
    const counts = {};
    for (const s of states.values()) counts[s] = (counts[s] || 0) + 1;
    for (const [s, c] of Object.entries(STATE_COLOURS)) entry(c, s + ' (' + (counts[s] || 0) + ')');
  }
}

// ---- summary, plan, tables ------------------------------------------------

function card(label, value, sub, id) {
  return el('div', { class: 'card', id }, el('div', { class: 'label', text: label }), el('div', { class: 'value', text: value }), el('div', { class: 'sub', text: sub || '' }));
}

function drawSummary() {
  const s = page.status;
  const plan = s.plan;
  const cards = [
    card('epoch', String(s.epoch), s.leader ? 'leader ' + s.leader : '', 'card-epoch'),
    card('members', String(s.members.length), s.members.filter((m) => m.state === 'up').length + ' up, ' + s.outside.length + ' outside', 'card-members'),
    card('balance', s.balance.toFixed(3), 'max load / target', 'card-balance'),
  ];
  if (plan) {
    const ratio = plan.summary.ideal_fraction > 0 ? (plan.summary.moved_fraction / plan.summary.ideal_fraction).toFixed(3) + ' × ideal' : '';
    cards.push(card('moved', pct(plan.summary.moved_fraction), 'ideal ' + pct(plan.summary.ideal_fraction) + (ratio ? ', ' + ratio : ''), 'card-moved'));
    cards.push(card('plan age', plan.age_seconds == null ? 'unknown' : duration(plan.age_seconds + elapsed()), plan.idle_seconds == null ? '' : 'last change ' + duration(plan.idle_seconds + elapsed()) + ' ago', 'card-age'));
  } else {
    cards.push(card('plan', 'none', s.planned_in_seconds != null ? 'a change is planned in ' + duration(s.planned_in_seconds - elapsed()) : 'nothing pending', 'card-plan'));
  }
  cards.push(card('source', s.source, s.source_detail || '', 'card-source'));
  const st = s.settings;
  cards.push(card('settings', 'rf ' + st.rf, st.strategy + ', ' + st.tokens_per_member + ' tokens, ' + (st.zone_aware ? 'zone-aware, ' : '') + st.mode, 'card-settings'));
  $('summary').replaceChildren(...cards);
}

function drawPlan() {
  const box = $('plan');
  const status = page.status.plan;
  const plan = page.plan;
  if (!status || !plan) {
    const text = page.status.planned_in_seconds != null
      ? 'No plan yet: a membership change is settling, planned in ' + duration(page.status.planned_in_seconds - elapsed()) + '.'
      : 'No plan pending: the committed ring is where the data is.';
    box.replaceChildren(el('p', { class: 'muted', id: 'no-plan', text }));
    return;
  }
  const counted = plan.moves.filter((m) => m.state !== 'cancelled').length;
  const done = plan.moves.filter((m) => m.state === 'done').length;
  const bar = el('div');
  bar.style.width = (counted ? (100 * done) / counted : 100).toFixed(1) + '%';
  const states = Object.entries(status.summary.states).filter(([, n]) => n > 0).map(([k, n]) => n + ' ' + k.replace('_', ' ')).join(', ');
  const times = [];
  if (status.created_at) times.push('made ' + status.created_at + ' (' + duration(status.age_seconds + elapsed()) + ' ago)');
  if (status.changed_at) times.push('last change ' + duration(status.idle_seconds + elapsed()) + ' ago');
  const rows = [];
  const visible = plan.moves.filter((m) => !page.search || [m.from, m.to, m.id, m.state].some((v) => v.toLowerCase().includes(page.search)));
  for (const m of visible.slice(0, MAX_MOVE_ROWS)) {
    const start = Number(m.range.start) / SPACE;
    let end = Number(m.range.end) / SPACE;
    if (end <= start) end += 1;
    rows.push(el('tr', { 'data-move': m.id },
      el('td', {}, el('code', { text: m.id })),
      el('td', { text: m.from + ' → ' + m.to }),
      el('td', { class: 'num', text: pct(end - start) }),
      el('td', {}, el('span', { class: 'pill ' + m.state, text: m.state.replace('_', ' ') }))));
  }
  const more = visible.length > MAX_MOVE_ROWS ? el('p', { class: 'muted', text: (visible.length - MAX_MOVE_ROWS) + ' more moves (GET /v1/plan lists them all)' }) : '';
  box.replaceChildren(
    el('div', { class: 'plan-head', id: 'plan-head', 'data-plan-id': plan.id },
      el('code', { text: plan.id }),
      el('span', { text: 'epoch ' + plan.from_epoch + ' → ' + plan.to_epoch }),
      el('span', { class: 'pill', text: plan.state.replace('_', ' ') })),
    el('div', { class: 'progress' }, bar),
    el('div', { id: 'plan-progress', text: done + ' of ' + counted + ' moves done' + (states ? ' (' + states + ')' : '') + '; moved ' + pct(status.summary.moved_fraction) + ' vs ideal ' + pct(status.summary.ideal_fraction) }),
    el('div', { class: 'muted', text: times.join('; ') }),
    el('div', { class: 'moves' }, el('table', { id: 'moves' },
      el('thead', {}, el('tr', {}, el('th', { text: 'move' }), el('th', { text: 'from → to' }), el('th', { class: 'num', text: 'share' }), el('th', { text: 'state' }))),
      el('tbody', {}, ...rows))),
    more,
  );
}

function stateCell(m) {
  const cell = el('td');
  const label = el('span', { class: 'state ' + m.state, text: m.state });
  cell.append(label);
  if (m.state === 'down' && m.grace_left_seconds != null) {
    const left = el('span', { class: 'muted countdown', 'data-left': m.grace_left_seconds, 'data-prefix': ' leaves in ' });
    cell.append(left);
  }
  return cell;
}

function drawMembers() {
  const members = page.status.members;
  const visible = members.filter(matches);
  const rows = visible.slice(0, MAX_MEMBER_ROWS).map((m) => el('tr', { 'data-member': m.id, 'data-state': m.state },
    el('td', {}, el('strong', { text: m.id })),
    stateCell(m),
    el('td', { text: m.zone || '-' }),
    el('td', { class: 'num', text: String(m.tokens) }),
    el('td', { class: 'num', text: pct(m.ownership) }),
    el('td', { class: 'num', text: pct(m.replica_ownership) }),
    el('td', { class: 'num', text: String(m.weight) }),
    el('td', { class: 'wrap', text: (m.addresses || []).join(', ') || '-' })));
  $('members').tBodies[0].replaceChildren(...rows);
  $('members-count').textContent = page.search ? visible.length + ' of ' + members.length : String(members.length);

  const outside = page.status.outside;
  const why = {
    not_ready: 'not ready: joins once ready',
    terminating: 'terminating: will not join',
    settling: 'ready, waiting for the settle window',
    joining: 'ready, receiving its ranges in the plan',
    waiting: 'ready, not planned yet (see the log)',
  };
  const orows = outside.map((o) => {
    const cell = el('td', {}, el('span', { class: 'state ' + o.reason, text: why[o.reason] || o.reason }));
    if (o.planned_in_seconds != null) cell.append(el('span', { class: 'muted countdown', 'data-left': o.planned_in_seconds, 'data-prefix': ', planned in ' }));
    return el('tr', { 'data-endpoint': o.id, 'data-reason': o.reason },
      el('td', {}, el('strong', { text: o.id })), cell, el('td', { text: o.zone || '-' }), el('td', { class: 'wrap', text: (o.addresses || []).join(', ') || '-' }));
  });
  if (orows.length === 0) orows.push(el('tr', {}, el('td', { class: 'muted', colspan: 4, text: 'none: the ring has every ready endpoint' })));
  $('outside').tBodies[0].replaceChildren(...orows);
  $('outside-count').textContent = String(outside.length);
  tick();
}

// Counts grace periods and settle windows down between refreshes.
function tick() {
  if (!page.status) return;
  const gone = elapsed();
  for (const node of document.querySelectorAll('.countdown')) {
    node.textContent = node.dataset.prefix + duration(Number(node.dataset.left) - gone);
  }
}

function draw() {
  document.body.dataset.epoch = String(page.status.epoch);
  document.body.dataset.updates = String(page.updates);
  drawSummary();
  drawPlan();
  drawMembers();
  drawRing();
}

$('search').addEventListener('input', (event) => {
  page.search = event.target.value.trim().toLowerCase();
  if (page.status) draw();
});

$('colour-by').addEventListener('change', (event) => {
  page.colourBy = event.target.value;
  if (page.status) drawRing();
});

setInterval(() => {
  tick();
  if (page.status) drawSummary();
}, 1000);

refresh();
watch();
