//! The leaderboard workload: a REGIONAL `dsss_examples::Leaderboard`, one object per region
//! (named by [`super::ObjectWorkload::object_id_in`]), copied and ordered in that region alone
//! (docs/design.md section 2, "Object scope"). Instances record random scores of a fixed set of
//! players on their region's board and read its top and ranks. The generic checkers then
//! check each region's object on its own; every read must also show a well-formed board: at
//! most the players asked for, best first, each player once, no score above any recorded.

use std::collections::BTreeSet;

use dsss::{Codec, MethodError, Postcard};
use dsss_examples::Leaderboard;
use dsss_wire::Scope;

use super::ObjectWorkload;
use super::history::CallSpec;
use crate::random::SimRng;

/// The object name of the leaderboards in leaderboard runs; each region's board is this name,
/// a slash and the region.
pub const LEADERBOARD_OBJECT_ID: &str = "sim/leaderboard";

/// The method id of `record(player: String, score: u64) -> Option<u32>`.
pub const RECORD_METHOD_ID: u32 = 1;

/// The players of a standard leaderboard run.
pub const LEADERBOARD_PLAYER_COUNT: usize = 8;

/// The highest score a standard leaderboard run records.
pub const LEADERBOARD_SCORE_MAX: u64 = 1_000;

/// The most players a leaderboard workload records: every one of them stays ranked.
pub const PLAYERS_MAX: usize = dsss_examples::leaderboard::RANKED_PLAYERS_MAX;

/// The longest top list a read asks for.
pub const TOP_COUNT_MAX: usize = 5;

/// What a leaderboard read asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderboardRead {
    /// `top(count)`.
    Top(usize),
    /// `rank_of(player)`.
    RankOf(String),
}

/// What a leaderboard read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderboardValue {
    /// The players by descending score.
    Top(Vec<(String, u64)>),
    /// The player's rank from 1, if ranked.
    Rank(Option<u32>),
}

/// The leaderboard workload. See the module documentation.
#[derive(Clone, Debug)]
pub struct LeaderboardWorkload {
    object_id: String,
    players: Vec<String>,
    score_max: u64,
}

impl LeaderboardWorkload {
    /// Leaderboards named `object_id`/region on which `player_count` players
    /// (1..=[`PLAYERS_MAX`], so that every one stays ranked) score 0..=`score_max`.
    pub fn new(object_id: &str, player_count: usize, score_max: u64) -> Result<Self, String> {
        if !(1..=PLAYERS_MAX).contains(&player_count) {
            return Err(format!(
                "player_count {player_count} is outside 1..={PLAYERS_MAX}"
            ));
        }
        Ok(LeaderboardWorkload {
            object_id: object_id.to_string(),
            players: player_names(player_count),
            score_max,
        })
    }

    /// The call `record(player, score)`.
    pub fn record(player: &str, score: u64) -> CallSpec {
        CallSpec {
            method_id: RECORD_METHOD_ID,
            arguments: Postcard::encode(&(player, score))
                .expect("a string and an integer always encode"),
        }
    }

    /// Why a top list breaks the board's invariant, if it does.
    fn check_top(&self, count: usize, top: &[(String, u64)]) -> Result<(), String> {
        if top.len() > count.min(self.players.len()) {
            return Err(format!(
                "{} players in a top {count} of {} players",
                top.len(),
                self.players.len()
            ));
        }
        let mut seen = BTreeSet::new();
        for (player, score) in top {
            if !self.players.contains(player) {
                return Err(format!("{player} never recorded a score"));
            }
            if !seen.insert(player.as_str()) {
                return Err(format!("{player} stands twice in the top"));
            }
            if *score > self.score_max {
                return Err(format!(
                    "{player} holds {score}, above the highest score recorded, {}",
                    self.score_max
                ));
            }
        }
        let best_first = top.windows(2).all(|pair| {
            let ((first_name, first_score), (second_name, second_score)) = (&pair[0], &pair[1]);
            first_score > second_score || (first_score == second_score && first_name < second_name)
        });
        if !best_first {
            return Err(format!("the top is not best first: {top:?}"));
        }
        Ok(())
    }
}

impl ObjectWorkload for LeaderboardWorkload {
    type Object = Leaderboard;
    type Read = LeaderboardRead;
    type Value = LeaderboardValue;

    fn object_id(&self) -> &str {
        &self.object_id
    }

    fn scope(&self) -> Scope {
        Scope::Regional
    }

    fn setup_calls(&self) -> Vec<CallSpec> {
        // An empty board is a fine start.
        Vec::new()
    }

    fn is_set_up(&self, _object: &Leaderboard) -> bool {
        true
    }

    fn random_call(&self, rng: &mut SimRng) -> CallSpec {
        let player = rng
            .choose(&self.players)
            .expect("a leaderboard workload has players");
        Self::record(player, rng.range_inclusive(0, self.score_max))
    }

    fn random_read(&self, rng: &mut SimRng) -> LeaderboardRead {
        if rng.chance(0.5) {
            LeaderboardRead::Top(rng.range_inclusive(1, TOP_COUNT_MAX as u64) as usize)
        } else {
            let player = rng
                .choose(&self.players)
                .expect("a leaderboard workload has players");
            LeaderboardRead::RankOf(player.clone())
        }
    }

    fn read(&self, object: &Leaderboard, read: &LeaderboardRead) -> LeaderboardValue {
        match read {
            LeaderboardRead::Top(count) => LeaderboardValue::Top(object.top(*count)),
            LeaderboardRead::RankOf(player) => LeaderboardValue::Rank(object.rank_of(player)),
        }
    }

    fn check_read(&self, read: &LeaderboardRead, value: &LeaderboardValue) -> Result<(), String> {
        match (read, value) {
            (LeaderboardRead::Top(count), LeaderboardValue::Top(top)) => {
                self.check_top(*count, top)
            }
            (LeaderboardRead::RankOf(player), LeaderboardValue::Rank(Some(rank)))
                if *rank == 0 || *rank as usize > self.players.len() =>
            {
                Err(format!(
                    "{player} ranks {rank} among {} players",
                    self.players.len()
                ))
            }
            (LeaderboardRead::RankOf(_), LeaderboardValue::Rank(_)) => Ok(()),
            (read, value) => Err(format!("{read:?} returned a {value:?}")),
        }
    }

    fn is_refusal(&self, _call: &CallSpec, _outcome: &Result<Vec<u8>, MethodError>) -> bool {
        // A score is always recorded.
        false
    }
}

/// The leaderboard workload of a standard leaderboard run: [`LEADERBOARD_PLAYER_COUNT`]
/// players scoring up to [`LEADERBOARD_SCORE_MAX`].
pub fn leaderboard_workload() -> LeaderboardWorkload {
    LeaderboardWorkload {
        object_id: LEADERBOARD_OBJECT_ID.to_string(),
        players: player_names(LEADERBOARD_PLAYER_COUNT),
        score_max: LEADERBOARD_SCORE_MAX,
    }
}

fn player_names(count: usize) -> Vec<String> {
    (0..count).map(|index| format!("player-{index}")).collect()
}
