//! Designing connection patterns: given at most `K` inputs per layer, place them to minimise
//! the MBD (the paper's principle, turned into a search).
//!
//! Each layer gets a number of inputs from an [`InputBudget`]: by default all `min(K, i)` it
//! may have (an extra input never lengthens a path); at LOG's budget, LOG's own count per
//! layer (so the design has exactly LOG's connections); or a total connection budget. `i - 1`
//! is always one of a layer's inputs (no path from `x_i` can reach `x_{i-1}` otherwise).
//! Distances from layer `i` depend only on the input sets of layers `<= i`, so layers are
//! chosen in order:
//! - **greedy** (any `L`): each layer picks its inputs one at a time, each time the candidate
//!   that most lowers (max distance, total distance) from that layer; LOG truncated to `K`
//!   nearest-first is also scored and the better of the two kept;
//! - **exact** (small `L`): depth-first search over all input sets with the greedy result as
//!   the bound, pruning a partial assignment as soon as one layer's distances exceed the
//!   target; a counting lower bound (`1 + K + ... + K^D >= L + 1`) can prove the greedy optimal
//!   without search. A node budget keeps it bounded; when it runs out the result says so.

use crate::error::SpecError;
use crate::pattern::{connection_count, Pattern};
use serde::{Deserialize, Serialize};

/// Largest depth the greedy search accepts (its work grows as `K L^3`).
pub const MAX_DESIGN_LAYERS: usize = 1024;
/// Search nodes the exact search may visit before it gives up.
pub const EXACT_NODE_BUDGET: u64 = 20_000_000;

/// A designed pattern and how it was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Design {
    /// Number of feature layers `L` the pattern connects.
    pub layers: usize,
    /// Most inputs any layer may read (`K`).
    pub max_inputs: usize,
    /// `sets[i]`: the indices layer `i` reads, for `i` in `0..=L` (`sets[0]` is empty).
    pub sets: Vec<Vec<usize>>,
    /// Maximum backpropagation distance of `sets`.
    pub mbd: u32,
    /// Total number of inputs over all layers.
    pub connections: usize,
    /// Where the best set came from: "greedy", "log-truncated" or "exact search".
    pub method: String,
    /// Whether `mbd` is proven minimal (by the lower bound or by the exact search).
    pub proven_optimal: bool,
    /// The counting lower bound on the MBD.
    pub lower_bound: u32,
    /// Input sets the exact search tried (0 when it did not run).
    pub search_nodes: u64,
    /// How many inputs each layer was given: `full`, `log` or `connections <= C`.
    #[serde(default)]
    pub budget: String,
}

/// How many inputs each layer of a design gets (at most `K` each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputBudget {
    /// Every layer all `min(K, i)` inputs it may have.
    Full,
    /// LOG's count per layer, `1 + floor(log2 i)`, capped at `K`: with `K` at least LOG's
    /// largest count, exactly LOG's connections.
    Log,
    /// At most this many connections in all: layers start from `min(K, i)` and the ones
    /// furthest above LOG's count give up an input first (the latest first among equals).
    Connections(usize),
}

impl InputBudget {
    /// Its name in a design's `budget` field.
    pub fn name(self) -> String {
        match self {
            InputBudget::Full => "full".into(),
            InputBudget::Log => "log".into(),
            InputBudget::Connections(c) => format!("connections <= {c}"),
        }
    }
}

/// The inputs of each layer `0..=L` under a budget (`counts[0] = 0`, every other at least 1).
pub fn input_counts(
    layers: usize,
    max_inputs: usize,
    budget: InputBudget,
) -> Result<Vec<usize>, SpecError> {
    let log_count = |i: usize| 1 + crate::pattern::floor_log2(i);
    let mut counts: Vec<usize> = (0..=layers)
        .map(|i| match (i, budget) {
            (0, _) => 0,
            (_, InputBudget::Log) => max_inputs.min(log_count(i)).min(i),
            _ => max_inputs.min(i),
        })
        .collect();
    if let InputBudget::Connections(limit) = budget {
        if limit < layers {
            return Err(SpecError::Invalid {
                field: "max-connections",
                message: format!(
                    "{layers} layers need at least {layers} connections (each reads the one before it), got {limit}"
                ),
            });
        }
        let mut total: usize = counts.iter().sum();
        while total > limit {
            let i = (1..=layers)
                .filter(|&i| counts[i] > 1)
                .max_by_key(|&i| (counts[i] as isize - log_count(i) as isize, i))
                .expect("a layer with more than one input while above the limit");
            counts[i] -= 1;
            total -= 1;
        }
    }
    Ok(counts)
}

type Rows = Vec<Vec<u8>>;

/// Distance row of a layer whose inputs are `inputs`, given the rows of earlier layers.
fn row_for(rows: &Rows, inputs: &[usize], i: usize) -> Vec<u8> {
    let mut row = vec![u8::MAX; i];
    for &k in inputs {
        row[k] = 1;
        for (j, &d) in rows[k].iter().enumerate() {
            let via = d.saturating_add(1);
            if via < row[j] {
                row[j] = via;
            }
        }
    }
    row
}

fn score(row: &[u8]) -> (u8, u64) {
    (
        row.iter().copied().max().unwrap_or(0),
        row.iter().map(|&d| d as u64).sum(),
    )
}

fn mbd_of(rows: &Rows) -> u32 {
    rows.iter()
        .flat_map(|r| r.iter().copied())
        .max()
        .unwrap_or(0) as u32
}

/// Greedy input sets: see the module documentation.
fn greedy(layers: usize, counts: &[usize]) -> (Vec<Vec<usize>>, Rows) {
    let mut sets = vec![vec![]];
    let mut rows: Rows = vec![vec![]];
    for (i, &count) in counts.iter().enumerate().take(layers + 1).skip(1) {
        let mut chosen = vec![i - 1];
        let mut row = row_for(&rows, &chosen, i);
        while chosen.len() < count {
            let mut best: Option<((u8, u64), usize, Vec<u8>)> = None;
            for cand in 0..i - 1 {
                if chosen.contains(&cand) {
                    continue;
                }
                let mut r = row.clone();
                r[cand] = 1;
                for (j, &d) in rows[cand].iter().enumerate() {
                    r[j] = r[j].min(d.saturating_add(1));
                }
                let s = score(&r);
                if best.as_ref().is_none_or(|b| s < b.0) {
                    best = Some((s, cand, r));
                }
            }
            let (_, cand, r) = best.expect("a candidate exists while chosen < i");
            chosen.push(cand);
            row = r;
        }
        chosen.sort_unstable();
        sets.push(chosen);
        rows.push(row);
    }
    (sets, rows)
}

fn rows_of(sets: &[Vec<usize>]) -> Rows {
    let mut rows: Rows = Vec::with_capacity(sets.len());
    for (i, s) in sets.iter().enumerate() {
        let r = row_for(&rows, s, i);
        rows.push(r);
    }
    rows
}

/// LOG with each layer keeping its `k` nearest LOG inputs.
pub fn log_truncated(layers: usize, k: usize) -> Vec<Vec<usize>> {
    log_within(layers, &vec![k; layers + 1])
}

/// LOG with each layer `i` keeping its `counts[i]` nearest LOG inputs.
fn log_within(layers: usize, counts: &[usize]) -> Vec<Vec<usize>> {
    Pattern::Log
        .input_sets(layers)
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let keep = s.len().min(counts[i]);
            s[s.len() - keep..].to_vec()
        })
        .collect()
}

/// Smallest `D` with `1 + K + ... + K^D >= L + 1`: within `D` hops a layer reaches at most
/// that many layers, and layer `L` must reach all of `0..L`.
fn counting_lower_bound(layers: usize, k: usize) -> u32 {
    let (mut reach, mut power, mut d) = (1u128, 1u128, 0u32);
    while reach < (layers + 1) as u128 {
        power = power.saturating_mul(k as u128);
        reach = reach.saturating_add(power);
        d += 1;
    }
    d
}

struct Exact {
    layers: usize,
    counts: Vec<usize>,
    target: u8,
    nodes: u64,
    sets: Vec<Vec<usize>>,
    rows: Rows,
}

impl Exact {
    /// Whether layers `i..=L` can be assigned with every distance at most `target`.
    fn extend(&mut self, i: usize) -> Option<bool> {
        if i > self.layers {
            return Some(true);
        }
        let want = self.counts[i];
        let mut combo: Vec<usize> = (0..want - 1).collect();
        let pool = i - 1; // candidates 0..i-1 besides i - 1
        loop {
            self.nodes += 1;
            if self.nodes > EXACT_NODE_BUDGET {
                return None;
            }
            let mut inputs = combo.clone();
            inputs.push(i - 1);
            let row = row_for(&self.rows, &inputs, i);
            if row.iter().all(|&d| d <= self.target) {
                self.sets.push(inputs);
                self.rows.push(row);
                if self.extend(i + 1)? {
                    return Some(true);
                }
                self.sets.pop();
                self.rows.pop();
            }
            // Next combination of want-1 elements out of 0..pool.
            let r = combo.len();
            let mut idx = r;
            while idx > 0 && combo[idx - 1] == pool - r + idx - 1 {
                idx -= 1;
            }
            if idx == 0 {
                return Some(false);
            }
            combo[idx - 1] += 1;
            for t in idx..r {
                combo[t] = combo[t - 1] + 1;
            }
        }
    }
}

/// Searches for input sets with at most `max_inputs` inputs per layer minimising the MBD,
/// every layer using all it may have ([`InputBudget::Full`]).
pub fn design(layers: usize, max_inputs: usize, exact_up_to: usize) -> Result<Design, SpecError> {
    design_with(layers, max_inputs, InputBudget::Full, exact_up_to)
}

/// Searches for input sets minimising the MBD with each layer's inputs from `budget`, at most
/// `max_inputs` each; exact search up to `exact_up_to` layers, greedy beyond.
pub fn design_with(
    layers: usize,
    max_inputs: usize,
    budget: InputBudget,
    exact_up_to: usize,
) -> Result<Design, SpecError> {
    if layers == 0 || layers > MAX_DESIGN_LAYERS {
        return Err(SpecError::Invalid {
            field: "layers",
            message: format!("must lie in 1..={MAX_DESIGN_LAYERS}, got {layers}"),
        });
    }
    if max_inputs == 0 {
        return Err(SpecError::Invalid {
            field: "max-inputs",
            message: "must be at least 1".into(),
        });
    }
    let counts = input_counts(layers, max_inputs, budget)?;
    let (greedy_sets, greedy_rows) = greedy(layers, &counts);
    let truncated = log_within(layers, &counts);
    let truncated_rows = rows_of(&truncated);
    let (mut sets, mut mbd, mut method) = (greedy_sets, mbd_of(&greedy_rows), "greedy");
    let truncated_mbd = mbd_of(&truncated_rows);
    if truncated_mbd < mbd
        || (truncated_mbd == mbd && connection_count(&truncated) < connection_count(&sets))
    {
        (sets, mbd, method) = (truncated, truncated_mbd, "log-truncated");
    }
    let widest = counts.iter().copied().max().unwrap_or(1);
    let lower_bound = counting_lower_bound(layers, widest);
    let mut proven_optimal = mbd == lower_bound;
    let mut search_nodes = 0;
    if !proven_optimal && layers <= exact_up_to {
        // Try to beat the best found, one target at a time from the lower bound up.
        let mut exhausted = true;
        let best_found = mbd;
        for target in lower_bound..best_found {
            let mut ex = Exact {
                layers,
                counts: counts.clone(),
                target: target as u8,
                nodes: 0,
                sets: vec![vec![]],
                rows: vec![vec![]],
            };
            let found = ex.extend(1);
            search_nodes += ex.nodes;
            match found {
                Some(true) => {
                    (sets, mbd, method) = (ex.sets, target, "exact search");
                    break;
                }
                Some(false) => {}
                None => {
                    exhausted = false;
                    break;
                }
            }
        }
        proven_optimal = exhausted;
    }
    let connections = connection_count(&sets);
    Ok(Design {
        layers,
        max_inputs,
        sets,
        mbd,
        connections,
        method: method.into(),
        proven_optimal,
        lower_bound,
        search_nodes,
        budget: budget.name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::summarize_sets;

    #[test]
    fn reported_mbd_matches_bfs_and_budget_is_respected() {
        for (l, k) in [(10, 2), (24, 3), (40, 4), (64, 7)] {
            let d = design(l, k, 12).unwrap();
            assert!(d.sets.iter().all(|s| s.len() <= k));
            assert_eq!(summarize_sets(&d.sets).unwrap().mbd, d.mbd, "L={l} K={k}");
            assert!(d.mbd >= d.lower_bound);
        }
    }

    #[test]
    fn never_worse_than_log_at_its_own_budget() {
        for l in [16, 31, 64, 100] {
            let k = 1 + crate::pattern::floor_log2(l);
            let log_mbd = summarize_sets(&Pattern::Log.input_sets(l)).unwrap().mbd;
            assert!(design(l, k, 0).unwrap().mbd <= log_mbd);
        }
    }

    #[test]
    fn at_logs_budget_a_design_has_logs_connections_and_no_larger_mbd() {
        for l in [12, 24, 48, 72] {
            let log = Pattern::Log.input_sets(l);
            let log_mbd = summarize_sets(&log).unwrap().mbd;
            let k = 1 + crate::pattern::floor_log2(l);
            let d = design_with(l, k, InputBudget::Log, 12).unwrap();
            assert_eq!(d.connections, connection_count(&log), "L={l}");
            assert!(d.mbd <= log_mbd, "L={l}: {} > {log_mbd}", d.mbd);
            for (i, s) in d.sets.iter().enumerate() {
                assert_eq!(s.len(), log[i].len(), "L={l}, layer {i}");
            }
            assert_eq!(summarize_sets(&d.sets).unwrap().mbd, d.mbd);
            assert_eq!(d.budget, "log");
        }
    }

    #[test]
    fn a_connection_budget_is_met_and_trims_above_logs_count_first() {
        let d = design_with(24, 5, InputBudget::Connections(94), 0).unwrap();
        assert!(d.connections <= 94 && d.sets.iter().all(|s| s.len() <= 5));
        assert_eq!(summarize_sets(&d.sets).unwrap().mbd, d.mbd);
        let counts = input_counts(24, 5, InputBudget::Connections(94)).unwrap();
        let log: Vec<usize> = Pattern::Log.input_sets(24).iter().map(Vec::len).collect();
        assert_eq!(
            counts, log,
            "LOG's counts are where trimming to LOG's total ends"
        );
        assert_eq!(
            input_counts(24, 5, InputBudget::Connections(23))
                .unwrap_err()
                .field(),
            "max-connections"
        );
        assert_eq!(
            input_counts(24, 5, InputBudget::Connections(24)).unwrap()[1..],
            [1; 24]
        );
    }

    #[test]
    fn exact_search_proves_small_optima() {
        // One input per layer is a chain: MBD = L.
        let d = design(6, 1, 10).unwrap();
        assert_eq!((d.mbd, d.proven_optimal), (6, true));
        // With 2 inputs and L = 6, exact search must settle the question either way.
        let d = design(6, 2, 10).unwrap();
        assert!(d.proven_optimal);
        // Brute force over all 2-input assignments agrees.
        assert_eq!(d.mbd, brute_force_mbd(6, 2));
    }

    fn brute_force_mbd(l: usize, k: usize) -> u32 {
        fn rec(i: usize, l: usize, k: usize, sets: &mut Vec<Vec<usize>>, best: &mut u32) {
            if i > l {
                // The MBD is only defined when every layer reaches every earlier one
                // (`summarize_sets` leaves unreachable pairs out of its maximum).
                let s = summarize_sets(sets).unwrap();
                if s.unreachable_pairs == 0 {
                    *best = (*best).min(s.mbd);
                }
                return;
            }
            let all: Vec<usize> = (0..i).collect();
            let want = k.min(i);
            for mask in 0u32..(1 << i) {
                if mask.count_ones() as usize != want {
                    continue;
                }
                sets.push(
                    all.iter()
                        .copied()
                        .filter(|&j| mask & (1 << j) != 0)
                        .collect(),
                );
                rec(i + 1, l, k, sets, best);
                sets.pop();
            }
        }
        let mut best = u32::MAX;
        rec(1, l, k, &mut vec![vec![]], &mut best);
        best
    }
}
