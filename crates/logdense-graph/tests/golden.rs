//! Golden input sets at L = 24 (the depth of the paper's Fig. 1), written out by hand from the
//! definitions in SPEC.md and Appendix A of the paper, never computed by the code under test.

#![allow(clippy::needless_range_loop)]

use logdense_graph::{NetSpec, Pattern};

const L: usize = 24;

/// Checks the listed rows of `sets` against hand-written literals.
fn check_rows(name: &str, sets: &[Vec<usize>], golden: &[(usize, &[usize])]) {
    assert_eq!(sets.len(), L + 1, "{name}: one set per layer 0..=L");
    assert!(
        sets[0].is_empty(),
        "{name}: layer 0 (the stem) reads nothing"
    );
    for &(i, want) in golden {
        assert_eq!(sets[i], want, "{name}: inputs of layer {i}");
    }
}

fn range(lo: usize, hi_inclusive: usize) -> Vec<usize> {
    (lo..=hi_inclusive).collect()
}

#[test]
fn dense_rows() {
    let sets = Pattern::Dense.input_sets(L);
    for (i, set) in sets.iter().enumerate().skip(1) {
        assert_eq!(*set, (0..i).collect::<Vec<_>>(), "DENSE layer {i}");
    }
    check_rows("DENSE", &sets, &[(1, &[0]), (2, &[0, 1]), (3, &[0, 1, 2])]);
}

#[test]
fn log_rows_fig_1b() {
    // {i - 2^k : k = 0..floor(log2 i)}, ascending.
    check_rows(
        "LOG",
        &Pattern::Log.input_sets(L),
        &[
            (1, &[0]),
            (2, &[0, 1]),
            (3, &[1, 2]),
            (4, &[0, 2, 3]),
            (5, &[1, 3, 4]),
            (7, &[3, 5, 6]),
            (8, &[0, 4, 6, 7]),
            (12, &[4, 8, 10, 11]),
            (13, &[5, 9, 11, 12]),
            (15, &[7, 11, 13, 14]),
            (16, &[0, 8, 12, 14, 15]),
            (17, &[1, 9, 13, 15, 16]),
            (24, &[8, 16, 20, 22, 23]),
        ],
    );
}

#[test]
fn nearest_rows() {
    // The 1 + floor(log2 i) nearest layers.
    check_rows(
        "NEAREST",
        &Pattern::Nearest.input_sets(L),
        &[
            (1, &[0]),
            (2, &[0, 1]),
            (3, &[1, 2]),
            (4, &[1, 2, 3]),
            (5, &[2, 3, 4]),
            (7, &[4, 5, 6]),
            (8, &[4, 5, 6, 7]),
            (12, &[8, 9, 10, 11]),
            (13, &[9, 10, 11, 12]),
            (16, &[11, 12, 13, 14, 15]),
            (17, &[12, 13, 14, 15, 16]),
            (24, &[19, 20, 21, 22, 23]),
        ],
    );
}

#[test]
fn evenly_spaced_rows() {
    // m = 1 + floor(log2 i) layers round(i-1 - k (i-1)/(m-1)), k = 0..m-1: always i-1 (k = 0)
    // and 0 (k = m-1), the step (i-1)/(m-1) > 1 whenever m < i so the rounded points are
    // distinct: this is SPEC's "spread evenly over 0..i-1, always including i-1". Ties round
    // away from zero (i = 16: 7.5 -> 8; i = 24: 11.5 -> 12).
    check_rows(
        "EVENLY-SPACED",
        &Pattern::EvenlySpaced.input_sets(L),
        &[
            (1, &[0]),
            (2, &[0, 1]),
            (3, &[0, 2]),              // m = 2, step 2
            (4, &[0, 2, 3]),           // m = 3, step 1.5: 3, 1.5 -> 2, 0
            (5, &[0, 2, 4]),           // m = 3, step 2
            (7, &[0, 3, 6]),           // m = 3, step 3
            (8, &[0, 2, 5, 7]),        // m = 4, step 7/3: 7, 4.67 -> 5, 2.33 -> 2, 0
            (12, &[0, 4, 7, 11]),      // m = 4, step 11/3: 11, 7.33, 3.67, 0
            (13, &[0, 4, 8, 12]),      // m = 4, step 4
            (16, &[0, 4, 8, 11, 15]),  // m = 5, step 3.75: 15, 11.25, 7.5, 3.75, 0
            (17, &[0, 4, 8, 12, 16]),  // m = 5, step 4
            (24, &[0, 6, 12, 17, 23]), // m = 5, step 5.75: 23, 17.25, 11.5, 5.75, 0
        ],
    );
}

#[test]
fn nearest_half_rows() {
    // The ceil(i/2) nearest layers.
    check_rows(
        "NEAREST-HALF",
        &Pattern::NearestHalf.input_sets(L),
        &[
            (1, &[0]),
            (2, &[1]),
            (3, &[1, 2]),
            (5, &[2, 3, 4]),
            (7, &[3, 4, 5, 6]),
            (12, &range(6, 11)),
            (13, &range(6, 12)),
            (16, &range(8, 15)),
            (17, &range(8, 16)),
            (24, &range(12, 23)),
        ],
    );
}

#[test]
fn evenly_spaced_half_rows() {
    // Every other earlier layer, i-1, i-3, ...: the paper's EVENLY-SPACED formula
    // {round(i - 1 - k delta) : k delta <= i - 1} with delta = 2, ceil(i/2) layers (Table 2
    // "E", "each x_i takes input from every other previous layer", MBD 2).
    let step2 = |i: usize| (0..i).rev().step_by(2).rev().collect::<Vec<usize>>();
    check_rows(
        "EVENLY-SPACED-HALF",
        &Pattern::EvenlySpacedHalf.input_sets(L),
        &[
            (1, &[0]),
            (2, &[1]),
            (3, &[0, 2]),
            (5, &[0, 2, 4]),
            (7, &[0, 2, 4, 6]),
            (12, &[1, 3, 5, 7, 9, 11]),
            (13, &[0, 2, 4, 6, 8, 10, 12]),
            (16, &[1, 3, 5, 7, 9, 11, 13, 15]),
            (17, &[0, 2, 4, 6, 8, 10, 12, 14, 16]),
            (24, &[1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23]),
        ],
    );
    for (i, set) in Pattern::EvenlySpacedHalf.input_sets(L).iter().enumerate() {
        assert_eq!(*set, step2(i), "layer {i}");
        assert_eq!(set.len(), i.div_ceil(2));
    }
}

#[test]
fn nearest_half_and_log_rows_fig_1d() {
    // {i-1, .., i-ceil(i/2)} plus {floor(i / 2^k) : k >= 2, 2^k <= i}.
    let with = |mut near: Vec<usize>, extra: &[usize]| {
        near.extend_from_slice(extra);
        near.sort_unstable();
        near
    };
    check_rows(
        "NEAREST-HALF-AND-LOG",
        &Pattern::NearestHalfAndLog.input_sets(L),
        &[
            (1, &[0]),
            (2, &[1]),
            (3, &[1, 2]),
            (4, &[1, 2, 3]), // nearest {2, 3} plus 4/4 = 1
            (5, &[1, 2, 3, 4]),
            (7, &[1, 3, 4, 5, 6]),
            (8, &[1, 2, 4, 5, 6, 7]), // nearest 4..7 plus 2, 1
            (12, &with(range(6, 11), &[3, 1])),
            (13, &with(range(6, 12), &[3, 1])),
            (16, &with(range(8, 15), &[4, 2, 1])),
            (17, &with(range(8, 16), &[4, 2, 1])),
            (24, &with(range(12, 23), &[6, 3, 1])),
        ],
    );
}

/// lglg_conn(0, 24) by hand. delta = floor(sqrt 25) = 5, K = {0, 4, 9, 14, 19, 24}:
/// (a) dense among K; (b) 0 -> 1..4 (so layer 3 reads 0 too), 4 -> 5..9, 9 -> 10..14, 14 -> 15..19, 19 -> 20..24;
/// (c) calls (0,4), (4,9), (9,14), (14,19), (19,24).
/// (0,4): delta = 2, K = {0,2,4}: 2<-0, 4<-0,2; 0 -> 1,2; 2 -> 3,4; calls (0,2) and (2,4)
///   with K = {0,1,2} and {2,3,4} (dense).
/// (4,9): delta = floor(sqrt 6) = 2, K = {4,5,7,9}: 5<-4, 7<-4,5, 9<-4,5,7; 4 -> 5;
///   5 -> 6,7; 7 -> 8,9; calls (4,5) (exits), (5,7) K = {5,6,7}, (7,9) K = {7,8,9}.
/// (9,14), (14,19), (19,24) are (4,9) shifted by 5, 10, 15. Every layer also reads i - 1.
fn loglog_plain_24() -> Vec<Vec<usize>> {
    vec![
        vec![],
        vec![0],
        vec![0, 1],
        vec![0, 2],
        vec![0, 2, 3],
        vec![4],
        vec![4, 5],
        vec![4, 5, 6],
        vec![4, 7],
        vec![0, 4, 5, 7, 8],
        vec![9],
        vec![9, 10],
        vec![9, 10, 11],
        vec![9, 12],
        vec![0, 4, 9, 10, 12, 13],
        vec![14],
        vec![14, 15],
        vec![14, 15, 16],
        vec![14, 17],
        vec![0, 4, 9, 14, 15, 17, 18],
        vec![19],
        vec![19, 20],
        vec![19, 20, 21],
        vec![19, 22],
        vec![0, 4, 9, 14, 19, 20, 22, 23],
    ]
}

#[test]
fn loglog_plain_rows() {
    let sets = Pattern::LogLog { min_inputs: 1 }.input_sets(L);
    assert_eq!(sets, loglog_plain_24());
    // min_inputs 0 is also "no augmentation".
    assert_eq!(
        Pattern::LogLog { min_inputs: 0 }.input_sets(L),
        loglog_plain_24()
    );
    // 66 connections: 21 in 1..9, then 14, 15, 16 in the later segments.
    assert_eq!(sets.iter().map(Vec::len).sum::<usize>(), 66);
}

#[test]
fn loglog_augmented_rows() {
    // LOG inputs i-1, i-2, i-4, ... added nearest-first until 4 inputs (or LOG runs out).
    let want: Vec<Vec<usize>> = vec![
        vec![],
        vec![0],
        vec![0, 1],
        vec![0, 1, 2],       // + 1 (LOG {2, 1})
        vec![0, 2, 3],       // LOG {3, 2, 0} all present: only 3
        vec![1, 3, 4],       // + 3, 1 (LOG exhausted)
        vec![2, 4, 5],       // + 2
        vec![3, 4, 5, 6],    // + 3
        vec![0, 4, 6, 7],    // + 6, (4 present), 0
        vec![0, 4, 5, 7, 8], // already 5
        vec![2, 6, 8, 9],    // + 8, 6, 2
        vec![3, 7, 9, 10],   // + 7, 3
        vec![8, 9, 10, 11],  // + 8
        vec![5, 9, 11, 12],  // + 11, (9 present), 5
        vec![0, 4, 9, 10, 12, 13],
        vec![7, 11, 13, 14],  // + 13, 11, 7
        vec![8, 12, 14, 15],  // + 12, 8
        vec![13, 14, 15, 16], // + 13
        vec![10, 14, 16, 17], // + 16, (14 present), 10
        vec![0, 4, 9, 14, 15, 17, 18],
        vec![12, 16, 18, 19], // + 18, 16, 12
        vec![13, 17, 19, 20], // + 17, 13
        vec![18, 19, 20, 21], // + 18
        vec![15, 19, 21, 22], // + 21, (19 present), 15
        vec![0, 4, 9, 14, 19, 20, 22, 23],
    ];
    assert_eq!(Pattern::LogLog { min_inputs: 4 }.input_sets(L), want);
    assert_eq!(Pattern::ALL[7], Pattern::LogLog { min_inputs: 4 });
}

#[test]
fn loglog_hub_layers_are_the_root_key_locations() {
    assert_eq!(
        Pattern::LogLog { min_inputs: 4 }.hub_layers(L),
        vec![0, 4, 9, 14, 19, 24]
    );
    assert_eq!(
        Pattern::LogLog { min_inputs: 1 }.hub_layers(L),
        vec![0, 4, 9, 14, 19, 24]
    );
    // lglg_conn(0, 10): delta = floor(sqrt 11) = 3, K = {0} U {10, 7, 4, 1}.
    assert_eq!(
        Pattern::LogLog { min_inputs: 1 }.hub_layers(10),
        vec![0, 1, 4, 7, 10]
    );
    assert!(Pattern::Log.hub_layers(L).is_empty());
}

#[test]
fn v1_layer_input_sets_are_fig_1a_and_1b() {
    for pattern in [Pattern::Dense, Pattern::Log] {
        let g = NetSpec::v1(pattern, 12, 8, 2).build().unwrap();
        assert_eq!(g.num_layers(), L);
        assert_eq!(g.layer_input_sets(), pattern.input_sets(L), "{pattern}");
    }
    // The transition is looked through: layer 16 of V1 LOG reads x_0, x_8, x_12 (older block).
    let g = NetSpec::v1(Pattern::Log, 12, 8, 2).build().unwrap();
    assert_eq!(g.layer_input_sets()[16], vec![0, 8, 12, 14, 15]);
}

#[test]
fn v2_layer_input_sets_are_fig_1c() {
    // V2, two blocks of 12, transition at 12. Block 1 (layers 1..=12): LOG inputs, layer 0
    // being the initial compressed block, so the rows are LOG's. Block 2: LOG inputs >= 13,
    // plus the compressed features (= layers 0..=12) if any LOG input lies before 13.
    let g = NetSpec::v2(12, 8, 2).build().unwrap();
    let sets = g.layer_input_sets();
    let comp = |extra: &[usize]| {
        let mut v = range(0, 12);
        v.extend_from_slice(extra);
        v
    };
    let golden: Vec<(usize, Vec<usize>)> = vec![
        (1, vec![0]),
        (2, vec![0, 1]),
        (5, vec![1, 3, 4]),
        (8, vec![0, 4, 6, 7]),
        (12, vec![4, 8, 10, 11]),
        (13, comp(&[])),               // LOG {12, 11, 9, 5}: compressed alone
        (14, comp(&[13])),             // {13 | 12, 10, 6}
        (15, comp(&[13, 14])),         // {14, 13 | 11, 7}
        (16, comp(&[14, 15])),         // {15, 14 | 12, 8, 0}
        (17, comp(&[13, 15, 16])),     // {16, 15, 13 | 9, 1}
        (18, comp(&[14, 16, 17])),     // {17, 16, 14 | 10, 2}
        (19, comp(&[15, 17, 18])),     // {18, 17, 15 | 11, 3}
        (20, comp(&[16, 18, 19])),     // {19, 18, 16 | 12, 4}
        (21, comp(&[13, 17, 19, 20])), // {20, 19, 17, 13 | 5}
        (24, comp(&[16, 20, 22, 23])), // {23, 22, 20, 16 | 8}
    ];
    for (i, want) in golden {
        assert_eq!(sets[i], want, "V2 layer {i}");
    }
    // The compressed block of layers 1..12 has min(g (floor(log2 25) + 1), 12 g) = 5g channels,
    // x_0 keeps its 2g: layer 13 reads 7g = 56 channels.
    let node13 = &g.nodes[g.layer_nodes[13]];
    assert_eq!(node13.in_channels, 56);
    // Layer 14 reads the compressed features once plus x_13.
    assert_eq!(g.nodes[g.layer_nodes[14]].in_channels, 56 + 8);
}
