//! [`Leaderboard`]: a regional object. Each region keeps its own leaderboard, ordered by that
//! region's raft group alone, so a score lands after one round trip inside the region.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most players a leaderboard ranks; a lower score than the last one's is not kept.
pub const RANKED_PLAYERS_MAX: usize = 100;

/// The best score of each player in one region, the top [`RANKED_PLAYERS_MAX`] kept.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaderboard {
    best: BTreeMap<String, u64>,
}

#[dsss::methods]
impl Leaderboard {
    /// Records `score` for `player`; returns the player's rank from 1 if they are ranked.
    #[mutate(id = 1)]
    pub fn record(&mut self, player: String, score: u64) -> Option<u32> {
        let best = self.best.entry(player.clone()).or_insert(0);
        *best = (*best).max(score);
        if self.best.len() > RANKED_PLAYERS_MAX {
            let lowest = self
                .best
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(name, _)| name.clone())
                .expect("the board is not empty");
            self.best.remove(&lowest);
        }
        self.rank_of(&player)
    }

    /// The players by descending score (ties by name).
    pub fn top(&self, count: usize) -> Vec<(String, u64)> {
        let mut ranked: Vec<(String, u64)> = self
            .best
            .iter()
            .map(|(name, score)| (name.clone(), *score))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(count);
        ranked
    }

    /// `player`'s rank from 1.
    pub fn rank_of(&self, player: &str) -> Option<u32> {
        let score = *self.best.get(player)?;
        let ahead = self
            .best
            .iter()
            .filter(|(name, other)| **other > score || (**other == score && name.as_str() < player))
            .count();
        u32::try_from(ahead + 1).ok()
    }
}
