//! Bad network descriptions are errors naming the option at fault, never panics.

#![allow(clippy::needless_range_loop)]

use logdense_graph::design::design;
use logdense_graph::distance::summarize_sets;
use logdense_graph::{NetSpec, Op, Pattern, SpecError};
use proptest::prelude::*;

fn field_of(spec: &NetSpec) -> &'static str {
    let err: SpecError = spec.build().expect_err("the spec is invalid");
    assert!(
        err.to_string().starts_with(&format!("--{}: ", err.field())),
        "{err}"
    );
    err.field()
}

#[test]
fn zero_layers_is_an_n_error() {
    assert_eq!(field_of(&NetSpec::v1(Pattern::Log, 0, 12, 3)), "n");
    assert_eq!(field_of(&NetSpec::v2(0, 12, 3)), "n");
    assert_eq!(field_of(&NetSpec::densenet_bc(0, 12, 3)), "n");
    let mut spec = NetSpec::tiramisu(103).unwrap();
    spec.blocks[4] = 0;
    assert_eq!(field_of(&spec), "n");
}

#[test]
fn zero_growth_is_a_g_error() {
    for spec in [
        NetSpec::v1(Pattern::Dense, 4, 0, 3),
        NetSpec::v2(4, 0, 3),
        NetSpec::densenet_bc(4, 0, 3),
    ] {
        // (The stem of 2g = 0 channels is also wrong, but g is what the user set.)
        assert_eq!(field_of(&spec), "g");
    }
}

#[test]
fn too_many_blocks_for_the_input_is_a_blocks_error() {
    // A 32x32 input halves 5 times (32 -> 16 -> 8 -> 4 -> 2 -> 1): 6 blocks still fit,
    // the last one at 1x1, and the 7th does not.
    let six = NetSpec::v1(Pattern::Log, 2, 4, 6).build().unwrap();
    assert_eq!(six.blocks.last().unwrap().size, (1, 1));
    for pattern in Pattern::ALL {
        assert_eq!(
            field_of(&NetSpec::v1(pattern, 2, 4, 7)),
            "blocks",
            "{pattern}"
        );
    }
    assert_eq!(field_of(&NetSpec::v2(2, 4, 7)), "blocks");
    assert_eq!(field_of(&NetSpec::densenet_bc(2, 4, 7)), "blocks");
    let mut spec = NetSpec::v1(Pattern::Log, 2, 4, 3);
    spec.input = [3, 4, 4];
    assert!(spec.build().is_ok());
    spec.blocks = vec![2; 4];
    assert_eq!(field_of(&spec), "blocks");
    // No blocks at all.
    spec.blocks.clear();
    assert_eq!(field_of(&spec), "blocks");
}

#[test]
fn zero_classes_is_a_classes_error() {
    let mut spec = NetSpec::v1(Pattern::Log, 4, 4, 3);
    spec.classes = 0;
    assert_eq!(field_of(&spec), "classes");
    let mut spec = NetSpec::fc_log_densenet_103(72);
    spec.classes = 0;
    assert_eq!(field_of(&spec), "classes");
}

#[test]
fn fc_networks_need_an_odd_number_of_blocks() {
    let mut spec = NetSpec::fc_log_densenet_103(72);
    spec.blocks.pop();
    assert_eq!(field_of(&spec), "blocks");
    assert_eq!(field_of(&NetSpec::fc_densenet(vec![4; 10], 12)), "blocks");
    assert!(NetSpec::fc_densenet(vec![4; 3], 12).build().is_ok());
}

#[test]
fn other_fields() {
    let mut spec = NetSpec::v1(Pattern::Log, 4, 4, 3);
    spec.input = [3, 0, 32];
    assert_eq!(field_of(&spec), "input");
    let mut spec = NetSpec::v1(Pattern::Log, 4, 4, 3);
    spec.hub_multiplier = 0;
    assert_eq!(field_of(&spec), "hub-multiplier");
    let mut spec = NetSpec::densenet_bc(4, 4, 3);
    spec.arch = logdense_graph::Arch::DenseNetBc { compression: 0.0 };
    assert_eq!(field_of(&spec), "compression");
    assert_eq!(design(0, 3, 0).unwrap_err().field(), "layers");
    assert_eq!(design(10, 0, 0).unwrap_err().field(), "max-inputs");
    let chain: Vec<Vec<usize>> = (0..300_000)
        .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
        .collect();
    assert_eq!(summarize_sets(&chain).unwrap_err().field(), "layers");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Building never panics; it fails exactly when the blocks need more halvings than the
    /// input allows (side / 2^(nblock-1) < 1) or when n or g is 0.
    #[test]
    fn build_fails_only_for_a_reason(
        n in 0usize..=6,
        g in 0usize..=6,
        nblock in 1usize..=9,
        side in prop_oneof![Just(8usize), Just(32usize), Just(64usize), Just(100usize)],
        arch in 0usize..3,
    ) {
        let mut spec = match arch {
            0 => NetSpec::v1(Pattern::Log, n, g, nblock),
            1 => NetSpec::v2(n, g, nblock),
            _ => NetSpec::densenet_bc(n, g, nblock),
        };
        spec.input = [3, side, side];
        let fits = (side >> (nblock - 1)) >= 1;
        match spec.build() {
            Ok(graph) => {
                prop_assert!(n > 0 && g > 0 && fits);
                prop_assert_eq!(graph.num_layers(), n * nblock);
            }
            Err(e) => {
                let want = if n == 0 { "n" } else if g == 0 { "g" } else { "blocks" };
                prop_assert!(n == 0 || g == 0 || !fits, "unexpected error {}", e);
                prop_assert_eq!(e.field(), want);
            }
        }
    }
}

#[test]
fn per_block_growth_is_checked() {
    let mut spec = NetSpec::fc_log_densenet_103(24);
    spec.blocks = vec![1, 2, 1];
    spec.input = [3, 32, 32];
    spec.block_growth = vec![8, 16];
    assert_eq!(field_of(&spec), "block_growth");
    spec.block_growth = vec![8, 0, 8];
    assert_eq!(field_of(&spec), "block_growth");
    spec.block_growth = vec![8, 16, 8];
    let graph = spec.build().unwrap();
    // Each block's layers have its own width.
    let widths: Vec<usize> = graph.layer_nodes[1..]
        .iter()
        .map(|&id| graph.nodes[id].channels)
        .collect();
    assert_eq!(widths, vec![8, 16, 16, 8]);
    // A transition narrows a layer to the growth of the block it enters (the block its cost
    // counts towards), never widens it: the stem (24) enters block 1 at 16, layer 1 keeps its
    // 8, and layers 2 and 3 go up into block 2 at 8.
    let transitions: Vec<(usize, usize, usize, usize)> = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Down { .. } | Op::Up { .. }))
        .map(|n| (n.layer.unwrap(), n.block, n.in_channels, n.channels))
        .collect();
    for &(layer, block, from, to) in &transitions {
        let entering = spec.block_growth[block];
        assert_eq!(to, from.min(entering), "transition of layer {layer}");
    }
    assert!(transitions.contains(&(0, 1, 24, 16)), "{transitions:?}");
    assert!(transitions.contains(&(2, 2, 16, 8)), "{transitions:?}");
    let mut v2 = NetSpec::v2(2, 4, 3);
    v2.block_growth = vec![4, 4, 4];
    assert_eq!(field_of(&v2), "block_growth");
}
