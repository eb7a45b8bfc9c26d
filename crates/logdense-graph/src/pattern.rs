//! Connection patterns: which earlier layers each feature layer reads.
//!
//! Every pattern of SPEC.md is defined here and only here. A pattern maps a depth `L`
//! to the input sets of layers `0..=L` over **global** indices (layer 0 is the initial
//! convolution and has no inputs). Networks (see [`crate::net`]) decide how blocks,
//! transitions and compressed features change these sets; the sets themselves live here.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A skip-connection template (Sec. 3.3, 4.1 and Appendix A of the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// DenseNet: every earlier layer.
    Dense,
    /// Log-DenseNet: `i - 2^k` for `k = 0..=floor(log2 i)`.
    Log,
    /// The `1 + floor(log2 i)` nearest layers (the LOG budget, Table 1 "N").
    Nearest,
    /// `1 + floor(log2 i)` layers spread evenly over `0..i`, always including `i - 1`
    /// (the LOG budget, Table 1 "E").
    EvenlySpaced,
    /// The nearest `ceil(i / 2)` layers (Table 2 "N").
    NearestHalf,
    /// Every other earlier layer, `i - 1, i - 3, ...`: `ceil(i / 2)` layers evenly spaced with
    /// step 2 (the paper's EVENLY-SPACED formula with `delta = 2`; Table 2 "E", MBD 2).
    EvenlySpacedHalf,
    /// NEAREST-HALF plus `floor(i / 2^k)` for `k >= 2` (Table 2 "N+LD", Fig. 1d).
    NearestHalfAndLog,
    /// NEAREST-HALF-AND-LOG as the authors' code builds it (`dense_select_method` 8 of
    /// `AnytimeLogDenseNetV1`, `anytime_models/models/anytime_network.py`): the nearest
    /// `ceil(i / 2)` layers, whose oldest is `p_0 = floor(i / 2)`, plus the chain
    /// `p_{k+1} = floor((p_k - 1) / 2)` down to and including layer 0. Same count of extra
    /// inputs as the text's `floor(i / 2^k)` (MBD 2 as well), but it always reads the wide
    /// `x_0`. With bottleneck layers this is the reading that reproduces Table 2's N+LD
    /// GFLOPS within 1 % (tests/paper_readings.rs).
    NearestHalfAndLogAuthors,
    /// Appendix A's `lglg_conn(0, L)`; `min_inputs` adds LOG inputs nearest-first until a
    /// layer has that many (the paper uses 4; 0 or 1 means no augmentation).
    LogLog {
        /// Inputs a layer is topped up to with LOG inputs, nearest first (0 or 1: none added).
        min_inputs: usize,
    },
}

impl Pattern {
    /// Every pattern with its default options, for listings and exhaustive tests.
    pub const ALL: [Pattern; 9] = [
        Pattern::Dense,
        Pattern::Log,
        Pattern::Nearest,
        Pattern::EvenlySpaced,
        Pattern::NearestHalf,
        Pattern::EvenlySpacedHalf,
        Pattern::NearestHalfAndLog,
        Pattern::LogLog { min_inputs: 4 },
        Pattern::NearestHalfAndLogAuthors,
    ];

    /// The command-line names accepted by [`FromStr`].
    pub const NAMES: &'static str =
        "dense, log, nearest, evenly-spaced, nearest-half, evenly-spaced-half, nearest-half-and-log, nearest-half-and-log-authors, loglog, loglog-plain";

    /// Input sets of layers `0..=num_layers`, each sorted ascending and without repeats.
    pub fn input_sets(&self, num_layers: usize) -> Vec<Vec<usize>> {
        match *self {
            Pattern::LogLog { min_inputs } => loglog_input_sets(num_layers, min_inputs),
            _ => (0..=num_layers).map(|i| self.inputs_of(i)).collect(),
        }
    }

    /// Input set of one layer for the patterns that do not depend on the depth.
    /// LOGLOG depends on `L`; use [`Pattern::input_sets`] for it.
    fn inputs_of(&self, i: usize) -> Vec<usize> {
        if i == 0 {
            return Vec::new();
        }
        let log_budget = 1 + floor_log2(i);
        let half = i.div_ceil(2);
        let mut set: Vec<usize> = match *self {
            Pattern::Dense => (0..i).collect(),
            Pattern::Log => log_inputs(i),
            Pattern::Nearest => nearest(i, log_budget),
            Pattern::EvenlySpaced => evenly_spaced(i, log_budget),
            Pattern::NearestHalf => nearest(i, half),
            // Not `evenly_spaced(i, half)`: forcing both `i - 1` and 0 into `ceil(i/2)` points
            // leaves a gap of 3 somewhere for even `i`, which makes the MBD 3 instead of 2.
            Pattern::EvenlySpacedHalf => (0..half).map(|k| i - 1 - 2 * k).collect(),
            Pattern::NearestHalfAndLog => {
                let mut s = nearest(i, half);
                let mut k = 2;
                while (1usize << k) <= i {
                    s.push(i >> k);
                    k += 1;
                }
                s
            }
            Pattern::NearestHalfAndLogAuthors => {
                let mut s = nearest(i, half);
                let mut pos = i - half;
                while pos > 0 {
                    pos = (pos - 1) / 2;
                    s.push(pos);
                }
                s
            }
            Pattern::LogLog { .. } => unreachable!("LOGLOG input sets depend on L"),
        };
        set.sort_unstable();
        set.dedup();
        set
    }

    /// An upper bound on the connections of `input_sets(num_layers)`, computed without
    /// building them, so that callers can refuse sizes that would not fit in memory.
    pub fn connection_bound(&self, num_layers: usize) -> u128 {
        let l = num_layers as u128;
        let log = 1 + floor_log2(num_layers.max(1)) as u128;
        match self {
            Pattern::Dense => l * (l + 1) / 2,
            Pattern::NearestHalf | Pattern::EvenlySpacedHalf => l * (l + 3) / 4 + l,
            Pattern::NearestHalfAndLog | Pattern::NearestHalfAndLogAuthors => {
                l * (l + 3) / 4 + l * (log + 1)
            }
            Pattern::Log | Pattern::Nearest | Pattern::EvenlySpaced => l * log,
            Pattern::LogLog { min_inputs } => l * (2 * log + *min_inputs as u128 + 4),
        }
    }

    /// The hub layers of LOGLOG (the key locations of the depth-zero call `lglg_conn(0, L)`),
    /// which Appendix C.4 widens by the hub multiplier. Empty for other patterns.
    pub fn hub_layers(&self, num_layers: usize) -> Vec<usize> {
        match self {
            Pattern::LogLog { .. } if num_layers >= 2 => key_locations(0, num_layers),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Pattern::Dense => "dense",
            Pattern::Log => "log",
            Pattern::Nearest => "nearest",
            Pattern::EvenlySpaced => "evenly-spaced",
            Pattern::NearestHalf => "nearest-half",
            Pattern::EvenlySpacedHalf => "evenly-spaced-half",
            Pattern::NearestHalfAndLog => "nearest-half-and-log",
            Pattern::NearestHalfAndLogAuthors => "nearest-half-and-log-authors",
            Pattern::LogLog { min_inputs } if *min_inputs <= 1 => "loglog-plain",
            Pattern::LogLog { .. } => "loglog",
        };
        f.write_str(name)
    }
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "dense" | "densenet" | "d" => Pattern::Dense,
            "log" | "log-densenet" | "ld" => Pattern::Log,
            "nearest" | "n" => Pattern::Nearest,
            "evenly-spaced" | "evenly" | "e" => Pattern::EvenlySpaced,
            "nearest-half" => Pattern::NearestHalf,
            "evenly-spaced-half" | "evenly-half" => Pattern::EvenlySpacedHalf,
            "nearest-half-and-log" | "n+ld" => Pattern::NearestHalfAndLog,
            "nearest-half-and-log-authors" | "n+ld-authors" => Pattern::NearestHalfAndLogAuthors,
            "loglog" => Pattern::LogLog { min_inputs: 4 },
            "loglog-plain" => Pattern::LogLog { min_inputs: 1 },
            other => {
                return Err(format!(
                    "unknown connection pattern '{other}' (expected one of: {})",
                    Pattern::NAMES
                ))
            }
        })
    }
}

/// `floor(log2 x)` for `x >= 1`.
pub fn floor_log2(x: usize) -> usize {
    debug_assert!(x >= 1);
    (usize::BITS - 1 - x.leading_zeros()) as usize
}

/// LOG inputs of layer `i`, nearest first: `i - 1, i - 2, i - 4, ...`.
fn log_inputs(i: usize) -> Vec<usize> {
    (0..=floor_log2(i)).map(|k| i - (1 << k)).collect()
}

/// The `count` nearest earlier layers, clipped at layer 0.
fn nearest(i: usize, count: usize) -> Vec<usize> {
    (i.saturating_sub(count)..i).collect()
}

/// `count` layers spread evenly over `0..=i-1`, from `i - 1` down to 0 (rounded to the
/// nearest index); all of them when `count >= i`.
fn evenly_spaced(i: usize, count: usize) -> Vec<usize> {
    if count >= i {
        return (0..i).collect();
    }
    if count == 1 {
        return vec![i - 1];
    }
    let step = (i - 1) as f64 / (count - 1) as f64;
    (0..count)
        .map(|k| ((i - 1) as f64 - k as f64 * step).round() as usize)
        .collect()
}

/// Key locations `K = {s} ∪ {t - kδ ≥ s}` of `lglg_conn(s, t)`, with `δ = floor(sqrt(t - s + 1))`,
/// sorted ascending.
fn key_locations(s: usize, t: usize) -> Vec<usize> {
    let delta = integer_sqrt(t - s + 1);
    let mut keys: Vec<usize> = (0..)
        .map(|k| t as isize - (k * delta) as isize)
        .take_while(|&x| x >= s as isize)
        .map(|x| x as usize)
        .collect();
    keys.push(s);
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn integer_sqrt(n: usize) -> usize {
    let mut r = (n as f64).sqrt() as usize;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

/// Appendix A: every layer reads its predecessor, then `lglg_conn(0, L)` adds the recursive
/// connections; finally LOG inputs are added nearest-first up to `min_inputs`.
fn loglog_input_sets(num_layers: usize, min_inputs: usize) -> Vec<Vec<usize>> {
    let mut sets: Vec<Vec<usize>> = (0..=num_layers)
        .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
        .collect();
    // An explicit stack instead of recursion: the tree is shallow, but this keeps it simple.
    let mut calls = vec![(0usize, num_layers)];
    while let Some((s, t)) = calls.pop() {
        if t <= s + 1 {
            continue;
        }
        let keys = key_locations(s, t);
        // (a) dense connections among the key locations.
        for (a, &hi) in keys.iter().enumerate() {
            for &lo in &keys[..a] {
                sets[hi].push(lo);
            }
        }
        // (b) each key location feeds the layers up to the next key location.
        for w in keys.windows(2) {
            for set in &mut sets[w[0] + 1..=w[1]] {
                set.push(w[0]);
            }
        }
        // (c) recurse into the segments between consecutive key locations.
        for w in keys.windows(2) {
            calls.push((w[0], w[1]));
        }
    }
    for (i, set) in sets.iter_mut().enumerate() {
        set.sort_unstable();
        set.dedup();
        if i > 0 {
            for candidate in log_inputs(i) {
                if set.len() >= min_inputs {
                    break;
                }
                if let Err(pos) = set.binary_search(&candidate) {
                    set.insert(pos, candidate);
                }
            }
        }
    }
    sets
}

/// Total number of connections (edges) of a set of input lists.
pub fn connection_count(sets: &[Vec<usize>]) -> usize {
    sets.iter().map(Vec::len).sum()
}

/// Mean number of inputs over layers `1..=L`.
pub fn mean_inputs(sets: &[Vec<usize>]) -> f64 {
    if sets.len() <= 1 {
        return 0.0;
    }
    connection_count(sets) as f64 / (sets.len() - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Pattern::ALL {
            assert_eq!(p.to_string().parse::<Pattern>().unwrap(), p);
        }
        assert!("bogus".parse::<Pattern>().unwrap_err().contains("bogus"));
    }

    #[test]
    fn key_locations_match_the_definition() {
        // lglg_conn(0, 24): delta = floor(sqrt 25) = 5, K = {0} ∪ {24, 19, 14, 9, 4}.
        assert_eq!(key_locations(0, 24), vec![0, 4, 9, 14, 19, 24]);
        // lglg_conn(4, 9): delta = floor(sqrt 6) = 2, K = {4} ∪ {9, 7, 5}.
        assert_eq!(key_locations(4, 9), vec![4, 5, 7, 9]);
    }

    #[test]
    fn evenly_spaced_includes_the_predecessor_and_layer_zero() {
        assert_eq!(evenly_spaced(10, 4), vec![9, 6, 3, 0]);
        assert_eq!(evenly_spaced(3, 5), vec![0, 1, 2]);
    }
}
