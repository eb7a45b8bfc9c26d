//! The model registry: every named network, as torchvision and timm name theirs.
//!
//! [`PRESETS`] is the one table of names. Each entry has its task, a one-line summary and its
//! builder; the builders, `logdense presets`, the CLI's help and every "unknown preset" error
//! come from it. A family entry (`ld-v1-N-G`) names a network for every pair of numbers.

use logdense_graph::{NetSpec, Pattern, Stem, TaskKind};

/// The preset that `logdense train` uses with no arguments.
pub const DEFAULT_PRESET: &str = "fashion";
/// The preset that `logdense segment train` uses with no arguments.
pub const DEFAULT_SEG_PRESET: &str = "fc-ld-small";

/// How an entry builds its network.
#[derive(Clone, Copy)]
pub enum Builder {
    /// One network.
    Fixed(fn() -> NetSpec),
    /// A family named `PREFIX-A-B` (e.g. `ld-v1-12-16`: 12 layers per block, growth 16); the
    /// builder checks the numbers.
    Family(fn(usize, usize) -> Result<NetSpec, String>),
}

/// One entry of the registry.
#[derive(Clone, Copy)]
pub struct Preset {
    /// The name, or for a family its pattern (`ld-v1-N-G`).
    pub name: &'static str,
    /// What the network predicts: classes of an image or of every pixel.
    pub task: TaskKind,
    /// A one-line description, as `logdense presets` and the CLI's help list it.
    pub summary: &'static str,
    /// How the entry builds its network from the name.
    pub builder: Builder,
}

impl Preset {
    /// The family's prefix (`ld-v1-` of `ld-v1-N-G`), `None` for a fixed preset.
    fn prefix(&self) -> Option<&'static str> {
        match self.builder {
            Builder::Fixed(_) => None,
            Builder::Family(_) => {
                let base = self.name.rsplitn(3, '-').nth(2).unwrap_or("");
                Some(&self.name[..base.len() + 1])
            }
        }
    }
}

/// Three CIFAR-shaped blocks of `n` V1 layers with growth `g` and the given pattern.
fn v1(pattern: Pattern, n: usize, g: usize) -> Result<NetSpec, String> {
    Ok(NetSpec::v1(pattern, n, g, 3))
}

/// [`v1`] with bottleneck layers: Table 2's networks as the authors' code builds them, which
/// reproduces Table 2's cost columns (docs/2026-12-01-paper-cost-readings.md).
fn bottleneck(pattern: Pattern, n: usize, g: usize) -> Result<NetSpec, String> {
    Ok(NetSpec {
        bottleneck: true,
        ..NetSpec::v1(pattern, n, g, 3)
    })
}

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

/// torchvision's `DenseNet` class as a spec: DenseNet-BC (bottleneck 4g, compression 0.5)
/// with the ImageNet stem of `stem_width` channels, `blocks` layers per block, growth `growth`.
/// Its weights load from torchvision's state dicts (`logdense import --pytorch`).
pub fn torchvision_densenet(
    blocks: Vec<usize>,
    growth: usize,
    stem_width: usize,
    classes: usize,
    input: [usize; 3],
) -> NetSpec {
    NetSpec {
        blocks,
        stem: Stem::imagenet(stem_width),
        input,
        classes,
        ..NetSpec::densenet_bc(1, growth, 1)
    }
}

/// Small Log-DenseNet V1 for 28x28 grey images on a CPU budget: a 3x3 stem with BN-ReLU and
/// a stride-2 max pool (28 -> 14) so no block runs at full resolution, then 3 LOG blocks of 5
/// layers, g = 16, at 14, 7 and 3 pixels.
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

/// The registry. Order: classification, then segmentation; fixed names before families
/// whose prefix they share would otherwise shadow (`ld-v2-169` before `ld-v2-N-G`).
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "fashion",
        task: TaskKind::Classify,
        summary: "the CPU default: Log-DenseNet V1 for 28x28 grey images, 3 blocks of 5, g = 16, 0.13 M parameters",
        builder: Builder::Fixed(fashion),
    },
    Preset {
        name: "ld-v2-169",
        task: TaskKind::Classify,
        summary: "ImageNet Log-DenseNet V2, blocks 6,12,32,32, bottleneck, g = 32",
        builder: Builder::Fixed(|| imagenet_v2(vec![6, 12, 32, 32])),
    },
    Preset {
        name: "ld-v2-265",
        task: TaskKind::Classify,
        summary: "ImageNet Log-DenseNet V2, blocks 6,12,64,48, bottleneck, g = 32",
        builder: Builder::Fixed(|| imagenet_v2(vec![6, 12, 64, 48])),
    },
    Preset {
        name: "ld-v2-369",
        task: TaskKind::Classify,
        summary: "ImageNet Log-DenseNet V2, blocks 8,16,80,80, bottleneck, g = 32",
        builder: Builder::Fixed(|| imagenet_v2(vec![8, 16, 80, 80])),
    },
    Preset {
        name: "densenet-121",
        task: TaskKind::Classify,
        summary: "torchvision's DenseNet-121 (ImageNet DenseNet-BC, blocks 6,12,24,16, g = 32); loads torchvision state dicts",
        builder: Builder::Fixed(|| torchvision_densenet(vec![6, 12, 24, 16], 32, 64, 1000, [3, 224, 224])),
    },
    Preset {
        name: "densenet-169",
        task: TaskKind::Classify,
        summary: "torchvision's DenseNet-169 (ImageNet DenseNet-BC, blocks 6,12,32,32, g = 32); loads torchvision state dicts",
        builder: Builder::Fixed(|| torchvision_densenet(vec![6, 12, 32, 32], 32, 64, 1000, [3, 224, 224])),
    },
    Preset {
        name: "densenet-201",
        task: TaskKind::Classify,
        summary: "torchvision's DenseNet-201 (ImageNet DenseNet-BC, blocks 6,12,48,32, g = 32); loads torchvision state dicts",
        builder: Builder::Fixed(|| torchvision_densenet(vec![6, 12, 48, 32], 32, 64, 1000, [3, 224, 224])),
    },
    Preset {
        name: "ld-v1-N-G",
        task: TaskKind::Classify,
        summary: "Log-DenseNet V1 (LOG, independent transitions), 3 blocks of N, growth G (Table 1's LD)",
        builder: Builder::Family(|n, g| v1(Pattern::Log, n, g)),
    },
    Preset {
        name: "ld-v2-N-G",
        task: TaskKind::Classify,
        summary: "Log-DenseNet V2 (block compression), 3 blocks of N, growth G (Table 1's LD2)",
        builder: Builder::Family(|n, g| Ok(NetSpec::v2(n, g, 3))),
    },
    Preset {
        name: "nearest-half-N-G",
        task: TaskKind::Classify,
        summary: "V1 with NEAREST-HALF inputs (Table 2)",
        builder: Builder::Family(|n, g| v1(Pattern::NearestHalf, n, g)),
    },
    Preset {
        name: "evenly-spaced-half-N-G",
        task: TaskKind::Classify,
        summary: "V1 with EVENLY-SPACED-HALF inputs (Table 2)",
        builder: Builder::Family(|n, g| v1(Pattern::EvenlySpacedHalf, n, g)),
    },
    Preset {
        name: "nearest-N-G",
        task: TaskKind::Classify,
        summary: "V1 with NEAREST inputs at LOG's budget (Table 1)",
        builder: Builder::Family(|n, g| v1(Pattern::Nearest, n, g)),
    },
    Preset {
        name: "evenly-spaced-N-G",
        task: TaskKind::Classify,
        summary: "V1 with EVENLY-SPACED inputs at LOG's budget (Table 1)",
        builder: Builder::Family(|n, g| v1(Pattern::EvenlySpaced, n, g)),
    },
    Preset {
        name: "nearest-half-and-log-N-G",
        task: TaskKind::Classify,
        summary: "V1 with NEAREST-HALF-AND-LOG inputs (Table 2's N+LD)",
        builder: Builder::Family(|n, g| v1(Pattern::NearestHalfAndLog, n, g)),
    },
    Preset {
        name: "dense-N-G",
        task: TaskKind::Classify,
        summary: "V1 with DENSE inputs, no bottleneck (Table 2's D)",
        builder: Builder::Family(|n, g| v1(Pattern::Dense, n, g)),
    },
    Preset {
        name: "t2-nearest-half-N-G",
        task: TaskKind::Classify,
        summary: "Table 2's N as the authors built it: NEAREST-HALF with bottleneck layers",
        builder: Builder::Family(|n, g| bottleneck(Pattern::NearestHalf, n, g)),
    },
    Preset {
        name: "t2-evenly-spaced-half-N-G",
        task: TaskKind::Classify,
        summary: "Table 2's E as the authors built it: EVENLY-SPACED-HALF with bottleneck layers",
        builder: Builder::Family(|n, g| bottleneck(Pattern::EvenlySpacedHalf, n, g)),
    },
    Preset {
        name: "t2-nearest-half-and-log-N-G",
        task: TaskKind::Classify,
        summary: "Table 2's N+LD as the authors' code builds it, with bottleneck layers",
        builder: Builder::Family(|n, g| bottleneck(Pattern::NearestHalfAndLogAuthors, n, g)),
    },
    Preset {
        name: "t2-dense-N-G",
        task: TaskKind::Classify,
        summary: "Table 2's D: DenseNet with bottlenecks and width-keeping transitions",
        builder: Builder::Family(|n, g| Ok(NetSpec::densenet_uncompressed(n, g, 3))),
    },
    Preset {
        name: "loglog-N-G",
        task: TaskKind::Classify,
        summary: "LogLog-DenseNet (Appendix A, 4-input augmentation), bottleneck (Fig. 8)",
        builder: Builder::Family(|n, g| {
            Ok(NetSpec {
                bottleneck: true,
                ..NetSpec::v1(Pattern::LogLog { min_inputs: 4 }, n, g, 3)
            })
        }),
    },
    Preset {
        name: "densenet-bc-DEPTH-G",
        task: TaskKind::Classify,
        summary: "DenseNet-BC, depth 6n + 4 (e.g. densenet-bc-100-12), compression 0.5",
        builder: Builder::Family(|depth, g| {
            if depth < 10 || (depth - 4) % 6 != 0 {
                return Err(format!(
                    "a DenseNet-BC depth is 6n + 4 with n >= 1 (e.g. 100), got {depth}"
                ));
            }
            Ok(NetSpec::densenet_bc((depth - 4) / 6, g, 3))
        }),
    },
    Preset {
        name: "fc-ld-103",
        task: TaskKind::Segment,
        summary: "FC-Log-DenseNet-103 (Sec. 4.2): 11 blocks 4..15..4, g = 24, 72-channel stem, 4.49 M parameters",
        builder: Builder::Fixed(|| NetSpec::fc_log_densenet_103(72)),
    },
    Preset {
        name: "fc-ld-small",
        task: TaskKind::Segment,
        summary: "reduced FC-Log-DenseNet for CPUs: 5 blocks 2,3,4,3,2, g = 12, 24-channel stem",
        builder: Builder::Fixed(|| NetSpec {
            blocks: vec![2, 3, 4, 3, 2],
            growth: 12,
            ..NetSpec::fc_log_densenet_103(24)
        }),
    },
    Preset {
        name: "fc-ld-scenes",
        task: TaskKind::Segment,
        summary: "9 blocks 1,2,3,4,6,4,3,2,1, g = 12: one layer per full-resolution block, six at 4 x 4",
        builder: Builder::Fixed(|| NetSpec {
            blocks: vec![1, 2, 3, 4, 6, 4, 3, 2, 1],
            growth: 12,
            ..NetSpec::fc_log_densenet_103(24)
        }),
    },
    Preset {
        name: "fc-ld-scenes-wide",
        task: TaskKind::Segment,
        summary: "deeper and wider where maps are small: blocks 1,1,2,4,10,4,2,1,1, growth 12..32..12",
        // Transitions narrow each layer to the growth of the block they enter, so the width
        // does not travel up to the full-resolution blocks.
        builder: Builder::Fixed(|| NetSpec {
            blocks: vec![1, 1, 2, 4, 10, 4, 2, 1, 1],
            growth: 12,
            block_growth: vec![12, 12, 16, 24, 32, 24, 16, 12, 12],
            ..NetSpec::fc_log_densenet_103(24)
        }),
    },
    Preset {
        name: "fc-ld-scenes-slim",
        task: TaskKind::Segment,
        summary: "the fashion-scenes recipe: the wide one with slim full-resolution ends and 14 layers at 4 x 4, 0.92 M parameters",
        // A 16-channel stem, 8 and 6 channels in the 64 x 64 blocks, 8 in the 32 x 32 block
        // on the way up (the blocks at 64 and 32 pixels hold most of the FLOPs and add little
        // to telling garments apart), no auxiliary head at 64 x 64, and 14 layers at 4 x 4,
        // where a layer costs almost nothing.
        builder: Builder::Fixed(|| NetSpec {
            blocks: vec![1, 1, 2, 4, 14, 4, 2, 1, 1],
            growth: 12,
            block_growth: vec![8, 12, 16, 24, 32, 24, 16, 8, 6],
            aux_min_stride: 2,
            ..NetSpec::fc_log_densenet_103(16)
        }),
    },
    Preset {
        name: "fc-densenet-56",
        task: TaskKind::Segment,
        summary: "FC-DenseNet56 (Tiramisu), g = 12, blocks of 4",
        builder: Builder::Fixed(|| NetSpec::tiramisu(56).expect("a Tiramisu depth")),
    },
    Preset {
        name: "fc-densenet-67",
        task: TaskKind::Segment,
        summary: "FC-DenseNet67 (Tiramisu), g = 16, blocks of 5, 3.46 M parameters",
        builder: Builder::Fixed(|| NetSpec::tiramisu(67).expect("a Tiramisu depth")),
    },
    Preset {
        name: "fc-densenet-103",
        task: TaskKind::Segment,
        summary: "FC-DenseNet103 (Tiramisu), g = 16, 9.32 M parameters",
        builder: Builder::Fixed(|| NetSpec::tiramisu(103).expect("a Tiramisu depth")),
    },
];

/// The registry's names (family patterns included), comma-separated, for help and errors;
/// `task` restricts them to one task.
pub fn names(task: Option<TaskKind>) -> String {
    PRESETS
        .iter()
        .filter(|p| task.is_none_or(|t| p.task == t))
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_pair(rest: &str) -> Option<(usize, usize)> {
    let (a, b) = rest.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Family prefixes of earlier releases and the pattern-named prefixes that replaced them, so
/// that configs and run directories written before the renaming still load.
const RENAMED_FAMILIES: [(&str, &str); 5] = [
    ("nhl-", "nearest-half-and-log-"),
    ("t2-nhl-", "t2-nearest-half-and-log-"),
    ("evenly-", "evenly-spaced-"),
    ("evenly-half-", "evenly-spaced-half-"),
    ("t2-evenly-half-", "t2-evenly-spaced-half-"),
];

/// The current name of a preset: a family member under a renamed prefix (`nhl-12-16`) gets the
/// family's pattern name (`nearest-half-and-log-12-16`); every other name is returned as is.
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    RENAMED_FAMILIES
        .iter()
        .filter_map(|(old, new)| {
            let rest = name.strip_prefix(old)?;
            parse_pair(rest).map(|_| (old.len(), format!("{new}{rest}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or(std::borrow::Cow::Borrowed(name), |(_, renamed)| {
            std::borrow::Cow::Owned(renamed)
        })
}

/// The registry entry a name refers to (names of renamed families included).
pub fn lookup(name: &str) -> Result<&'static Preset, String> {
    let name = &*canonical_name(name);
    let unknown = || format!("unknown preset '{name}' (known: {})", names(None));
    if let Some(p) = PRESETS
        .iter()
        .find(|p| matches!(p.builder, Builder::Fixed(_)) && p.name == name)
    {
        return Ok(p);
    }
    // The longest matching family prefix wins (`nearest-half-` over `nearest-`).
    PRESETS
        .iter()
        .filter_map(|p| {
            p.prefix()
                .filter(|pre| name.starts_with(pre))
                .map(|pre| (pre.len(), p))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
        .ok_or_else(unknown)
}

/// Builds a preset's network by name.
pub fn preset(name: &str) -> Result<NetSpec, String> {
    let name = &*canonical_name(name);
    let entry = lookup(name)?;
    match entry.builder {
        Builder::Fixed(build) => Ok(build()),
        Builder::Family(build) => {
            let prefix = entry.prefix().expect("a family has a prefix");
            let (a, b) = parse_pair(&name[prefix.len()..]).ok_or_else(|| {
                format!(
                    "preset '{name}': the family {} takes two numbers after '{prefix}'",
                    entry.name
                )
            })?;
            if a == 0 || b == 0 {
                return Err(format!(
                    "preset '{name}': both numbers of {} must be at least 1",
                    entry.name
                ));
            }
            build(a, b).map_err(|e| format!("preset '{name}': {e}"))
        }
    }
}

/// A preset of the given task (an error names the task's presets otherwise).
pub fn preset_for(name: &str, task: TaskKind) -> Result<NetSpec, String> {
    let entry = lookup(name)?;
    if entry.task != task {
        return Err(format!(
            "'{name}' is a {} preset; {} presets: {}",
            task_name(entry.task),
            task_name(task),
            names(Some(task))
        ));
    }
    preset(name)
}

/// The word for a task in messages and listings.
pub fn task_name(task: TaskKind) -> &'static str {
    match task {
        TaskKind::Classify => "classification",
        TaskKind::Segment => "segmentation",
    }
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
        assert!(preset("ld-v1-0-16").is_err());
        assert!(preset("ld-v1-12").unwrap_err().contains("two numbers"));
        // The longest prefix wins.
        let nh = preset("nearest-half-4-8").unwrap();
        assert_eq!(
            nh.arch,
            logdense_graph::Arch::V1 {
                pattern: Pattern::NearestHalf
            }
        );
        let n = preset("nearest-4-8").unwrap();
        assert_eq!(
            n.arch,
            logdense_graph::Arch::V1 {
                pattern: Pattern::Nearest
            }
        );
    }

    #[test]
    fn every_entry_builds_and_has_the_task_it_claims() {
        for p in PRESETS {
            let name = p.name.replace("-N-G", "-2-4").replace("-DEPTH-G", "-16-4");
            let spec = preset(&name).unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert_eq!(spec.task(), p.task, "{}", p.name);
            assert!(
                !p.summary.is_empty() && !p.summary.contains('\n'),
                "{}",
                p.name
            );
            assert_eq!(lookup(&name).unwrap().name, p.name);
        }
        let names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a name is registered twice");
    }

    #[test]
    fn renamed_families_still_load_under_their_old_names() {
        for (old, new) in [
            ("nhl-6-8", "nearest-half-and-log-6-8"),
            ("t2-nhl-6-8", "t2-nearest-half-and-log-6-8"),
            ("evenly-6-8", "evenly-spaced-6-8"),
            ("evenly-half-6-8", "evenly-spaced-half-6-8"),
            ("t2-evenly-half-6-8", "t2-evenly-spaced-half-6-8"),
        ] {
            assert_eq!(canonical_name(old), new);
            assert_eq!(preset(old).unwrap(), preset(new).unwrap(), "{old}");
        }
        // Current names, and names that only share a prefix, are left alone.
        assert_eq!(canonical_name("evenly-spaced-6-8"), "evenly-spaced-6-8");
        assert_eq!(canonical_name("nearest-6-8"), "nearest-6-8");
        assert_eq!(
            preset("nearest-half-and-log-6-8").unwrap().arch,
            logdense_graph::Arch::V1 {
                pattern: Pattern::NearestHalfAndLog
            }
        );
    }

    #[test]
    fn task_checks_name_the_other_presets() {
        assert!(preset_for("fc-ld-small", TaskKind::Segment).is_ok());
        let e = preset_for("ld-v1-12-16", TaskKind::Segment).unwrap_err();
        assert!(
            e.contains("classification preset") && e.contains("fc-ld-scenes-slim"),
            "{e}"
        );
        assert!(!e.contains("ld-v2-N-G"), "{e}");
    }
}
