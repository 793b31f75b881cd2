//! The one policy for a write the store refuses as a conflict: another writer (another hub
//! on the same database) changed the conversation after this router read it. The router
//! reloads the stored truth and decides the same intent again (a request, a state change,
//! a reply, a timeout), at most [`CONFLICT_RETRIES`] times, and after each race it lost
//! steps aside for a moment of varying length so that one writer does not win every time.
//!
//! Deciding again is safe because nothing was delivered on the refused state: a refused
//! request was not handed to a handler, a refused change or timeout was not announced, and
//! a refused reply is decided again only while no turn was appended since its request
//! (the caller checks that; the reply itself is kept). The bound keeps a conversation that
//! changes faster than it can be read from looping forever; the last refusal goes to the
//! caller as [`StoreError::Conflict`](colloquy_storage::StoreError::Conflict).

use std::time::Duration;

use colloquy_core::MessageId;

/// How many times one intent refused as a conflict is decided again on the reloaded truth.
pub(super) const CONFLICT_RETRIES: u32 = 64;

/// The longest pause after a lost race, in milliseconds.
const MAX_STEP_ASIDE_MS: u32 = 20;

/// The conflicts one intent has met so far.
#[derive(Debug)]
pub(super) struct Conflicts {
    lost: u32,
    seed: u64,
}

impl Conflicts {
    /// No conflict yet. `seed` varies the pauses between writers: the random part of an
    /// id this writer minted (UUID v7), so no clock or random source is read here.
    pub(super) fn new(seed: MessageId) -> Self {
        let random = u64::from_le_bytes(
            seed.as_uuid().as_bytes()[8..16]
                .try_into()
                .unwrap_or([0; 8]),
        );
        Self {
            lost: 0,
            seed: random,
        }
    }

    /// Whether the intent may be decided again: fewer races lost than the bound. When not,
    /// the conflict goes to the caller.
    pub(super) fn may_retry(&self) -> bool {
        self.lost < CONFLICT_RETRIES
    }

    /// Counts a race lost to another writer (waiting for another writer's exchange that
    /// then made progress is not one).
    pub(super) fn lost_race(&mut self) {
        self.lost = self.lost.saturating_add(1);
    }

    /// For an intent whose every conflict is a lost race: false once the bound is
    /// reached; else counts the race, steps aside and returns true (decide again).
    pub(super) async fn again(&mut self) -> bool {
        if !self.may_retry() {
            return false;
        }
        self.lost_race();
        self.step_aside().await;
        true
    }

    /// How long to step aside after the latest lost race: up to as many milliseconds as
    /// races lost (at most [`MAX_STEP_ASIDE_MS`]), varying with the seed and the race.
    pub(super) fn pause(&self) -> Duration {
        let ceiling = u64::from(self.lost.clamp(1, MAX_STEP_ASIDE_MS)) * 1_000;
        // A different draw for each race from the one seed (a 64-bit mix, splitmix64's).
        let mut z = self
            .seed
            .wrapping_add(u64::from(self.lost).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_micros(z % ceiling)
    }

    /// Steps aside for [`pause`](Self::pause).
    pub(super) async fn step_aside(&self) {
        tokio::time::sleep(self.pause()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(random: u64) -> MessageId {
        let mut bytes = [0u8; 10];
        bytes[2..].copy_from_slice(&random.to_le_bytes());
        MessageId::from_parts(colloquy_core::Timestamp::from_millis(1), bytes)
    }

    #[tokio::test(start_paused = true)]
    async fn again_steps_aside_until_the_bound_then_refuses() {
        let mut conflicts = Conflicts::new(id(9));
        let started = tokio::time::Instant::now();
        let mut agains = 0;
        while conflicts.again().await {
            agains += 1;
        }
        assert_eq!(agains, CONFLICT_RETRIES);
        assert!(started.elapsed() > Duration::ZERO, "it stepped aside");
        assert!(started.elapsed() < Duration::from_millis(20) * CONFLICT_RETRIES);
    }

    #[test]
    fn an_intent_is_decided_again_at_most_the_bound_times() {
        let mut conflicts = Conflicts::new(id(7));
        let mut retried = 0;
        while conflicts.may_retry() {
            conflicts.lost_race();
            retried += 1;
        }
        assert_eq!(retried, CONFLICT_RETRIES);
        conflicts.lost_race();
        assert!(
            !conflicts.may_retry(),
            "the bound holds after it is reached"
        );
    }

    #[test]
    fn pauses_grow_with_the_races_lost_and_stay_under_the_ceiling() {
        for seed in [0, 1, 42, u64::MAX, 0xDEAD_BEEF] {
            let mut conflicts = Conflicts::new(id(seed));
            for lost in 1..=CONFLICT_RETRIES {
                conflicts.lost_race();
                let ceiling = u64::from(lost.min(MAX_STEP_ASIDE_MS)) * 1_000;
                assert!(
                    conflicts.pause() < Duration::from_micros(ceiling),
                    "seed {seed}, race {lost}: {:?}",
                    conflicts.pause()
                );
            }
        }
    }

    #[test]
    fn writers_with_different_seeds_step_aside_for_different_times() {
        let pauses = |seed| {
            let mut conflicts = Conflicts::new(id(seed));
            (0..10)
                .map(|_| {
                    conflicts.lost_race();
                    conflicts.pause()
                })
                .collect::<Vec<_>>()
        };
        assert_ne!(pauses(1), pauses(2));
        // And one writer's pauses vary from race to race.
        let one = pauses(3);
        assert!(one.windows(2).any(|w| w[0] != w[1]), "{one:?}");
    }
}
