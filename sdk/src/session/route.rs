//! [`LeaderTracker`]: which member of a group the next request goes to.
//!
//! Requests that only a leader serves (or that a leader serves one hop faster) go to the member
//! believed to lead. A member that answers "not the leader" may name who is; a member that
//! does not answer, or fails, is passed over for the next one in a fixed rotation. The tracker
//! decides; the drivers only deliver to the member it names.

/// The member the next request goes to, and how that guess changes with answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderTracker {
    members: Vec<u64>,
    current: usize,
}

/// What the caller should do after a "not the leader" answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextAttempt {
    /// The answer named a leader: try it at once.
    Now,
    /// Nobody is known to lead (an election may be under way): wait, then try the next member.
    AfterWait,
}

impl LeaderTracker {
    /// A tracker over `members` (never empty) whose first guess is the member at
    /// `start % members.len()`, so that many clients spread over the members.
    ///
    /// # Panics
    /// If `members` is empty (configurations are validated before).
    pub fn new(members: Vec<u64>, start: u64) -> LeaderTracker {
        assert!(!members.is_empty(), "a leader tracker needs members");
        let current = (start % members.len() as u64) as usize;
        LeaderTracker { members, current }
    }

    /// The member the next request goes to.
    pub fn target(&self) -> u64 {
        self.members[self.current]
    }

    /// The members, in rotation order.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// `from` answered: keep sending there.
    pub fn handle_success(&mut self, from: u64) {
        if let Some(index) = self.index_of(from) {
            self.current = index;
        }
    }

    /// `from` said it does not lead, naming `hint` perhaps.
    pub fn handle_not_leader(&mut self, from: u64, hint: Option<u64>) -> NextAttempt {
        if let Some(index) = hint
            .filter(|hint| *hint != from)
            .and_then(|hint| self.index_of(hint))
        {
            self.current = index;
            return NextAttempt::Now;
        }
        self.handle_failure(from);
        NextAttempt::AfterWait
    }

    /// `from` did not answer or failed: move past it, unless another answer moved the guess
    /// already.
    pub fn handle_failure(&mut self, from: u64) {
        if self.target() == from {
            self.current = (self.current + 1) % self.members.len();
        }
    }

    fn index_of(&self, member: u64) -> Option<usize> {
        self.members
            .iter()
            .position(|candidate| *candidate == member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_is_followed_and_silence_moves_on() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 7);
        assert_eq!(tracker.target(), 2);
        assert_eq!(tracker.handle_not_leader(2, Some(3)), NextAttempt::Now);
        assert_eq!(tracker.target(), 3);
        tracker.handle_failure(3);
        assert_eq!(tracker.target(), 1);
        // A late failure of a member already passed over changes nothing.
        tracker.handle_failure(3);
        assert_eq!(tracker.target(), 1);
        assert_eq!(tracker.handle_not_leader(1, None), NextAttempt::AfterWait);
        assert_eq!(tracker.target(), 2);
        // A hint naming an unknown member or the answering member itself is not followed.
        assert_eq!(
            tracker.handle_not_leader(2, Some(9)),
            NextAttempt::AfterWait
        );
        assert_eq!(tracker.target(), 3);
        tracker.handle_success(1);
        assert_eq!(tracker.target(), 1);
    }
}
