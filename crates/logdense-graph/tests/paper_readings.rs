//! Issue 15, "The costs, exact": readings of the networks behind the paper's cost columns
//! (Table 1 LD2, Table 2 N/E, N+LD and D), each computed with our cost model (2 x MACs of
//! convolutions and linear layers) for every `(n, g)` row and compared with `paper.rs`.
//!
//! Every reading's distance to the paper is stated as the range of `ours / paper - 1` over the
//! column's rows, in percent, rounded to 0.1; the tests compute the range and check it against
//! the statement. docs/2026-12-01-paper-cost-readings.md discusses them.
//!
//! Readings that `NetSpec` cannot express (Table 2 patterns over block-local indices,
//! transitions of every earlier layer, and the V2 variants) are built here node by node and
//! costed with `logdense_graph::cost::node_cost`; `builders_agree_with_netspec` checks that
//! these builders give exactly `NetSpec`'s FLOPs where both can express a network.

use logdense_graph::cost::node_cost;
use logdense_graph::paper::{TABLE1, TABLE2};
use logdense_graph::pattern::floor_log2;
use logdense_graph::{NetSpec, Node, Op, Pattern, Pool, TaskKind};

const CLASSES: usize = 10;

// ---------------------------------------------------------------------------------------------
// Node-by-node builders, costed by our cost model.

/// Sums the FLOPs of nodes as `node_cost` counts them.
#[derive(Default)]
struct Flops(u64);

impl Flops {
    fn node(&mut self, op: Op, cin: usize, cout: usize, side_in: usize, side_out: usize) {
        let node = Node {
            op,
            inputs: vec![],
            in_channels: cin,
            channels: cout,
            in_size: (side_in, side_in),
            size: (side_out, side_out),
            block: 0,
            layer: None,
        };
        self.0 += node_cost(&node)
            .expect("small networks do not overflow")
            .flops;
    }
    fn stem(&mut self, width: usize) {
        let op = Op::Stem {
            kernel: 3,
            stride: 1,
            max_pool: false,
        };
        self.node(op, 3, width, 32, 32);
    }
    fn layer(&mut self, cin: usize, g: usize, side: usize, bottleneck: bool) {
        let op = Op::Layer {
            index: 0,
            bottleneck: bottleneck.then_some(4 * g),
        };
        self.node(op, cin, g, side, side);
    }
    fn down(&mut self, cin: usize, cout: usize, side_in: usize) {
        let op = Op::Down { pool: Pool::Avg };
        self.node(op, cin, cout, side_in, side_in / 2);
    }
    fn head(&mut self, cin: usize, is_final: bool) {
        let op = Op::Head {
            task: TaskKind::Classify,
            is_final,
        };
        self.node(op, cin, CLASSES, 1, 1);
    }
    fn gflops(&self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// A V1 network (3 blocks of `n`, CIFAR input, a head after every block) over explicit global
/// input sets. `transition_all`: every earlier layer is transformed at every transition,
/// instead of only the layers that a later layer reads.
fn v1_sets(
    sets: &[Vec<usize>],
    n: usize,
    g: usize,
    stem: usize,
    bottleneck: bool,
    transition_all: bool,
) -> f64 {
    let nblock = 3;
    let width = |j: usize| if j == 0 { stem } else { g };
    let mut last_reader = vec![0; sets.len()];
    for (i, set) in sets.iter().enumerate() {
        for &j in set {
            last_reader[j] = last_reader[j].max(i);
        }
    }
    let mut f = Flops::default();
    f.stem(stem);
    for b in 0..nblock {
        let side = 32 >> b;
        let first = b * n + 1;
        if b > 0 {
            for (j, &reader) in last_reader.iter().enumerate().take(first) {
                if transition_all || reader >= first {
                    f.down(width(j), width(j), 2 * side);
                }
            }
        }
        for set in &sets[first..first + n] {
            let cin = set.iter().map(|&j| width(j)).sum();
            f.layer(cin, g, side, bottleneck);
        }
        let last = first + n - 1;
        let cin: usize = g + sets[last].iter().map(|&j| width(j)).sum::<usize>();
        f.head(cin, b + 1 == nblock);
    }
    f.gflops()
}

/// Input sets of a pattern applied to the block-local index: in block `b`, local layer `p`
/// (`p = 1..n`) is global layer `b n + p`, and local layer 0 is the last layer of the previous
/// block (`x_0` in block 0).
fn local_sets(pattern: Pattern, n: usize, nblock: usize) -> Vec<Vec<usize>> {
    let local = pattern.input_sets(n);
    let mut sets = vec![vec![]];
    for b in 0..nblock {
        for set in &local[1..] {
            sets.push(set.iter().map(|&p| b * n + p).collect());
        }
    }
    sets
}

/// When a V2 layer reads the compressed features of the earlier blocks.
#[derive(Clone, Copy, Debug)]
enum CompressedRead {
    /// SPEC: once if any LOG input of the global index lies before the block start.
    IfLogReachesBack,
    /// The authors' `AnytimeLogDenseNetV2.compute_block`: every layer, always.
    Always,
    /// LOG over the block-local index, the compressed features standing for local layer 0:
    /// read when the local index is a power of 2.
    LocalZero,
}

/// A reading of Log-DenseNet V2 (3 blocks of `n`, CIFAR input, a head after every block).
#[derive(Clone, Copy)]
struct V2Reading {
    read: CompressedRead,
    /// Channels of a compressed block before the `min(., n g)` cap: `width(n, g, L)`.
    width: fn(usize, usize, usize) -> usize,
    bottleneck: bool,
    /// Stem width in units of g (< 10) or in channels (>= 10).
    stem: usize,
}

fn width_spec(_n: usize, g: usize, l: usize) -> usize {
    g * (floor_log2(l + 1) + 1)
}
fn width_per_block(n: usize, g: usize, _l: usize) -> usize {
    g * (floor_log2(n + 1) + 1)
}
fn width_log_n(n: usize, g: usize, _l: usize) -> usize {
    g * floor_log2(n)
}

const SPEC_V2: V2Reading = V2Reading {
    read: CompressedRead::IfLogReachesBack,
    width: width_spec,
    bottleneck: false,
    stem: 2,
};

fn v2(r: V2Reading, n: usize, g: usize) -> f64 {
    let nblock = 3;
    let total = n * nblock;
    let stem = if r.stem < 10 { r.stem * g } else { r.stem };
    let new_width = (r.width)(n, g, total).min(n * g);
    let mut f = Flops::default();
    f.stem(stem);
    let mut compressed = stem;
    for b in 0..nblock {
        let side = 32 >> b;
        let first = b * n + 1;
        if b > 0 {
            f.down(compressed, compressed, 2 * side);
            f.down(n * g, new_width, 2 * side);
            compressed += new_width;
        }
        let mut last_cin = 0;
        for i in first..first + n {
            let log: Vec<usize> = (0..=floor_log2(i)).map(|k| i - (1 << k)).collect();
            let local = log.iter().filter(|&&j| j >= first).count();
            let p = i - first + 1;
            let reads = match r.read {
                CompressedRead::IfLogReachesBack => log.iter().any(|&j| j < first),
                CompressedRead::Always => true,
                CompressedRead::LocalZero => p.is_power_of_two(),
            };
            let cin = local * g + if reads { compressed } else { 0 };
            f.layer(cin, g, side, r.bottleneck);
            last_cin = cin;
        }
        f.head(g + last_cin, b + 1 == nblock);
    }
    f.gflops()
}

// ---------------------------------------------------------------------------------------------
// Comparison with the paper.

/// `ours / paper - 1` over the rows, in percent: (min, max).
fn spread(ours: &[f64], paper: &[f64]) -> (f64, f64) {
    let d: Vec<f64> = ours
        .iter()
        .zip(paper)
        .map(|(o, p)| 100.0 * (o / p - 1.0))
        .collect();
    (
        d.iter().copied().fold(f64::INFINITY, f64::min),
        d.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// Asserts that the reading lands `lo..hi` percent from the paper (each to within 0.1).
fn lands(column: &str, reading: &str, ours: &[f64], paper: &[f64], lo: f64, hi: f64) {
    let (min, max) = spread(ours, paper);
    let row: Vec<String> = ours.iter().map(|x| format!("{x:.3}")).collect();
    println!(
        "{column:<6} {reading:<62} {min:+6.1} % .. {max:+6.1} %   [{}]",
        row.join(" ")
    );
    assert!(
        (min - lo).abs() < 0.1 && (max - hi).abs() < 0.1,
        "{column} {reading}: {min:+.2} % .. {max:+.2} %, stated {lo:+.1} % .. {hi:+.1} %"
    );
}

fn gflops(spec: NetSpec) -> f64 {
    spec.build().unwrap().cost().total.gflops()
}

fn bottlenecked(mut spec: NetSpec) -> NetSpec {
    spec.bottleneck = true;
    spec
}

#[test]
fn builders_agree_with_netspec() {
    for (n, g) in [(3, 4), (12, 16), (32, 24), (52, 32)] {
        let flops = |spec: NetSpec| spec.build().unwrap().cost().total.flops as f64 / 1e9;
        for pattern in [Pattern::Log, Pattern::NearestHalf, Pattern::Dense] {
            let sets = pattern.input_sets(3 * n);
            for bottleneck in [false, true] {
                let mut spec = NetSpec::v1(pattern, n, g, 3);
                spec.bottleneck = bottleneck;
                assert_eq!(
                    v1_sets(&sets, n, g, 2 * g, bottleneck, false),
                    flops(spec),
                    "{pattern} n={n} g={g} bottleneck={bottleneck}"
                );
            }
        }
        assert_eq!(
            v2(SPEC_V2, n, g),
            flops(NetSpec::v2(n, g, 3)),
            "V2 n={n} g={g}"
        );
    }
}

#[test]
fn the_authors_nearest_half_and_log_pattern() {
    // i = 8 (`ui` = 7 in their code): nearest 7, 6, 5, 4; chain (4 - 1) / 2 = 1, then 0.
    // The text's floor(i / 2^k) gives 2 and 1 instead.
    let sets = Pattern::NearestHalfAndLogAuthors.input_sets(12);
    assert_eq!(sets[8], vec![0, 1, 4, 5, 6, 7]);
    assert_eq!(
        Pattern::NearestHalfAndLog.input_sets(8)[8],
        vec![1, 2, 4, 5, 6, 7]
    );
    assert_eq!(sets[1], vec![0]);
    assert_eq!(sets[2], vec![0, 1]);
    assert_eq!(sets[3], vec![0, 1, 2]);
    assert_eq!(sets[12], vec![0, 2, 6, 7, 8, 9, 10, 11]);
    for (i, set) in sets.iter().enumerate().skip(1) {
        // The nearest half, always layer 0, at most 1 + floor(log2 i) chain members.
        assert!(set.contains(&0) && set.len() <= i.div_ceil(2) + 1 + floor_log2(i));
        assert!((i - i.div_ceil(2)..i).all(|j| set.contains(&j)));
    }
    let s = "nearest-half-and-log-authors".parse::<Pattern>().unwrap();
    assert_eq!(s, Pattern::NearestHalfAndLogAuthors);
    // Its MBD is 2, like the text's pattern.
    let summary =
        logdense_graph::distance::summarize_sets(&Pattern::NearestHalfAndLogAuthors.input_sets(96))
            .unwrap();
    assert_eq!(summary.mbd, 2);
}

#[test]
fn table_1_ld2() {
    let paper: Vec<f64> = TABLE1.iter().map(|r| r.2).collect();
    let col =
        |r: V2Reading| -> Vec<f64> { TABLE1.iter().map(|((n, g), _, _)| v2(r, *n, *g)).collect() };
    let c = "LD2";
    // What NetSpec::v2 builds (SPEC's reading).
    lands(
        c,
        "SPEC: LOG reaching back reads comp., w = g(lg(L+1)+1), stem 2g",
        &col(SPEC_V2),
        &paper,
        0.9,
        16.8,
    );
    let always = V2Reading {
        read: CompressedRead::Always,
        ..SPEC_V2
    };
    lands(
        c,
        "authors' code: every layer reads the compressed features",
        &col(always),
        &paper,
        17.4,
        35.1,
    );
    let b = |r: V2Reading| V2Reading {
        bottleneck: true,
        ..r
    };
    lands(c, "SPEC + bottleneck", &col(b(SPEC_V2)), &paper, 4.8, 17.8);
    lands(
        c,
        "authors' code + bottleneck",
        &col(b(always)),
        &paper,
        12.2,
        25.1,
    );
    let per_block = V2Reading {
        width: width_per_block,
        ..SPEC_V2
    };
    lands(
        c,
        "SPEC, w = g(lg(n+1)+1) (L per block)",
        &col(per_block),
        &paper,
        -12.5,
        6.0,
    );
    lands(
        c,
        "authors' code, w = g(lg(n+1)+1)",
        &col(V2Reading {
            read: CompressedRead::Always,
            ..per_block
        }),
        &paper,
        3.9,
        24.3,
    );
    let local = V2Reading {
        read: CompressedRead::LocalZero,
        ..SPEC_V2
    };
    lands(
        c,
        "local LOG, comp. = local layer 0",
        &col(local),
        &paper,
        -25.1,
        -16.3,
    );
    lands(
        c,
        "local LOG, comp. = local layer 0, bottleneck",
        &col(b(local)),
        &paper,
        -7.1,
        7.2,
    );
    lands(
        c,
        "SPEC, stem 16",
        &col(V2Reading {
            stem: 16,
            ..SPEC_V2
        }),
        &paper,
        -11.4,
        11.6,
    );
    lands(
        c,
        "SPEC, stem 3g",
        &col(V2Reading { stem: 3, ..SPEC_V2 }),
        &paper,
        7.3,
        21.5,
    );
    // The best of a search over 1728 combinations (4 read rules x 18 widths x cap or not x
    // bottleneck or not x stem 2g/3g/16 x old-block conv or not): a fit, not a reading that
    // any text or code supports; its (32,32) row is 5 % below the paper's 5.92, which is out
    // of line with the other rows (5.92 / 32^2 = 5.78e-3 against 5.51e-3 and 5.49e-3 for
    // g = 16 and 24) and may be a misprint of 5.62.
    let fit = V2Reading {
        width: width_log_n,
        bottleneck: true,
        stem: 16,
        ..SPEC_V2
    };
    let ours = col(fit);
    lands(
        c,
        "fit: bottleneck, stem 16, w = g floor(lg n)",
        &ours,
        &paper,
        -5.4,
        0.6,
    );
    let (rows, paper8): (Vec<f64>, Vec<f64>) = ours
        .iter()
        .zip(&paper)
        .zip(TABLE1.iter())
        .filter(|(_, r)| r.0 != (32, 32))
        .map(|((o, p), _)| (*o, *p))
        .unzip();
    let (lo, hi) = spread(&rows, &paper8);
    assert!(lo > -1.2 && hi < 0.7, "{lo} {hi}");
}

#[test]
fn table_2_nearest_half_and_evenly_spaced_half() {
    let paper: Vec<f64> = TABLE2.iter().map(|r| r.1).collect();
    let spec_col = |p: Pattern, bottleneck: bool| -> Vec<f64> {
        TABLE2
            .iter()
            .map(|((n, g), ..)| {
                let mut s = NetSpec::v1(p, *n, *g, 3);
                s.bottleneck = bottleneck;
                gflops(s)
            })
            .collect()
    };
    let custom = |p: Pattern, local: bool, bottleneck: bool, stem: usize, all: bool| -> Vec<f64> {
        TABLE2
            .iter()
            .map(|((n, g), ..)| {
                let sets = if local {
                    local_sets(p, *n, 3)
                } else {
                    p.input_sets(3 * n)
                };
                let stem = if stem < 10 { stem * g } else { stem };
                v1_sets(&sets, *n, *g, stem, bottleneck, all)
            })
            .collect()
    };
    for (p, c, want) in [
        (
            Pattern::NearestHalf,
            "N",
            [
                (-18.5, 55.9),
                (-45.5, 0.3),
                (-2.3, -0.7),
                (-25.7, -13.7),
                (-0.9, 0.4),
                (-2.9, -0.8),
            ],
        ),
        (
            Pattern::EvenlySpacedHalf,
            "E",
            [
                (-10.5, 60.1),
                (-40.6, 3.1),
                (1.4, 3.4),
                (-24.5, -11.5),
                (1.4, 3.4),
                (-2.4, -0.2),
            ],
        ),
    ] {
        let [a, b, d, e, f, h] = want;
        lands(
            c,
            "V1 global, no bottleneck (NetSpec::v1 today)",
            &spec_col(p, false),
            &paper,
            a.0,
            a.1,
        );
        lands(
            c,
            "V1 block-local indices, no bottleneck",
            &custom(p, true, false, 2, false),
            &paper,
            b.0,
            b.1,
        );
        lands(
            c,
            "V1 global, bottleneck",
            &spec_col(p, true),
            &paper,
            d.0,
            d.1,
        );
        lands(
            c,
            "V1 block-local indices, bottleneck",
            &custom(p, true, true, 2, false),
            &paper,
            e.0,
            e.1,
        );
        lands(
            c,
            "V1 global, bottleneck, transitions of every layer",
            &custom(p, false, true, 2, true),
            &paper,
            f.0,
            f.1,
        );
        lands(
            c,
            "V1 global, bottleneck, stem 16",
            &custom(p, false, true, 16, false),
            &paper,
            h.0,
            h.1,
        );
    }
    // The paper prints one column for N and E; with bottlenecks they differ by 3-4 % and
    // bracket it: N 0.7-2.3 % below, E 1.4-3.4 % above.
    let (n, e) = (
        spec_col(Pattern::NearestHalf, true),
        spec_col(Pattern::EvenlySpacedHalf, true),
    );
    for ((n, e), p) in n.iter().zip(&e).zip(&paper) {
        assert!(n < p && p < e, "{n} {p} {e}");
    }
}

#[test]
fn table_2_nearest_half_and_log() {
    let paper: Vec<f64> = TABLE2.iter().map(|r| r.2).collect();
    let col = |p: Pattern, bottleneck: bool, local: bool| -> Vec<f64> {
        TABLE2
            .iter()
            .map(|((n, g), ..)| {
                let sets = if local {
                    local_sets(p, *n, 3)
                } else {
                    p.input_sets(3 * n)
                };
                v1_sets(&sets, *n, *g, 2 * g, bottleneck, false)
            })
            .collect()
    };
    let c = "N+LD";
    let (text, code) = (
        Pattern::NearestHalfAndLog,
        Pattern::NearestHalfAndLogAuthors,
    );
    lands(
        c,
        "text's floor(i/2^k), V1 global, no bottleneck (today)",
        &col(text, false, false),
        &paper,
        -10.3,
        58.2,
    );
    lands(
        c,
        "text's floor(i/2^k), block-local, no bottleneck",
        &col(text, false, true),
        &paper,
        -39.0,
        6.3,
    );
    lands(
        c,
        "text's floor(i/2^k), V1 global, bottleneck",
        &col(text, true, false),
        &paper,
        -7.9,
        -3.4,
    );
    lands(
        c,
        "text's floor(i/2^k), block-local, bottleneck",
        &col(text, true, true),
        &paper,
        -26.8,
        -20.5,
    );
    lands(
        c,
        "authors' chain, V1 global, no bottleneck",
        &col(code, false, false),
        &paper,
        5.9,
        65.5,
    );
    lands(
        c,
        "authors' chain, block-local, bottleneck",
        &col(code, true, true),
        &paper,
        -24.3,
        -14.6,
    );
    // The reading that reproduces the column: the authors' pattern, bottleneck layers.
    let ours: Vec<f64> = TABLE2
        .iter()
        .map(|((n, g), ..)| gflops(bottlenecked(NetSpec::v1(code, *n, *g, 3))))
        .collect();
    assert_eq!(ours, col(code, true, false));
    lands(
        c,
        "authors' chain, V1 global, bottleneck  <== reproduces",
        &ours,
        &paper,
        -0.5,
        0.7,
    );
}

#[test]
fn table_2_densenet() {
    let paper: Vec<f64> = TABLE2.iter().map(|r| r.3).collect();
    let col = |f: &dyn Fn(usize, usize) -> NetSpec| -> Vec<f64> {
        TABLE2
            .iter()
            .map(|((n, g), ..)| gflops(f(*n, *g)))
            .collect()
    };
    let c = "D";
    lands(
        c,
        "V1 DENSE, no bottleneck (today)",
        &col(&|n, g| NetSpec::v1(Pattern::Dense, n, g, 3)),
        &paper,
        -3.9,
        31.9,
    );
    lands(
        c,
        "V1 DENSE, bottleneck",
        &col(&|n, g| bottlenecked(NetSpec::v1(Pattern::Dense, n, g, 3))),
        &paper,
        -28.7,
        -21.3,
    );
    lands(
        c,
        "DenseNet-BC (bottleneck, compression 0.5)",
        &col(&|n, g| NetSpec::densenet_bc(n, g, 3)),
        &paper,
        -29.3,
        -22.1,
    );
    let no_bottleneck = |n, g| NetSpec {
        bottleneck: false,
        ..NetSpec::densenet_uncompressed(n, g, 3)
    };
    lands(
        c,
        "DenseNet, compression 1, no bottleneck",
        &col(&no_bottleneck),
        &paper,
        16.9,
        60.3,
    );
    let no_bottleneck_bc = |n, g| NetSpec {
        bottleneck: false,
        ..NetSpec::densenet_bc(n, g, 3)
    };
    lands(
        c,
        "DenseNet, compression 0.5, no bottleneck",
        &col(&no_bottleneck_bc),
        &paper,
        -14.9,
        17.0,
    );
    let local_dense: Vec<f64> = TABLE2
        .iter()
        .map(|((n, g), ..)| {
            v1_sets(
                &local_sets(Pattern::Dense, *n, 3),
                *n,
                *g,
                2 * g,
                false,
                false,
            )
        })
        .collect();
    lands(
        c,
        "V1 DENSE block-local, no bottleneck",
        &local_dense,
        &paper,
        -37.0,
        -15.4,
    );
    // The reading that reproduces the column: whole-stack transitions that keep the width.
    lands(
        c,
        "DenseNet, bottleneck, compression 1  <== reproduces",
        &col(&|n, g| NetSpec::densenet_uncompressed(n, g, 3)),
        &paper,
        -1.0,
        -0.2,
    );
}
