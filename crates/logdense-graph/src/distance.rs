//! Backpropagation distances (Sec. 3.2): the shortest path from `x_i` back to `x_j`.
//!
//! Two views: on a bare pattern (one block, input sets over indices), and on a built network
//! graph, where transitions are nodes of their own. Prop. 3.1 counts each transition as one
//! hop ([`TransitionHops::Counted`]); the paper also discusses "considering the transition
//! layers as part of each feature layer" ([`TransitionHops::Free`]).

use crate::error::SpecError;
use crate::net::{NetGraph, Op};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Largest `nodes x edges` product accepted for exact all-pairs BFS (about a minute of work).
pub const BFS_WORK_LIMIT: u128 = 20_000_000_000;

/// Marks a pair with no path.
pub const UNREACHABLE: u32 = u32::MAX;

/// Whether transition nodes on a path count as hops of the backpropagation distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitionHops {
    /// Every transition (and compression) node on a path is a hop, as in Prop. 3.1.
    Counted,
    /// Transitions are part of the layer they transform.
    Free,
}

/// Distances from layer `i` to every layer `j < i`, on input sets over indices (one block).
pub fn distances_from(sets: &[Vec<usize>], i: usize) -> Vec<u32> {
    let mut dist = vec![UNREACHABLE; i + 1];
    dist[i] = 0;
    let mut queue = VecDeque::from([i]);
    while let Some(k) = queue.pop_front() {
        for &j in &sets[k] {
            if dist[j] == UNREACHABLE {
                dist[j] = dist[k] + 1;
                queue.push_back(j);
            }
        }
    }
    dist
}

/// Summary of all pairwise distances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistanceSummary {
    /// Maximum backpropagation distance over reachable pairs `i > j`.
    pub mbd: u32,
    /// Pairs `i > j` with no path from `x_i` to `x_j`.
    pub unreachable_pairs: u64,
    /// Sum of distances over reachable pairs (for the mean).
    pub total_distance: u64,
    /// Number of reachable pairs `i > j`.
    pub pairs: u64,
}

impl DistanceSummary {
    /// Mean distance over reachable pairs (0 when there are none).
    pub fn mean(&self) -> f64 {
        if self.pairs == 0 {
            0.0
        } else {
            self.total_distance as f64 / self.pairs as f64
        }
    }

    fn add_row(&mut self, row: &[u32], upto: usize) {
        for &d in &row[..upto] {
            if d == UNREACHABLE {
                self.unreachable_pairs += 1;
            } else {
                self.mbd = self.mbd.max(d);
                self.total_distance += d as u64;
                self.pairs += 1;
            }
        }
    }
}

fn check_work(nodes: usize, edges: usize) -> Result<(), SpecError> {
    let work = (nodes as u128).saturating_mul(edges.max(1) as u128);
    if work > BFS_WORK_LIMIT {
        return Err(SpecError::Invalid {
            field: "layers",
            message: format!(
                "exact all-pairs BFS over {nodes} nodes and {edges} connections is {work} steps, above the limit of {BFS_WORK_LIMIT}; use fewer layers"
            ),
        });
    }
    Ok(())
}

/// Refuses a pattern size whose exact all-pairs BFS (or whose input sets alone) would exceed
/// the work limit, before anything is built.
pub fn check_pattern_size(
    pattern: crate::pattern::Pattern,
    num_layers: usize,
) -> Result<(), SpecError> {
    let edges = pattern.connection_bound(num_layers);
    check_work(num_layers + 1, usize::try_from(edges).unwrap_or(usize::MAX))
}

/// All-pairs summary for a pattern's input sets (one block, no transitions).
pub fn summarize_sets(sets: &[Vec<usize>]) -> Result<DistanceSummary, SpecError> {
    check_work(sets.len(), crate::pattern::connection_count(sets))?;
    let mut s = DistanceSummary {
        mbd: 0,
        unreachable_pairs: 0,
        total_distance: 0,
        pairs: 0,
    };
    for i in 1..sets.len() {
        s.add_row(&distances_from(sets, i), i);
    }
    Ok(s)
}

/// Distances over a network graph: `matrix()[i][j]` for layers `i > j`.
pub struct GraphDistances<'a> {
    graph: &'a NetGraph,
    hops: TransitionHops,
}

impl<'a> GraphDistances<'a> {
    /// Distances over `graph`, with transitions counted as `hops` says.
    pub fn new(graph: &'a NetGraph, hops: TransitionHops) -> Self {
        GraphDistances { graph, hops }
    }

    /// Cost of stepping onto node `id`: transitions are free in [`TransitionHops::Free`].
    fn step_cost(&self, id: usize) -> u32 {
        match (self.hops, self.graph.nodes[id].op) {
            (TransitionHops::Free, Op::Down { .. } | Op::Up { .. }) => 0,
            _ => 1,
        }
    }

    /// Distances (0-1 BFS) from layer `i` to all layers `0..=L`.
    pub fn from_layer(&self, i: usize) -> Vec<u32> {
        let g = self.graph;
        let mut dist = vec![UNREACHABLE; g.nodes.len()];
        let start = g.layer_nodes[i];
        dist[start] = 0;
        let mut deque = VecDeque::from([start]);
        while let Some(k) = deque.pop_front() {
            let dk = dist[k];
            // Stop at other layers' first versions only by distance, not by structure: paths
            // may run through intermediate layers.
            for &j in &g.nodes[k].inputs {
                let w = self.step_cost(j);
                if dk + w < dist[j] {
                    dist[j] = dk + w;
                    if w == 0 {
                        deque.push_front(j);
                    } else {
                        deque.push_back(j);
                    }
                }
            }
        }
        g.layer_nodes.iter().map(|&id| dist[id]).collect()
    }

    /// All-pairs summary over the feature layers `x_0..x_L`.
    pub fn summary(&self) -> Result<DistanceSummary, SpecError> {
        let g = self.graph;
        let edges: usize = g.nodes.iter().map(|n| n.inputs.len()).sum();
        check_work(g.nodes.len(), edges)?;
        let mut s = DistanceSummary {
            mbd: 0,
            unreachable_pairs: 0,
            total_distance: 0,
            pairs: 0,
        };
        for i in 1..g.layer_nodes.len() {
            s.add_row(&self.from_layer(i), i);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Pattern;

    #[test]
    fn log_distance_is_the_popcount_of_the_gap() {
        let sets = Pattern::Log.input_sets(100);
        for i in 1..=100 {
            let d = distances_from(&sets, i);
            for (j, &dj) in d.iter().enumerate().take(i) {
                assert_eq!(dj, (i - j).count_ones(), "BD({i},{j})");
            }
        }
    }

    #[test]
    fn dense_is_one_hop_everywhere() {
        let s = summarize_sets(&Pattern::Dense.input_sets(50)).unwrap();
        assert_eq!((s.mbd, s.unreachable_pairs), (1, 0));
    }

    #[test]
    fn too_large_is_an_error_naming_layers() {
        let sets: Vec<Vec<usize>> = (0..300_000)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let e = summarize_sets(&sets).unwrap_err();
        assert_eq!(e.field(), "layers");
    }
}
