//! Arbitrary bytes as a saved coordinator state (the file store's JSON).
//!
//! Checks: `State::decode` never panics; a state it accepts encodes and
//! decodes to the same state; and a coordinator started from it does not
//! panic either — it builds its API view, takes a member set, plans, ticks
//! and takes move reports — since a hand-edited or damaged state file is
//! input like any other (DESIGN §9).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringleader::coordinator::Coordinator;
use ringleader::state::State;
use ringleader::testing::{no_settle, pod};
use ringleader::view::{SourceStatus, View};
use ringleader_watch::MemberSet;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Ok(state) = State::decode(data, "fuzz.json") else {
        return;
    };
    let bytes = state.encode().expect("a decoded state encodes");
    let again = State::decode(&bytes, "re-encoded").expect("a re-encoded state decodes");
    assert_eq!(again, state, "decode(encode(state)) differs");

    // Large rings are slow to plan, not wrong; keep iterations fast.
    let small = |tokens: u32| tokens <= 64;
    if !small(state.settings.tokens_per_member)
        || !state
            .plan
            .as_ref()
            .is_none_or(|p| small(p.settings.tokens_per_member))
    {
        return;
    }
    run_coordinator(state);
});

fn run_coordinator(state: State) {
    let settings = state.settings;
    let timing = no_settle(Duration::ZERO);
    let move_ids: Vec<String> = state
        .plan
        .iter()
        .flat_map(|p| p.plan.moves.iter().map(|m| m.id.as_str().to_owned()))
        .take(8)
        .collect();
    let mut members: MemberSet = state
        .committed
        .members()
        .iter()
        .map(|m| pod(m.id.as_str(), true))
        .collect();
    let mut coordinator = Coordinator::new(state, settings, timing);
    let view = View::build(&coordinator, None, SourceStatus::default(), true, None);
    let _ = (view.plan_view(), view.token_views(), view.member_views());
    for id in &move_ids {
        let _ = coordinator.move_done(id);
    }
    let now = Instant::now();
    coordinator.observe(members.clone(), now);
    coordinator.tick(now);
    members.insert(pod("fuzz-joiner", true));
    coordinator.observe(members, now);
    coordinator.tick(now);
    let view = View::build(
        &coordinator,
        Some(&view),
        SourceStatus::default(),
        true,
        None,
    );
    let _ = (view.plan_view(), view.token_views(), view.member_views());
    let _ = view.placement();
}
