//! Property tests over random network shapes and designs.

#![allow(clippy::needless_range_loop)]

use logdense_graph::design::design;
use logdense_graph::distance::summarize_sets;
use logdense_graph::{Cost, GraphDistances, NetSpec, Op, Pattern, TransitionHops};
use proptest::prelude::*;
use std::collections::VecDeque;

fn any_pattern() -> impl Strategy<Value = Pattern> {
    prop_oneof![
        Just(Pattern::Dense),
        Just(Pattern::Log),
        Just(Pattern::Nearest),
        Just(Pattern::EvenlySpaced),
        Just(Pattern::NearestHalf),
        Just(Pattern::EvenlySpacedHalf),
        Just(Pattern::NearestHalfAndLog),
        (0usize..7).prop_map(|m| Pattern::LogLog { min_inputs: m }),
    ]
}

/// Independent all-pairs MBD by BFS.
fn bfs_mbd(sets: &[Vec<usize>]) -> u32 {
    let mut mbd = 0;
    for i in 1..sets.len() {
        let mut d = vec![u32::MAX; i + 1];
        d[i] = 0;
        let mut q = VecDeque::from([i]);
        while let Some(k) = q.pop_front() {
            for &j in &sets[k] {
                if d[j] == u32::MAX {
                    d[j] = d[k] + 1;
                    q.push_back(j);
                }
            }
        }
        assert!(
            d.iter().all(|&x| x != u32::MAX),
            "layer {i} cannot reach every earlier layer"
        );
        mbd = mbd.max(*d.iter().max().unwrap());
    }
    mbd
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn v1_networks_are_well_formed(
        pattern in any_pattern(),
        nblock in 1usize..=4,
        n in 1usize..=40,
        g in 1usize..=32,
        side in prop_oneof![Just(32usize), Just(64usize)],
    ) {
        let mut spec = NetSpec::v1(pattern, n, g, nblock);
        spec.input = [3, side, side];
        let graph = spec.build().expect("4 blocks fit a 32x32 input");
        let l = n * nblock;
        prop_assert_eq!(graph.num_layers(), l);
        prop_assert_eq!(graph.blocks.len(), nblock);

        for (id, node) in graph.nodes.iter().enumerate() {
            // Topological order: inputs are earlier nodes.
            prop_assert!(node.inputs.iter().all(|&i| i < id), "node {} reads a later node", id);
            // The concatenated input has the sum of the inputs' channels.
            if !node.inputs.is_empty() {
                let sum: usize = node.inputs.iter().map(|&i| graph.nodes[i].channels).sum();
                prop_assert_eq!(node.in_channels, sum, "node {}", id);
                // All inputs share the node's input resolution.
                for &i in &node.inputs {
                    prop_assert_eq!(graph.nodes[i].size, node.in_size, "node {} input {}", id, i);
                }
            }
            if let Op::Layer { index, .. } = node.op {
                prop_assert_eq!(graph.layer_nodes[index], id);
                prop_assert_eq!(node.channels, g);
                prop_assert_eq!(node.size, graph.blocks[node.block].size);
            }
        }

        // Layer input sets: sorted, unique, earlier, and V1's are the pattern's.
        let sets = graph.layer_input_sets();
        let want = pattern.input_sets(l);
        prop_assert_eq!(sets.len(), l + 1);
        for (i, set) in sets.iter().enumerate() {
            prop_assert!(set.windows(2).all(|w| w[0] < w[1]), "layer {} set {:?}", i, set);
            prop_assert!(set.iter().all(|&j| j < i));
            prop_assert!(i == 0 || set.contains(&(i - 1)));
        }
        prop_assert_eq!(&sets, &want);
        prop_assert_eq!(graph.connections(), want.iter().map(Vec::len).sum::<usize>());

        // Costs: positive, per block summing to the total.
        let report = graph.cost();
        prop_assert!(report.total.flops > 0 && report.total.params > 0 && report.total.activation_bytes > 0);
        let mut sum = Cost::default();
        for c in &report.per_block {
            prop_assert!(c.flops > 0 && c.params > 0);
            sum = sum.checked_add(*c).expect("no overflow");
        }
        prop_assert_eq!(sum, report.total);

        // Heads: one per block (deep supervision), the final one last.
        prop_assert_eq!(graph.heads().len(), nblock);
        let last = graph.last_use();
        prop_assert!(last.iter().enumerate().all(|(i, &u)| u >= i));

        // Prop. 3.1 generalised: the counted MBD is at most the one-block MBD + nblock - 1.
        if pattern == Pattern::Log || l <= 80 {
            let one = summarize_sets(&want).unwrap().mbd;
            let counted = GraphDistances::new(&graph, TransitionHops::Counted).summary().unwrap();
            let free = GraphDistances::new(&graph, TransitionHops::Free).summary().unwrap();
            prop_assert_eq!(counted.unreachable_pairs, 0);
            prop_assert!(counted.mbd < one + nblock as u32, "{} vs {} + {}", counted.mbd, one, nblock - 1);
            prop_assert_eq!(free.mbd, one);
            if pattern == Pattern::Log {
                prop_assert!(one == usize::BITS - 1 - (l + 1).leading_zeros());
            }
        }
    }

    #[test]
    fn other_architectures_build(
        n in 1usize..=20,
        g in 1usize..=24,
        nblock in 1usize..=4,
    ) {
        for spec in [NetSpec::v2(n, g, nblock), NetSpec::densenet_bc(n, g, nblock)] {
            let graph = spec.build().unwrap();
            prop_assert_eq!(graph.num_layers(), n * nblock);
            for (id, node) in graph.nodes.iter().enumerate() {
                prop_assert!(node.inputs.iter().all(|&i| i < id));
                let sum: usize = node.inputs.iter().map(|&i| graph.nodes[i].channels).sum();
                if !node.inputs.is_empty() {
                    prop_assert_eq!(node.in_channels, sum);
                }
            }
            for (i, set) in graph.layer_input_sets().iter().enumerate() {
                prop_assert!(set.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(set.iter().all(|&j| j < i));
            }
            let r = graph.cost();
            let mut sum = Cost::default();
            for c in &r.per_block {
                sum = sum.checked_add(*c).expect("no overflow");
            }
            prop_assert_eq!(sum, r.total);
        }
    }

    #[test]
    fn designs_respect_the_budget(l in 1usize..=40, k in 1usize..=5) {
        let d = design(l, k, 10).unwrap();
        prop_assert_eq!(d.layers, l);
        prop_assert_eq!(d.sets.len(), l + 1);
        prop_assert!(d.sets[0].is_empty());
        for (i, s) in d.sets.iter().enumerate().skip(1) {
            prop_assert!(s.len() <= k, "layer {} has {} > {} inputs", i, s.len(), k);
            prop_assert!(s.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(s.iter().all(|&j| j < i));
            prop_assert!(s.contains(&(i - 1)));
        }
        prop_assert_eq!(d.mbd, bfs_mbd(&d.sets));
        prop_assert_eq!(d.connections, d.sets.iter().map(Vec::len).sum::<usize>());
        prop_assert!(d.mbd >= d.lower_bound);
        // At least as good as LOG truncated to K inputs, nearest first.
        let truncated = logdense_graph::design::log_truncated(l, k);
        prop_assert!(d.mbd <= bfs_mbd(&truncated));
        if k == 1 {
            prop_assert_eq!(d.mbd as usize, l);
        }
    }
}
