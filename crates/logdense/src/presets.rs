//! Named network presets, as torchvision and timm name theirs.
//!
//! Parametric families: `ld-v1-N-G` (V1, LOG, 3 blocks of N, growth G, CIFAR shape, the
//! networks of Table 1), `ld-v2-N-G`, `nearest-N-G`, `evenly-N-G`, `nearest-half-N-G`,
//! `nhl-N-G` (NEAREST-HALF-AND-LOG), `dense-N-G` (Table 2's D), `loglog-N-G`,
//! `densenet-bc-DEPTH-G` (depth = 6N + 4). Fixed ones: `ld-v2-169`, `ld-v2-265`,
//! `ld-v2-369` (ImageNet), `fc-ld-103`, `fc-densenet-56/67/103`, and `fashion`, the CPU
//! default for Fashion-MNIST.

use logdense_graph::{Arch, NetSpec, Pattern, Stem};

/// The preset that `logdense train` uses with no arguments.
pub const DEFAULT_PRESET: &str = "fashion";

/// Names (or name patterns) for `--help` and error messages.
pub const PRESET_NAMES: &str = "fashion, ld-v1-N-G, ld-v2-N-G, nearest-N-G, evenly-N-G, nearest-half-N-G, evenly-half-N-G, nhl-N-G, dense-N-G, loglog-N-G, densenet-bc-DEPTH-G, ld-v2-169, ld-v2-265, ld-v2-369, fc-ld-103, fc-ld-small, fc-ld-scenes, fc-ld-scenes-wide, fc-ld-scenes-slim, fc-densenet-56, fc-densenet-67, fc-densenet-103";

/// An ImageNet Log-DenseNet V2 with the given block sizes (bottleneck layers, g = 32).
fn imagenet_v2(blocks: Vec<usize>) -> NetSpec {
    NetSpec {
        blocks,
        bottleneck: true,
        stem: Stem::imagenet(64),
        input: [3, 224, 224],
        classes: 1000,
        ..NetSpec::v2(1, 32, 1)
    }
}

/// Small Log-DenseNet V1 for 28x28 grey images on a CPU budget: a 3x3 stem with BN-ReLU and
/// a stride-2 max pool (28 -> 14) so no block runs at full resolution, then 3 LOG blocks at
/// 14, 7 and 3 pixels.
fn fashion() -> NetSpec {
    NetSpec {
        stem: Stem {
            width: 24,
            kernel: 3,
            stride: 1,
            max_pool: true,
        },
        input: [1, 28, 28],
        ..NetSpec::v1(Pattern::Log, 5, 16, 3)
    }
}

/// A parametric preset family: its name prefix and its constructor from the two numbers.
type Family = (&'static str, fn(usize, usize) -> NetSpec);

fn parse_pair(rest: &str) -> Option<(usize, usize)> {
    let (a, b) = rest.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Looks a preset up by name.
pub fn preset(name: &str) -> Result<NetSpec, String> {
    let unknown = || format!("unknown preset '{name}' (known: {PRESET_NAMES})");
    let fixed = match name {
        "fashion" => Some(fashion()),
        "ld-v2-169" => Some(imagenet_v2(vec![6, 12, 32, 32])),
        "ld-v2-265" => Some(imagenet_v2(vec![6, 12, 64, 48])),
        "ld-v2-369" => Some(imagenet_v2(vec![8, 16, 80, 80])),
        "fc-ld-103" => Some(NetSpec::fc_log_densenet_103(72)),
        // The fashion-scenes recipe's network until session 5: 9 blocks, so the two
        // full-resolution blocks hold one layer each and the 4 x 4 middle block six.
        "fc-ld-scenes" => Some(NetSpec {
            blocks: vec![1, 2, 3, 4, 6, 4, 3, 2, 1],
            growth: 12,
            ..NetSpec::fc_log_densenet_103(24)
        }),
        // The fashion-scenes recipe's network since session 6: deeper and wider where the
        // maps are small (10 layers of 32 channels at 4 x 4), one 12-channel layer per block
        // at 64 and 32 pixels; transitions narrow each layer to the growth of the block they
        // enter, so the width does not travel up to the full-resolution blocks.
        "fc-ld-scenes-wide" => Some(NetSpec {
            blocks: vec![1, 1, 2, 4, 10, 4, 2, 1, 1],
            growth: 12,
            block_growth: vec![12, 12, 16, 24, 32, 24, 16, 12, 12],
            ..NetSpec::fc_log_densenet_103(24)
        }),
        // The fashion-scenes recipe's network since session 7: the wide one with slim
        // full-resolution ends (a 16-channel stem, 8 and 6 channels in the 64 x 64 blocks,
        // 8 in the 32 x 32 block on the way up; in the wide one the blocks at 64 and 32
        // pixels hold 70 % of the FLOPs and add little to telling garments apart), no
        // auxiliary head at 64 x 64, and 14 layers at 4 x 4, where a layer costs almost
        // nothing.
        "fc-ld-scenes-slim" => Some(NetSpec {
            blocks: vec![1, 1, 2, 4, 14, 4, 2, 1, 1],
            growth: 12,
            block_growth: vec![8, 12, 16, 24, 32, 24, 16, 8, 6],
            aux_min_stride: 2,
            ..NetSpec::fc_log_densenet_103(16)
        }),
        // The reduced FC-Log-DenseNet for CPUs: 5 blocks 2,3,4,3,2, g = 12, stem 24.
        "fc-ld-small" => Some(NetSpec {
            blocks: vec![2, 3, 4, 3, 2],
            growth: 12,
            ..NetSpec::fc_log_densenet_103(24)
        }),
        "fc-densenet-56" => NetSpec::tiramisu(56),
        "fc-densenet-67" => NetSpec::tiramisu(67),
        "fc-densenet-103" => NetSpec::tiramisu(103),
        _ => None,
    };
    if let Some(spec) = fixed {
        return Ok(spec);
    }
    let families: [Family; 10] = [
        ("ld-v1-", |n, g| NetSpec::v1(Pattern::Log, n, g, 3)),
        ("ld-v2-", |n, g| NetSpec::v2(n, g, 3)),
        ("nearest-half-", |n, g| {
            NetSpec::v1(Pattern::NearestHalf, n, g, 3)
        }),
        ("evenly-half-", |n, g| {
            NetSpec::v1(Pattern::EvenlySpacedHalf, n, g, 3)
        }),
        ("nearest-", |n, g| NetSpec::v1(Pattern::Nearest, n, g, 3)),
        ("evenly-", |n, g| {
            NetSpec::v1(Pattern::EvenlySpaced, n, g, 3)
        }),
        ("nhl-", |n, g| {
            NetSpec::v1(Pattern::NearestHalfAndLog, n, g, 3)
        }),
        ("dense-", |n, g| NetSpec::v1(Pattern::Dense, n, g, 3)),
        ("loglog-", |n, g| NetSpec {
            bottleneck: true,
            ..NetSpec::v1(Pattern::LogLog { min_inputs: 4 }, n, g, 3)
        }),
        ("densenet-bc-", |depth, g| {
            NetSpec::densenet_bc(depth.saturating_sub(4) / 6, g, 3)
        }),
    ];
    for (prefix, make) in families {
        if let Some(rest) = name.strip_prefix(prefix) {
            let (a, b) = parse_pair(rest).ok_or_else(unknown)?;
            let spec = make(a, b);
            if let Arch::DenseNetBc { .. } = spec.arch {
                if a < 10 || (a - 4) % 6 != 0 {
                    return Err(format!("preset '{name}': a DenseNet-BC depth is 6n + 4 with n >= 1 (e.g. 100), got {a}"));
                }
            }
            return Ok(spec);
        }
    }
    Err(unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_parse() {
        let s = preset("ld-v1-12-16").unwrap();
        assert_eq!((s.blocks.clone(), s.growth), (vec![12, 12, 12], 16));
        assert_eq!(
            preset("densenet-bc-100-12").unwrap().blocks,
            vec![16, 16, 16]
        );
        assert_eq!(preset("ld-v2-369").unwrap().blocks, vec![8, 16, 80, 80]);
        assert!(preset("nope").unwrap_err().contains("unknown preset"));
        assert!(preset("densenet-bc-99-12").is_err());
    }
}
