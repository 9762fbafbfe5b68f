//! What the coordinator runs with, validated: ring settings (persisted with
//! the state, since changing them moves data) and timing (not persisted).
//! The mode and the pace are persisted with them but move no data: a
//! coordinator started with others applies its own to the stored plan.

pub use ringleader_planner::Pace;
use ringleader_ring::{Replication, RingConfig, Strategy};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How plans progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Shards report each move done; the target commits when all are.
    #[default]
    Ack,
    /// Plans commit at once (caches that stream nothing); the plan is kept
    /// for reading.
    Auto,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Ack => "ack",
            Mode::Auto => "auto",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ack" => Ok(Mode::Ack),
            "auto" => Ok(Mode::Auto),
            other => Err(format!(
                "unknown mode {other:?}: expected \"ack\" or \"auto\""
            )),
        }
    }
}

/// Ring and replication settings: what the state was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RingSettings {
    /// Replication factor.
    pub rf: usize,
    /// Token allocation strategy.
    pub strategy: Strategy,
    /// Tokens per unit of weight.
    pub tokens_per_member: u32,
    /// Zone-aware replication.
    pub zone_aware: bool,
    /// Plan mode.
    pub mode: Mode,
    /// How many moves run at once (mode `ack`); absent from states stored
    /// before it existed (the default then).
    #[serde(default)]
    pub pace: Pace,
}

impl Default for RingSettings {
    fn default() -> Self {
        Self {
            rf: 1,
            strategy: Strategy::Balanced,
            tokens_per_member: 16,
            zone_aware: false,
            mode: Mode::Ack,
            pace: Pace::default(),
        }
    }
}

impl RingSettings {
    /// The ring config.
    pub fn ring_config(&self) -> RingConfig {
        RingConfig::new(self.strategy, self.tokens_per_member)
    }

    /// The replication.
    pub fn replication(&self) -> Replication {
        Replication::new(self.rf, self.zone_aware)
    }

    /// Checks the values, with messages that say what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if self.rf == 0 {
            return Err("--rf must be at least 1".into());
        }
        if self.rf > 16 {
            return Err(format!(
                "--rf {} is more than the 16 replicas ringleader supports",
                self.rf
            ));
        }
        if self.tokens_per_member == 0
            || self.tokens_per_member > ringleader_ring::MAX_TOKENS_PER_MEMBER
        {
            return Err(format!(
                "--tokens-per-member must be between 1 and {}, got {}",
                ringleader_ring::MAX_TOKENS_PER_MEMBER,
                self.tokens_per_member
            ));
        }
        Ok(())
    }

    /// The differences that matter for data placement, for messages.
    pub fn placement_differences(&self, other: &RingSettings) -> Vec<String> {
        let mut out = Vec::new();
        if self.rf != other.rf {
            out.push(format!("rf {} → {}", self.rf, other.rf));
        }
        if self.strategy != other.strategy {
            out.push(format!("strategy {} → {}", self.strategy, other.strategy));
        }
        if self.tokens_per_member != other.tokens_per_member {
            out.push(format!(
                "tokens per member {} → {}",
                self.tokens_per_member, other.tokens_per_member
            ));
        }
        if self.zone_aware != other.zone_aware {
            out.push(format!(
                "zone-aware {} → {}",
                self.zone_aware, other.zone_aware
            ));
        }
        out
    }
}

/// Parses a limit of `--max-moves-per-member` or `--max-moves`: a whole
/// number from 1, or `unlimited`.
pub fn parse_limit(text: &str) -> Result<Option<u32>, String> {
    match text.trim() {
        "unlimited" | "none" => Ok(None),
        t => match t.parse::<u32>() {
            Ok(0) => Err(
                "a limit of 0 would never let a move run: give 1 or more, or `unlimited`".into(),
            ),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!(
                "bad limit {text:?}: give a whole number from 1, or `unlimited`"
            )),
        },
    }
}

/// Flap damping and batching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Quiet time before planning.
    pub settle: Duration,
    /// Longest wait for quiet.
    pub settle_max: Duration,
    /// How long a member may be down before it leaves the ring.
    pub down_grace: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            settle: Duration::from_secs(5),
            settle_max: Duration::from_secs(30),
            down_grace: Duration::from_secs(60),
        }
    }
}

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || format!("bad duration {text:?}: write e.g. 500ms, 5s, 2m or 1h");
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&seconds) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "s", "5x", "-1s", "1e999"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_parse_as_numbers_or_unlimited() {
        assert_eq!(parse_limit("2"), Ok(Some(2)));
        assert_eq!(parse_limit("unlimited"), Ok(None));
        assert!(parse_limit("0").unwrap_err().contains("never"));
        assert!(parse_limit("-1").is_err());
    }

    #[test]
    fn settings_stored_before_the_pace_existed_read_with_the_default_pace() {
        let old = r#"{"rf":1,"strategy":"balanced","tokens_per_member":16,"zone_aware":false,"mode":"ack"}"#;
        let settings: RingSettings = serde_json::from_str(old).unwrap();
        assert_eq!(settings.pace, Pace::default());
        let again: RingSettings =
            serde_json::from_str(&serde_json::to_string(&settings).unwrap()).unwrap();
        assert_eq!(again, settings);
    }

    #[test]
    fn settings_validation_says_what_is_allowed() {
        let mut s = RingSettings::default();
        assert!(s.validate().is_ok());
        s.rf = 0;
        assert!(s.validate().unwrap_err().contains("at least 1"));
        s.rf = 3;
        s.tokens_per_member = 0;
        assert!(s.validate().unwrap_err().contains("between 1 and"));
    }
}
