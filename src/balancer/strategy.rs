//! Pick strategies (design §6), as pure functions of a rule's candidates and a little per-rule state.
//!
//! The caller decides eligibility (drained, breaker, health, capacity, …) and passes each candidate
//! in rule order with what the strategy needs; a strategy only chooses among the eligible ones.

use super::spec::StrategyKind;

/// What a strategy sees of one candidate at pick time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// May this candidate be picked now?
    pub eligible: bool,
    /// Effective weight (rule override, provider override, rule weight, provider weight).
    pub weight: u32,
    /// Requests in flight.
    pub in_flight: u32,
    /// Peak-EWMA time to first byte, in ms.
    pub latency_ms: f64,
    /// Remaining credits ÷ days to reset, when the account's usage is known (`credits` strategy).
    pub credits: Option<f64>,
}

/// Per-rule strategy state.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyState {
    /// Index at which the next search for an eligible candidate starts.
    RoundRobin { next: usize },
    /// nginx's `current_weight` per candidate.
    WeightedRoundRobin { current: Vec<i64> },
    /// Stateless: fewest in flight.
    LeastConnections,
    /// Stateless: lowest latency × (in flight + 1).
    ResponseTime,
    /// Stateless: first eligible in order (the first provider, then the fallback).
    Single,
    /// Smooth weighted round-robin over credit weights (see [`super::credits`]).
    Credits { current: Vec<f64> },
}

impl StrategyState {
    /// Fresh state for `n` candidates.
    pub fn new(kind: StrategyKind, n: usize) -> Self {
        match kind {
            StrategyKind::RoundRobin => StrategyState::RoundRobin { next: 0 },
            StrategyKind::WeightedRoundRobin => StrategyState::WeightedRoundRobin { current: vec![0; n] },
            StrategyKind::LeastConnections => StrategyState::LeastConnections,
            StrategyKind::ResponseTime => StrategyState::ResponseTime,
            StrategyKind::Single => StrategyState::Single,
            StrategyKind::Credits => StrategyState::Credits { current: vec![0.0; n] },
        }
    }

    /// The kind this state belongs to.
    pub fn kind(&self) -> StrategyKind {
        match self {
            StrategyState::RoundRobin { .. } => StrategyKind::RoundRobin,
            StrategyState::WeightedRoundRobin { .. } => StrategyKind::WeightedRoundRobin,
            StrategyState::LeastConnections => StrategyKind::LeastConnections,
            StrategyState::ResponseTime => StrategyKind::ResponseTime,
            StrategyState::Single => StrategyKind::Single,
            StrategyState::Credits { .. } => StrategyKind::Credits,
        }
    }

    /// Picks one eligible candidate, returning its index, or `None` when none is eligible.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        match self {
            StrategyState::RoundRobin { next } => pick_round_robin(next, candidates),
            StrategyState::WeightedRoundRobin { current } => pick_weighted(current, candidates),
            StrategyState::LeastConnections => pick_least_connections(candidates),
            StrategyState::ResponseTime => pick_response_time(candidates),
            StrategyState::Single => candidates.iter().position(|c| c.eligible),
            StrategyState::Credits { current } => super::credits::pick_credits(current, candidates),
        }
    }
}

/// The next eligible candidate at or after `next`, wrapping; `next` moves past it.
fn pick_round_robin(next: &mut usize, candidates: &[Candidate]) -> Option<usize> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    let start = *next % n;
    let picked = (0..n).map(|i| (start + i) % n).find(|&i| candidates[i].eligible)?;
    *next = (picked + 1) % n;
    Some(picked)
}

/// Smooth weighted round-robin (nginx `ngx_http_upstream_get_peer`): every eligible candidate's
/// `current` grows by its weight, the largest is picked (first in order on ties) and drops by the
/// total. Candidates of weight 0 are never picked while a weighted one is eligible; if only
/// weight-0 candidates are eligible, the first of them is picked.
fn pick_weighted(current: &mut Vec<i64>, candidates: &[Candidate]) -> Option<usize> {
    if current.len() != candidates.len() {
        *current = vec![0; candidates.len()];
    }
    let mut total: i64 = 0;
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        if !c.eligible || c.weight == 0 {
            continue;
        }
        let w = i64::from(c.weight);
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    match best {
        Some(b) => {
            current[b] -= total;
            Some(b)
        }
        None => candidates.iter().position(|c| c.eligible),
    }
}

/// Fewest in flight; ties by higher weight, then list order.
fn pick_least_connections(candidates: &[Candidate]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, c) in candidates.iter().enumerate() {
        if !c.eligible {
            continue;
        }
        let better = match best {
            None => true,
            Some(b) => {
                let bc = &candidates[b];
                (c.in_flight, std::cmp::Reverse(c.weight)) < (bc.in_flight, std::cmp::Reverse(bc.weight))
            }
        };
        if better {
            best = Some(i);
        }
    }
    best
}

/// The cost the response-time strategy minimises: latency × (in flight + 1), tower's pending penalty.
pub fn response_time_cost(latency_ms: f64, in_flight: u32) -> f64 {
    latency_ms * (f64::from(in_flight) + 1.0)
}

/// Lowest [`response_time_cost`]; ties by list order.
fn pick_response_time(candidates: &[Candidate]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in candidates.iter().enumerate() {
        if !c.eligible {
            continue;
        }
        let cost = response_time_cost(c.latency_ms, c.in_flight);
        if best.is_none_or(|(_, b)| cost < b) {
            best = Some((i, cost));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(weight: u32) -> Candidate {
        Candidate { eligible: true, weight, in_flight: 0, latency_ms: 250.0, credits: None }
    }

    fn sequence(state: &mut StrategyState, cands: &[Candidate], n: usize) -> Vec<usize> {
        (0..n).map(|_| state.pick(cands).expect("a pick")).collect()
    }

    #[test]
    fn weighted_five_one_one_is_nginx_sequence() {
        let cands = [cand(5), cand(1), cand(1)];
        let mut s = StrategyState::new(StrategyKind::WeightedRoundRobin, 3);
        assert_eq!(sequence(&mut s, &cands, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        // The state returns to zero after one full window, so the pattern repeats.
        assert_eq!(s, StrategyState::WeightedRoundRobin { current: vec![0, 0, 0] });
        assert_eq!(sequence(&mut s, &cands, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn weighted_seventy_thirty_has_seven_and_three_in_every_window_of_ten() {
        let cands = [cand(70), cand(30)];
        let mut s = StrategyState::new(StrategyKind::WeightedRoundRobin, 2);
        let picks = sequence(&mut s, &cands, 100);
        for window in picks.windows(10) {
            assert_eq!(window.iter().filter(|&&i| i == 0).count(), 7, "{window:?}");
            assert_eq!(window.iter().filter(|&&i| i == 1).count(), 3, "{window:?}");
        }
        // Interleaved (the tie at the fifth pick goes to the first in order).
        assert_eq!(&picks[..10], &[0, 1, 0, 0, 0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn weighted_skips_ineligible_and_zero_weight() {
        let mut cands = [cand(2), cand(1), cand(0)];
        cands[0].eligible = false;
        let mut s = StrategyState::new(StrategyKind::WeightedRoundRobin, 3);
        assert_eq!(sequence(&mut s, &cands, 4), vec![1, 1, 1, 1]);
        let only_zero = [Candidate { eligible: false, ..cand(3) }, cand(0), cand(0)];
        assert_eq!(s.pick(&only_zero), Some(1));
        let none = [Candidate { eligible: false, ..cand(3) }];
        let mut s = StrategyState::new(StrategyKind::WeightedRoundRobin, 1);
        assert_eq!(s.pick(&none), None);
    }

    #[test]
    fn round_robin_in_order_and_skips_ineligible() {
        let mut cands = [cand(1), cand(1), cand(1)];
        let mut s = StrategyState::new(StrategyKind::RoundRobin, 3);
        assert_eq!(sequence(&mut s, &cands, 4), vec![0, 1, 2, 0]);
        cands[2].eligible = false;
        assert_eq!(sequence(&mut s, &cands, 4), vec![1, 0, 1, 0]);
        cands[2].eligible = true;
        assert_eq!(sequence(&mut s, &cands, 3), vec![1, 2, 0]);
        let none = [Candidate { eligible: false, ..cand(1) }];
        assert_eq!(s.pick(&none), None);
    }

    #[test]
    fn least_connections_ties_by_weight_then_order() {
        let mut cands = [cand(1), cand(5), cand(5)];
        let mut s = StrategyState::new(StrategyKind::LeastConnections, 3);
        assert_eq!(s.pick(&cands), Some(1));
        cands[1].in_flight = 1;
        assert_eq!(s.pick(&cands), Some(2));
        cands[2].in_flight = 1;
        assert_eq!(s.pick(&cands), Some(0));
        cands[0].in_flight = 2;
        assert_eq!(s.pick(&cands), Some(1));
    }

    #[test]
    fn response_time_weighs_latency_by_pending() {
        let mut cands = [cand(1), cand(1)];
        cands[0].latency_ms = 100.0;
        cands[1].latency_ms = 250.0;
        let mut s = StrategyState::new(StrategyKind::ResponseTime, 2);
        assert_eq!(s.pick(&cands), Some(0));
        cands[0].in_flight = 2; // 300 > 250
        assert_eq!(s.pick(&cands), Some(1));
        cands[0].in_flight = 1; // 200 < 250
        assert_eq!(s.pick(&cands), Some(0));
        cands[1].latency_ms = 200.0; // tie: order
        assert_eq!(s.pick(&cands), Some(0));
    }

    #[test]
    fn single_is_first_eligible() {
        let mut cands = [cand(1), cand(1)];
        let mut s = StrategyState::new(StrategyKind::Single, 2);
        assert_eq!(s.pick(&cands), Some(0));
        cands[0].eligible = false;
        assert_eq!(s.pick(&cands), Some(1));
        cands[1].eligible = false;
        assert_eq!(s.pick(&cands), None);
    }
}
