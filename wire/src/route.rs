//! [`LeaderTracker`]: which member of a group the next request goes to.
//!
//! Requests that only a leader serves (or that a leader serves one hop faster) go to the member
//! believed to lead. A member that answers "not the leader" may name who is; a member that
//! does not answer, or fails, is passed over for the next one in a fixed rotation. The tracker
//! decides; the drivers only deliver to the member it names.
//!
//! Every caller of a raft group routes with it, so that production and the simulator make the
//! same choices: the SDK's client session and raw region client, a region leader's calls to
//! the coordinator, and the coordinator's deliveries of sealed epochs to each region. It lives
//! here because every crate of DSSS depends on the wire crate, and it needs nothing but the
//! member ids.

use crate::proto;

impl proto::NotLeader {
    /// The leader this answer names, if it names one (0 on the wire means "unknown").
    pub fn leader_hint(&self) -> Option<u64> {
        (self.leader_node_id != 0).then_some(self.leader_node_id)
    }
}

impl proto::RegionBatchAck {
    /// The coordinator leader this acknowledgement names and its term, for
    /// [`LeaderTracker::handle_leader`]: `from` (the replica that answered) and term 0 when
    /// the acknowledgement does not say.
    pub fn leader_of_term(&self, from: u64) -> (u64, u64) {
        let leader = if self.leader_node_id == 0 {
            from
        } else {
            self.leader_node_id
        };
        (leader, self.leader_term)
    }
}

/// The member the next request goes to, and how that guess changes with answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderTracker {
    members: Vec<u64>,
    current: usize,
    /// The highest term a leader announced itself with ([`LeaderTracker::handle_leader`]).
    announced_term: u64,
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
        LeaderTracker {
            members,
            current,
            announced_term: 0,
        }
    }

    /// The member the next request goes to.
    pub fn target(&self) -> u64 {
        self.members[self.current]
    }

    /// The members, in rotation order.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// True when `member` is one of the members.
    pub fn contains(&self, member: u64) -> bool {
        self.index_of(member).is_some()
    }

    /// The member after the target in the rotation: the one a failure of the target moves to.
    pub fn next_after_target(&self) -> u64 {
        self.members[(self.current + 1) % self.members.len()]
    }

    /// Sends the next requests to `member`, when it is one of the members (a caller learned
    /// who leads some other way, or an operator chose). False, and nothing changes, otherwise.
    pub fn prefer(&mut self, member: u64) -> bool {
        match self.index_of(member) {
            Some(index) => {
                self.current = index;
                true
            }
            None => false,
        }
    }

    /// `from` answered as the leader would: keep sending there. An answer from a stranger
    /// changes nothing.
    pub fn handle_success(&mut self, from: u64) {
        self.prefer(from);
    }

    /// `leader` said it leads in raft term `term`, in an answer or unasked: keep sending there,
    /// unless a leader of a higher term was heard of already (the message is stale: its sender
    /// was deposed since). Term 0 means the sender does not say its term: it counts as
    /// [`LeaderTracker::handle_success`]. An announcement lets a caller leave a former leader
    /// that went silent without failing its calls as soon as its successor speaks, instead of
    /// after the calls' timeout. True when the guess now names `leader`.
    pub fn handle_leader(&mut self, leader: u64, term: u64) -> bool {
        if term == 0 {
            self.handle_success(leader);
        } else if term >= self.announced_term && self.contains(leader) {
            self.announced_term = term;
            self.prefer(leader);
        }
        self.target() == leader
    }

    /// The highest term a leader announced itself with so far (0 before any).
    pub fn announced_term(&self) -> u64 {
        self.announced_term
    }

    /// `from` said it does not lead, naming `hint` perhaps. A hint is followed only when it
    /// names another member: a stale hint naming the answering member itself, or a node the
    /// tracker does not know, would only send the next request where it cannot succeed.
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
    fn the_leader_of_the_highest_term_heard_of_is_followed_and_stale_ones_are_not() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 0);
        // The target went silent; its successor of term 6 speaks up.
        assert!(tracker.handle_leader(2, 6));
        assert_eq!((tracker.target(), tracker.announced_term()), (2, 6));
        // A delayed acknowledgement of the deposed leader of term 5 moves nothing.
        assert!(!tracker.handle_leader(1, 5));
        assert_eq!(tracker.target(), 2);
        // A failure moves past the leader; the same leader speaking again in its term (it is
        // alive after all) brings the guess back.
        tracker.handle_failure(2);
        assert_eq!(tracker.target(), 3);
        assert!(tracker.handle_leader(2, 6));
        // A node that is not a member moves nothing, whatever its term.
        assert!(!tracker.handle_leader(9, 7));
        assert_eq!((tracker.target(), tracker.announced_term()), (2, 6));
        // A sender that does not say its term counts as an answer.
        assert!(tracker.handle_leader(3, 0));
        assert_eq!((tracker.target(), tracker.announced_term()), (3, 6));
    }

    #[test]
    fn the_first_guess_spreads_over_the_members() {
        assert_eq!(LeaderTracker::new(vec![1, 2, 3], 0).target(), 1);
        assert_eq!(LeaderTracker::new(vec![1, 2, 3], 7).target(), 2);
        assert_eq!(LeaderTracker::new(vec![5], u64::MAX).target(), 5);
    }

    #[test]
    #[should_panic(expected = "needs members")]
    fn a_tracker_without_members_is_refused() {
        let _ = LeaderTracker::new(Vec::new(), 0);
    }

    #[test]
    fn a_hint_to_a_known_member_is_followed_at_once() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 0);
        assert_eq!(tracker.handle_not_leader(1, Some(3)), NextAttempt::Now);
        assert_eq!(tracker.target(), 3);
    }

    #[test]
    fn no_hint_waits_and_rotates() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 2);
        assert_eq!(tracker.handle_not_leader(3, None), NextAttempt::AfterWait);
        assert_eq!(tracker.target(), 1);
    }

    #[test]
    fn an_unknown_hint_or_one_naming_the_answering_member_waits_and_rotates() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 0);
        assert_eq!(
            tracker.handle_not_leader(1, Some(9)),
            NextAttempt::AfterWait
        );
        assert_eq!(tracker.target(), 2);
        assert_eq!(
            tracker.handle_not_leader(2, Some(2)),
            NextAttempt::AfterWait
        );
        assert_eq!(tracker.target(), 3);
    }

    #[test]
    fn silence_moves_to_the_next_member_and_wraps() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 1);
        assert_eq!(tracker.next_after_target(), 3);
        tracker.handle_failure(2);
        assert_eq!(tracker.target(), 3);
        tracker.handle_failure(3);
        assert_eq!(tracker.target(), 1);
    }

    #[test]
    fn a_failure_of_a_member_no_longer_targeted_does_not_move_the_guess() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 0);
        assert_eq!(tracker.handle_not_leader(1, Some(3)), NextAttempt::Now);
        // The late timeout of the request sent to 1 before the hint arrived.
        tracker.handle_failure(1);
        assert_eq!(tracker.target(), 3);
        // A late "not the leader" from 1 without a hint does not move it either.
        assert_eq!(tracker.handle_not_leader(1, None), NextAttempt::AfterWait);
        assert_eq!(tracker.target(), 3);
    }

    #[test]
    fn success_and_preference_follow_known_members_only() {
        let mut tracker = LeaderTracker::new(vec![1, 2, 3], 0);
        tracker.handle_success(2);
        assert_eq!(tracker.target(), 2);
        tracker.handle_success(9);
        assert_eq!(tracker.target(), 2);
        assert!(tracker.prefer(3));
        assert_eq!(tracker.target(), 3);
        assert!(!tracker.prefer(9));
        assert_eq!(tracker.target(), 3);
        assert!(tracker.contains(1));
        assert!(!tracker.contains(9));
        assert_eq!(tracker.members(), &[1, 2, 3]);
    }

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
        tracker.handle_success(1);
        assert_eq!(tracker.target(), 1);
    }
}
