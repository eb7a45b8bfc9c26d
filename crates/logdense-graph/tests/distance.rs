//! Backpropagation distances: Prop. 3.1 on built V1 networks, and MBDs against closed forms
//! and brute force written here, independently of `distance.rs`.

#![allow(clippy::needless_range_loop)]

use logdense_graph::distance::{distances_from, summarize_sets, UNREACHABLE};
use logdense_graph::{GraphDistances, NetSpec, Pattern, TransitionHops};
use std::collections::VecDeque;

fn floor_log2(x: usize) -> u32 {
    assert!(x >= 1);
    usize::BITS - 1 - x.leading_zeros()
}

/// The block of layer `i` in a V1 network of blocks of `n` layers (x_0 belongs to block 0).
fn block_of(i: usize, n: usize) -> usize {
    if i == 0 {
        0
    } else {
        (i - 1) / n
    }
}

/// Plain BFS from `i` over input sets, written independently of the crate.
fn bfs(sets: &[Vec<usize>], i: usize) -> Vec<u32> {
    let mut d = vec![u32::MAX; sets.len()];
    d[i] = 0;
    let mut q = VecDeque::new();
    q.push_back(i);
    while let Some(k) = q.pop_front() {
        for &j in &sets[k] {
            if d[j] == u32::MAX {
                d[j] = d[k] + 1;
                q.push_back(j);
            }
        }
    }
    d
}

/// Own constructions of the nearest-k patterns (not the crate's).
fn own_nearest_sets(l: usize, count: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    (0..=l)
        .map(|i| {
            if i == 0 {
                vec![]
            } else {
                (i.saturating_sub(count(i))..i).collect()
            }
        })
        .collect()
}

fn log_budget(i: usize) -> usize {
    1 + floor_log2(i) as usize
}

/// NEAREST(-HALF) layers reach an interval [r, i-1] within t hops, with r_{t+1} = r_t - k(r_t)
/// (m - k(m) is nondecreasing in m for both budgets, so the farthest jump from the lowest layer
/// reached is the farthest jump of the interval). The distance to j is the first t with r_t <= j.
fn greedy_distance(i: usize, j: usize, count: &impl Fn(usize) -> usize) -> u32 {
    let (mut r, mut t) = (i, 0);
    while r > j {
        r = r.saturating_sub(count(r));
        t += 1;
    }
    t
}

#[test]
fn prop_3_1_on_v1_log_networks() {
    // L = n * nblock <= 512, with 1..4 blocks.
    let shapes: &[(usize, usize)] = &[
        (8, 1),
        (4, 2),
        (2, 4),
        (24, 1),
        (12, 2),
        (8, 3),
        (6, 4),
        (96, 1),
        (48, 2),
        (32, 3),
        (24, 4),
        (255, 1),
        (85, 3),
        (256, 1),
        (128, 2),
        (64, 4),
        (512, 1),
        (256, 2),
        (170, 3),
        (128, 4),
    ];
    for &(n, nblock) in shapes {
        let l = n * nblock;
        let graph = NetSpec::v1(Pattern::Log, n, 4, nblock).build().unwrap();
        assert_eq!(graph.num_layers(), l);
        let counted = GraphDistances::new(&graph, TransitionHops::Counted);
        let free = GraphDistances::new(&graph, TransitionHops::Free);
        for i in 1..=l {
            let dc = counted.from_layer(i);
            let df = free.from_layer(i);
            for j in 0..i {
                let gap = i - j;
                let bound = floor_log2(gap) + nblock as u32;
                assert!(
                    dc[j] <= bound,
                    "L={l} nblock={nblock}: BD({i},{j}) = {} > {bound}",
                    dc[j]
                );
                // Exactly: LOG's one-block distance is popcount(i - j) (the binary expansion
                // of the gap is a shortest path), and every path crosses each transition
                // between block(j) and block(i) exactly once, one hop each.
                let crossed = (block_of(i, n) - block_of(j, n)) as u32;
                assert_eq!(
                    dc[j],
                    gap.count_ones() + crossed,
                    "L={l} nblock={nblock}: BD({i},{j})"
                );
                // Transitions as part of the layers: the one-block bound log|i-j| + 1.
                assert!(df[j] <= floor_log2(gap) + 1);
                assert_eq!(df[j], gap.count_ones(), "free BD({i},{j})");
                if nblock == 1 {
                    assert_eq!(dc[j], gap.count_ones());
                }
            }
        }
        // The summary agrees with the per-row distances.
        let s = counted.summary().unwrap();
        assert_eq!(s.unreachable_pairs, 0);
        assert_eq!(s.pairs as usize, l * (l + 1) / 2);
        let want_mbd = (1..=l)
            .flat_map(|i| {
                (0..i).map(move |j| (i - j).count_ones() + (block_of(i, n) - block_of(j, n)) as u32)
            })
            .max()
            .unwrap();
        assert_eq!(s.mbd, want_mbd, "L={l} nblock={nblock}");
    }
}

#[test]
fn any_v1_pattern_pays_one_hop_per_transition() {
    // For any pattern, V1 adds exactly block(i) - block(j) hops to the one-block distance.
    for pattern in Pattern::ALL
        .into_iter()
        .chain([Pattern::LogLog { min_inputs: 1 }])
    {
        for (n, nblock) in [(7, 3), (10, 4), (1, 4), (13, 2)] {
            let l = n * nblock;
            let graph = NetSpec::v1(pattern, n, 3, nblock).build().unwrap();
            let sets = pattern.input_sets(l);
            let counted = GraphDistances::new(&graph, TransitionHops::Counted);
            let free = GraphDistances::new(&graph, TransitionHops::Free);
            for i in 1..=l {
                let one = bfs(&sets, i);
                let (dc, df) = (counted.from_layer(i), free.from_layer(i));
                for j in 0..i {
                    assert_eq!(df[j], one[j], "{pattern} L={l}: free BD({i},{j})");
                    let crossed = (block_of(i, n) - block_of(j, n)) as u32;
                    assert_eq!(
                        dc[j],
                        one[j] + crossed,
                        "{pattern} L={l}: counted BD({i},{j})"
                    );
                }
            }
        }
    }
}

#[test]
fn distances_from_agrees_with_an_independent_bfs() {
    for pattern in Pattern::ALL
        .into_iter()
        .chain([Pattern::LogLog { min_inputs: 1 }])
    {
        for l in [1, 2, 3, 5, 17, 24, 64, 100] {
            let sets = pattern.input_sets(l);
            for i in 1..=l {
                let want = bfs(&sets, i);
                let got = distances_from(&sets, i);
                assert_eq!(got.len(), i + 1);
                assert_eq!(&got[..], &want[..=i], "{pattern} L={l} i={i}");
                assert!(
                    got.iter().all(|&d| d != UNREACHABLE),
                    "every pattern reads i - 1"
                );
            }
        }
    }
}

#[test]
fn log_mbd_is_floor_log2_of_l_plus_1() {
    // The largest popcount of a gap 1..=L: a number with k ones is >= 2^k - 1.
    for l in (1..=64).chain([100, 127, 128, 255, 256, 500, 511, 512, 1000, 1023, 1024]) {
        let s = summarize_sets(&Pattern::Log.input_sets(l)).unwrap();
        assert_eq!(s.mbd, floor_log2(l + 1), "LOG L={l}");
        assert_eq!(s.unreachable_pairs, 0);
        assert_eq!(s.pairs as usize, l * (l + 1) / 2);
        // Mean distance = mean popcount of the gaps, each gap d occurring L + 1 - d times.
        let total: u64 = (1..=l)
            .map(|d| (d.count_ones() as u64) * (l + 1 - d) as u64)
            .sum();
        assert_eq!(s.total_distance, total, "LOG L={l}");
    }
}

#[test]
fn dense_mbd_is_one() {
    for l in [1, 2, 10, 100, 400, 1024] {
        let s = summarize_sets(&Pattern::Dense.input_sets(l)).unwrap();
        assert_eq!(
            (s.mbd, s.unreachable_pairs, s.total_distance),
            (1, 0, (l * (l + 1) / 2) as u64),
            "L={l}"
        );
    }
}

#[test]
fn nearest_mbd_against_greedy_jumps() {
    let count = |i: usize| log_budget(i);
    // Whole distance matrices for small L, against the greedy interval argument and a BFS on
    // an independently built pattern.
    for l in [1, 2, 3, 8, 24, 50, 128, 300] {
        let sets = Pattern::Nearest.input_sets(l);
        let own = own_nearest_sets(l, count);
        assert_eq!(sets, own, "NEAREST L={l}");
        for i in 1..=l {
            let d = distances_from(&sets, i);
            let b = bfs(&own, i);
            for j in 0..i {
                assert_eq!(
                    d[j],
                    greedy_distance(i, j, &count),
                    "NEAREST L={l} BD({i},{j})"
                );
                assert_eq!(d[j], b[j]);
            }
        }
    }
    // MBD: the distance is largest from L to 0.
    for l in (1..=200).chain([255, 256, 400, 511, 512, 700, 1000, 1023, 1024]) {
        let s = summarize_sets(&Pattern::Nearest.input_sets(l)).unwrap();
        let want = (1..=l)
            .map(|i| greedy_distance(i, 0, &count))
            .max()
            .unwrap();
        assert_eq!(s.mbd, want, "NEAREST L={l}");
    }
    // ~ L / log L: 1024 layers are 1 + (a few hundred) hops apart.
    let mbd1024 = summarize_sets(&Pattern::Nearest.input_sets(1024))
        .unwrap()
        .mbd;
    assert!(
        (100..=205).contains(&mbd1024),
        "NEAREST MBD at 1024 = {mbd1024}"
    );
}

#[test]
fn nearest_half_mbd_is_floor_log2_l_plus_1() {
    // NEAREST-HALF reaches [floor(i / 2^t), i-1] within t hops: BD(i, j) is the least t with
    // floor(i / 2^t) <= j, and the MBD (i = L, j = 0) is floor(log2 L) + 1.
    let count = |i: usize| i.div_ceil(2);
    for l in [1, 2, 3, 7, 24, 64, 200] {
        let sets = Pattern::NearestHalf.input_sets(l);
        assert_eq!(sets, own_nearest_sets(l, count));
        for i in 1..=l {
            let d = distances_from(&sets, i);
            for j in 0..i {
                let want = (0..).find(|&t| (i >> t) <= j).unwrap();
                assert_eq!(d[j], want, "NEAREST-HALF BD({i},{j})");
                assert_eq!(d[j], greedy_distance(i, j, &count));
            }
        }
    }
    for l in (1..=64).chain([100, 255, 256, 511, 512, 1024]) {
        let s = summarize_sets(&Pattern::NearestHalf.input_sets(l)).unwrap();
        assert_eq!(s.mbd, floor_log2(l) + 1, "NEAREST-HALF L={l}");
        assert_eq!(s.unreachable_pairs, 0);
    }
}

#[test]
fn nearest_half_and_log_mbd_is_2() {
    // i -> 1 (floor(i / 2^k) with 2^k <= i < 2^(k+1)) -> 0, and every j >= floor(i/2) is one
    // hop, every j < floor(i/2) is one hop from some floor(i/2^k).
    for l in [4, 5, 24, 100, 300] {
        let s = summarize_sets(&Pattern::NearestHalfAndLog.input_sets(l)).unwrap();
        assert_eq!(s.mbd, 2, "L={l}");
    }
    // L < 4: NEAREST-HALF alone, which is 1, 2 hops.
    assert_eq!(
        summarize_sets(&Pattern::NearestHalfAndLog.input_sets(1))
            .unwrap()
            .mbd,
        1
    );
    assert_eq!(
        summarize_sets(&Pattern::NearestHalfAndLog.input_sets(3))
            .unwrap()
            .mbd,
        2
    );
}

#[test]
fn evenly_spaced_mbd_grows_like_l_over_log_l() {
    // The paper (Sec. 4.1): NEAREST and EVENLY-SPACED both have an MBD "on the order of
    // O(L / log L)", far above LOG's 1 + log L. (SPEC.md's table says "~ log L" for
    // EVENLY-SPACED; the paper and the numbers say L / log L: 114 hops at L = 1024.)
    for l in [24, 64, 100, 128, 256, 512, 1024] {
        let sets = Pattern::EvenlySpaced.input_sets(l);
        let s = summarize_sets(&sets).unwrap();
        let own_mbd = (1..=l)
            .flat_map(|i| bfs(&sets, i)[..i].to_vec())
            .max()
            .unwrap();
        assert_eq!(s.mbd, own_mbd);
        let lol = l as f64 / (l as f64).log2();
        assert!(
            s.mbd > 1 + floor_log2(l),
            "EVENLY-SPACED L={l} MBD {} not above LOG's",
            s.mbd
        );
        if l >= 64 {
            assert!(
                (0.9 * lol..=1.3 * lol).contains(&(s.mbd as f64)),
                "EVENLY-SPACED L={l} MBD {} vs L/log L = {lol:.1}",
                s.mbd
            );
        }
    }
}

#[test]
fn evenly_spaced_half_mbd_is_2() {
    // Every other layer: j is read directly when i - j is odd, else via j + 1 (Sec. 4.1).
    for l in [2, 3, 4, 24, 101, 256, 500] {
        let s = summarize_sets(&Pattern::EvenlySpacedHalf.input_sets(l)).unwrap();
        assert_eq!((s.mbd, s.unreachable_pairs), (2, 0), "L={l}");
    }
    assert_eq!(
        summarize_sets(&Pattern::EvenlySpacedHalf.input_sets(1))
            .unwrap()
            .mbd,
        1
    );
}
