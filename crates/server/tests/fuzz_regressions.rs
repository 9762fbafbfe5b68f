//! Inputs the fuzzers found (fuzz/, docs/fuzzing.md), each pinned as the
//! behaviour it should have had.

use ringleader::coordinator::Coordinator;
use ringleader::state::State;
use ringleader::testing::{no_settle, pod};
use ringleader_watch::MemberSet;
use std::time::{Duration, Instant};

/// A state the coordinator wrote: epoch 1 committed (db-0..2), a plan to
/// add db-3 in flight. fuzz/corpus/state_decode/state-plan.json.
const STATE_WITH_PLAN: &str = r#"{"format":1,"settings":{"rf":2,"strategy":"balanced","tokens_per_member":4,"zone_aware":true,"mode":"ack"},"epoch":1,"revision":1,"committed":{"format":1,"strategy":"balanced","tokens_per_member":4,"members":[{"id":"db-0","zone":"eu-west-1a","weight":1,"tokens":"/////////z9UVVVVVVVVVamqqqqqqqqqqaqqqqqqquo="},{"id":"db-1","zone":"eu-west-1b","weight":1,"tokens":"VFVVVVVVVRX/////////f1RVVVVVVVWVVFVVVVVVVdU="},{"id":"db-2","zone":"eu-west-1c","weight":1,"tokens":"qaqqqqqqqiqpqqqqqqqqav////////+///////////8="}]},"plan":{"id":"e1-52d9e1cf9ab2","from_epoch":1,"to_epoch":2,"state":"in_progress","target":{"format":1,"strategy":"balanced","tokens_per_member":4,"members":[{"id":"db-0","zone":"eu-west-1a","weight":1,"tokens":"/////////z9UVVVVVVVVVamqqqqqqqqqqaqqqqqqquo="},{"id":"db-1","zone":"eu-west-1b","weight":1,"tokens":"VFVVVVVVVRX/////////f1RVVVVVVVWVVFVVVVVVVdU="},{"id":"db-2","zone":"eu-west-1c","weight":1,"tokens":"qaqqqqqqqiqpqqqqqqqqav////////+///////////8="},{"id":"db-3","zone":"eu-west-1a","weight":1,"tokens":"qf7//////z+p/v//////f6n+////////"}]},"settings":{"rf":2,"strategy":"balanced","tokens_per_member":4,"zone_aware":true,"mode":"ack"},"moves":[{"id":"810fd8453601b665","range":{"start":1537228672809129300,"end":4611686018427387561},"from":"db-0","to":"db-3","state":"pending"},{"id":"63b16bd9594a3e67","range":{"start":6148914691236517204,"end":7686143364045646505},"from":"db-1","to":"db-3","state":"pending"},{"id":"592cf8384e04a712","range":{"start":7686143364045646505,"end":9223372036854775465},"from":"db-0","to":"db-3","state":"pending"},{"id":"4bd724eedddf7895","range":{"start":16909515400900422313,"end":18446744073709551273},"from":"db-1","to":"db-3","state":"pending"}],"cleanups":[{"member":"db-0","range":{"start":1537228672809129300,"end":4611686018427387561}},{"member":"db-1","range":{"start":6148914691236517204,"end":7686143364045646505}},{"member":"db-0","range":{"start":7686143364045646505,"end":9223372036854775465}},{"member":"db-1","range":{"start":16909515400900422313,"end":18446744073709551273}}],"summary":{"moves":4,"moved_fraction":0.20833333333333331,"ideal_fraction":0.25,"members":{"db-0":{"inbound":0.0,"outbound":0.24999999999999997},"db-1":{"inbound":0.0,"outbound":0.16666666666666663},"db-3":{"inbound":0.41666666666666663,"outbound":0.0}}}}}"#;

/// Starts a coordinator on `state`, feeds it a member set with one more
/// member and lets it plan.
fn run_coordinator(state: State) {
    let settings = state.settings;
    let timing = no_settle(Duration::ZERO);
    let mut members: MemberSet = state
        .committed
        .members()
        .iter()
        .map(|m| pod(m.id.as_str(), true))
        .collect();
    members.insert(pod("db-new", true));
    let mut coordinator = Coordinator::new(state, settings, timing);
    let now = Instant::now();
    coordinator.observe(members, now);
    coordinator.tick(now);
}

#[test]
fn the_saved_state_fixture_reads_back_identical() {
    let state = State::decode(STATE_WITH_PLAN.as_bytes(), "fixture").expect("a good state");
    let again = State::decode(&state.encode().unwrap(), "re-encoded").unwrap();
    assert_eq!(again, state);
}

/// fuzz/state_decode: serde_json's default float parser is not exact, so a
/// summary fraction such as 1.41666666666666663 read back as one f64,
/// encoded as its shortest form, and read again as another. Fixed with
/// serde_json's `float_roundtrip` feature (workspace Cargo.toml).
#[test]
fn a_state_reads_back_to_the_very_same_floats() {
    let text = STATE_WITH_PLAN.replace(
        "\"inbound\":0.41666666666666663",
        "\"inbound\":1.41666666666666663",
    );
    assert_ne!(text, STATE_WITH_PLAN);
    let state = State::decode(text.as_bytes(), "fuzz").expect("a readable state");
    let again = State::decode(&state.encode().unwrap(), "re-encoded").unwrap();
    assert_eq!(again, state, "decode(encode(state)) changed a float");
}

/// fuzz/state_decode: a plan whose own settings say rf 0 was accepted, and
/// the coordinator then panicked ("validated settings have rf >= 1") when
/// it replanned or committed. `State::decode` must check the plan's
/// settings as it checks the committed ones.
#[test]
fn a_plan_with_invalid_settings_is_refused_not_a_crash_later() {
    let plan_settings = "\"settings\":{\"rf\":2,\"strategy\":\"balanced\",\"tokens_per_member\":4,\"zone_aware\":true,\"mode\":\"ack\"},\"moves\"";
    assert!(STATE_WITH_PLAN.contains(plan_settings));
    for bad in ["\"rf\":0", "\"rf\":17"] {
        let text = STATE_WITH_PLAN.replace(plan_settings, &plan_settings.replace("\"rf\":2", bad));
        let error = State::decode(text.as_bytes(), "state.json")
            .expect_err("a plan with invalid settings must be refused")
            .to_string();
        assert!(error.contains("will not overwrite"), "{error}");
    }
}

/// fuzz/state_decode: a state at the last possible epoch was accepted, and
/// the next plan's `epoch + 1` overflowed (a panic in debug builds; in
/// release the epoch wrapped to 0, going back in time). `State::decode`
/// must refuse epochs that leave no room for a next one.
#[test]
fn a_state_at_the_last_epoch_is_refused_not_an_overflow_later() {
    for (from, to) in [
        ("\"epoch\":1,", format!("\"epoch\":{},", u64::MAX)),
        ("\"to_epoch\":2,", format!("\"to_epoch\":{},", u64::MAX)),
    ] {
        let text = STATE_WITH_PLAN.replacen(from, &to, 1);
        assert_ne!(text, STATE_WITH_PLAN);
        if let Ok(state) = State::decode(text.as_bytes(), "state.json") {
            run_coordinator(state);
            panic!("a state with {to} was accepted");
        }
    }
}
