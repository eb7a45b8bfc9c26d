//! Replays the fuzz corpus of the checkpoint and config targets (`fuzz/corpus/<target>/`, see
//! fuzz/README.md) through the entry points the fuzz targets call: no input may panic, every
//! seed named `ok-*` must parse and every `bad-*` one must be refused. The seeds are written by
//! this file: `FUZZ_WRITE_SEEDS=1 cargo test -p logdense --test fuzz_corpus` rewrites them
//! (other corpus files, e.g. inputs that once crashed a target, are kept).

use std::path::Path;

use logdense::fuzzing;
use logdense::graph::TaskKind;
use logdense::training::checkpoint::{Checkpoint, TrainState};
use logdense::training::config::TaskConfig;

fn replay(target: &str, seeds: Vec<(&str, Vec<u8>)>, run: impl Fn(&[u8]) -> Result<(), String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let replayed = logdense::data::fuzzing::replay_corpus(&root, target, &seeds, run);
    println!("{target}: {replayed} inputs replayed");
}

fn sample() -> Checkpoint {
    let mut state = TrainState::fresh(
        logdense::graph::NetSpec::v1(logdense::graph::Pattern::Log, 2, 4, 1),
        7,
        vec![0.5],
        vec![0.25],
        vec!["a".into(), "b".into()],
    );
    state.epochs_done = 3;
    state.iteration = 42;
    Checkpoint {
        state,
        model: vec![1, 2, 3],
        optimizer: vec![9; 10],
        metrics: br#"[{"epoch":1}]"#.to_vec(),
    }
}

/// The first format (`LDCKPT01`): no checksum, three parts.
fn v1(ck: &Checkpoint) -> Vec<u8> {
    let mut b = b"LDCKPT01".to_vec();
    for part in [
        serde_json::to_vec(&ck.state).unwrap(),
        ck.model.clone(),
        ck.optimizer.clone(),
    ] {
        b.extend_from_slice(&(part.len() as u64).to_le_bytes());
        b.extend_from_slice(&part);
    }
    b
}

#[test]
fn checkpoint() {
    let good = sample().to_bytes();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut huge = good.clone();
    huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    let seeds = vec![
        ("ok-v2", good.clone()),
        ("ok-v1", v1(&sample())),
        ("bad-checksum", flipped),
        ("bad-truncated", good[..good.len() - 3].to_vec()),
        ("bad-huge-length", huge),
        ("bad-magic", b"LDCKPT99".to_vec()),
    ];
    replay("checkpoint", seeds, |d| {
        fuzzing::checkpoint(d).map(drop).map_err(|e| e.to_string())
    });
}

/// `logdense train`'s default config as runs wrote it before the task configs were one shape.
const EARLIER_TRAIN_DEFAULT: &str = "seed = 1

[model]
preset = \"fashion\"
dropout = 0.0
fused = true

[data]
dataset = \"fashion-mnist\"
workers = 2

[data.augment]
flip = true

[optim]
epochs = 30
batch_size = 64
lr = 0.1
momentum = 0.9
nesterov = true
weight_decay = 0.0001
milestones = [
    0.5,
    0.75,
]
gamma = 0.1
final_only_epochs = 1
lr_schedule = \"budget-cosine\"
final_only_share = 0.2
";

/// `logdense segment train`'s default config (`segment.toml`) of the earlier shape.
const EARLIER_SEG_DEFAULT: &str = "seed = 1

[model]
preset = \"fc-ld-small\"
dropout = 0.0
fused = true

[data]
dir = \"data/fashion-scenes\"
eval_split = \"test\"
crop = [
    64,
    64,
]
flip = true
class_weights = \"computed\"
workers = 2

[optim]
optimizer = \"rmsprop\"
epochs = 10
batch_size = 8
lr = 0.001
lr_schedule = \"exponential\"
lr_decay = 0.995
weight_decay = 0.0001
finetune_epochs = 2
finetune_batch_size = 4
finetune_lr = 0.0005
low_res_epochs = 0
low_res_factor = 2
";

#[test]
fn train_config() {
    let seeds = vec![
        (
            "ok-default.toml",
            TaskConfig::default().to_toml().into_bytes(),
        ),
        // The defaults as the configs of the earlier shape wrote them: such run directories
        // still resume.
        (
            "ok-earlier-default.toml",
            EARLIER_TRAIN_DEFAULT.as_bytes().to_vec(),
        ),
        (
            "ok-small.toml",
            b"seed = 3\n[model]\npreset = \"fashion\"\nblocks = [2, 2, 2]\ngrowth = 8\n\
              [optim]\nepochs = 2\nbatch_size = 16\nlr = 0.05\n"
                .to_vec(),
        ),
        ("bad-unknown-field.toml", b"[model]\nlayers = 3\n".to_vec()),
        ("bad-zero-epochs.toml", b"[optim]\nepochs = 0\n".to_vec()),
        ("bad-preset.toml", b"[model]\npreset = \"nope\"\n".to_vec()),
        ("bad-syntax.toml", b"[model\npreset = ".to_vec()),
    ];
    replay("train_config", seeds, |d| {
        fuzzing::train_config(d)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
}

#[test]
fn seg_config() {
    let recipe = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/fashion-scenes.toml"),
    )
    .unwrap();
    let seeds = vec![
        (
            "ok-default.toml",
            TaskConfig::defaults(TaskKind::Segment)
                .to_toml()
                .into_bytes(),
        ),
        (
            "ok-earlier-default.toml",
            EARLIER_SEG_DEFAULT.as_bytes().to_vec(),
        ),
        ("ok-fashion-scenes.toml", recipe),
        ("bad-zero-batch.toml", b"[optim]\nbatch_size = 0\n".to_vec()),
        (
            "bad-unknown-field.toml",
            b"[data]\nfolder = \"x\"\n".to_vec(),
        ),
        ("bad-syntax.toml", b"crop = [64, ".to_vec()),
    ];
    replay("seg_config", seeds, |d| {
        fuzzing::seg_config(d)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
}

#[test]
fn pattern_file() {
    let good = logdense::graph::PatternFile::new(
        logdense::graph::design::design_with(12, 4, logdense::graph::design::InputBudget::Log, 12)
            .unwrap(),
    );
    let mut later = good.clone();
    later.design.sets[5] = vec![4, 7];
    let mut mbd = good.clone();
    mbd.design.mbd += 1;
    let seeds = vec![
        ("ok-designed.json", good.to_json().into_bytes()),
        ("bad-later-layer.json", later.to_json().into_bytes()),
        ("bad-stated-mbd.json", mbd.to_json().into_bytes()),
        (
            "bad-unknown-field.json",
            good.to_json().replacen('{', "{\"extra\": 1,", 1).into_bytes(),
        ),
        ("bad-syntax.json", b"{\"format\": ".to_vec()),
        (
            "bad-huge-layers.json",
            br#"{"format":"logdense-pattern/1","layers":18446744073709551615,"max_inputs":1,"sets":[],"mbd":0,"connections":0,"method":"","proven_optimal":false,"lower_bound":0,"search_nodes":0}"#.to_vec(),
        ),
    ];
    replay("pattern_file", seeds, |d| {
        fuzzing::pattern_file(d)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
}

/// A small safetensors state dict as `logdense export --safetensors` writes them.
fn safetensors_seed() -> Vec<u8> {
    use logdense::interop::files::{safetensors_bytes, Stored};
    use logdense::interop::state_dict::Array;
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors_bytes(
        vec![
            (
                "mods.0.conv.weight".into(),
                Stored::F32(Array {
                    shape: vec![2, 1, 1, 1],
                    values: vec![0.5, -1.0],
                }),
            ),
            ("mods.1.bn.num_batches_tracked".into(), Stored::I64Scalar(0)),
        ],
        meta,
    )
    .unwrap()
}

#[test]
fn safetensors_state_dict() {
    let good = safetensors_seed();
    let mut huge = good.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut not_float = good.clone();
    // The i64 tensor under a name that is not PyTorch bookkeeping.
    let at = not_float
        .windows(19)
        .position(|w| w == b"num_batches_tracked")
        .unwrap();
    not_float[at..at + 19].copy_from_slice(b"not_batches_tracked");
    let seeds = vec![
        ("ok-export.safetensors", good.clone()),
        ("bad-truncated.safetensors", good[..good.len() - 3].to_vec()),
        ("bad-huge-header.safetensors", huge),
        ("bad-integer-tensor.safetensors", not_float),
        ("bad-text.safetensors", b"not a state dict".to_vec()),
    ];
    replay("safetensors_state_dict", seeds, |d| {
        fuzzing::safetensors_state_dict(d)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
}

#[test]
fn pytorch_state_dict() {
    // torch.save of a small state dict (f32, f16 and a num_batches_tracked), committed.
    let good = include_bytes!("fixtures/pytorch/tiny.pth").to_vec();
    let seeds = vec![
        ("ok-tiny.pth", good.clone()),
        ("bad-truncated.pth", good[..good.len() / 2].to_vec()),
        // A legacy (pickle-stream) file whose pickle breaks off.
        (
            "bad-legacy-pickle.pth",
            b"\x80\x02}q\x00(X\x0b\x00\x00\x00conv.weight".to_vec(),
        ),
        ("bad-zip-header-only.pth", good[..30].to_vec()),
    ];
    replay("pytorch_state_dict", seeds, |d| {
        fuzzing::pytorch_state_dict(d)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
}
