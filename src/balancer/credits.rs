//! The `credits` strategy: spreads new conversations so that accounts run down together
//! relative to their resets.
//!
//! Each eligible candidate's weight is `remaining credits ÷ whole days until its reset`, raised
//! to a floor of [`CREDITS_FLOOR`] × the largest weight so that no account is starved of probes
//! (a nearly empty account still sees a conversation now and then, and its metering keeps its
//! numbers current). A candidate whose usage is not known yet gets the mean of the known weights
//! (1 when none is known). Picks follow smooth weighted round-robin over these float weights,
//! so the split is deterministic and interleaved.

use super::strategy::Candidate;

/// The floor, as a fraction of the largest weight among the eligible candidates.
pub const CREDITS_FLOOR: f64 = 0.05;

/// The weights the strategy uses for `candidates` (0 for ineligible ones).
pub fn credit_weights(candidates: &[Candidate]) -> Vec<f64> {
    let known: Vec<f64> =
        candidates.iter().filter(|c| c.eligible).filter_map(|c| c.credits).map(|w| w.max(0.0)).collect();
    let max = known.iter().copied().fold(0.0_f64, f64::max);
    let unknown =
        if known.is_empty() || max <= 0.0 { 1.0 } else { known.iter().sum::<f64>() / known.len() as f64 };
    let floor = if max > 0.0 { max * CREDITS_FLOOR } else { 1.0 };
    candidates
        .iter()
        .map(|c| match (c.eligible, c.credits) {
            (false, _) => 0.0,
            (true, Some(w)) => w.max(floor),
            (true, None) => unknown.max(floor),
        })
        .collect()
}

/// Smooth weighted round-robin over [`credit_weights`].
pub fn pick_credits(current: &mut Vec<f64>, candidates: &[Candidate]) -> Option<usize> {
    if current.len() != candidates.len() {
        *current = vec![0.0; candidates.len()];
    }
    let weights = credit_weights(candidates);
    let mut total = 0.0;
    let mut best: Option<usize> = None;
    for (i, w) in weights.iter().enumerate() {
        if !candidates[i].eligible {
            continue;
        }
        current[i] += w;
        total += w;
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let b = best?;
    current[b] -= total;
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(credits: Option<f64>) -> Candidate {
        Candidate { eligible: true, weight: 1, in_flight: 0, latency_ms: 250.0, credits }
    }

    #[test]
    fn picks_follow_remaining_over_days() {
        // 900 left over 30 days, 300 over 30 days, 100 over 5 days: 30 : 10 : 20.
        let cands = [cand(Some(30.0)), cand(Some(10.0)), cand(Some(20.0))];
        let mut current = Vec::new();
        let mut counts = [0; 3];
        for _ in 0..60 {
            counts[pick_credits(&mut current, &cands).unwrap()] += 1;
        }
        assert_eq!(counts, [30, 10, 20]);
    }

    #[test]
    fn floor_and_unknown() {
        let w = credit_weights(&[cand(Some(100.0)), cand(Some(0.0)), cand(None)]);
        assert_eq!(w, vec![100.0, 5.0, 50.0]);
        let w = credit_weights(&[cand(None), cand(None)]);
        assert_eq!(w, vec![1.0, 1.0]);
        let mut off = cand(Some(10.0));
        off.eligible = false;
        let mut current = Vec::new();
        assert_eq!(pick_credits(&mut current, &[off, cand(Some(0.0))]), Some(1));
        assert_eq!(pick_credits(&mut current, &[off]), None);
    }
}
