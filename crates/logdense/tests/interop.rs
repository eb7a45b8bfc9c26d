//! Models in and out, checked by code we did not write: our ONNX exports run in tract and must
//! give our logits; torchvision's DenseNet state dict (a committed fixture that
//! bench/torchvision_densenet.py made with torchvision) must give torchvision's logits;
//! safetensors exports must load back to the same weights; bad files are refused by name.

use burn::prelude::*;
use logdense::graph::{NetSpec, Pattern};
use logdense::interop::state_dict::{self, Array, Naming};
use logdense::interop::{self, files};
use logdense::model::presets;
use logdense::SparseDenseNet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::{
    tract_ndarray, tvec, DatumExt, Framework, InferenceModelExt, IntoRunnable,
};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logdense-interop-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A deterministic stream of numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// The network with random weights and random batch-norm statistics and affine parameters,
/// so that inference-mode batch norm is a real check (fresh statistics are 0 and 1). Goes
/// through a state-dict export and import, so it exercises both.
fn randomized(spec: &NetSpec, seed: u64) -> SparseDenseNet {
    let device = Device::flex();
    device.seed(seed);
    let net = SparseDenseNet::new(spec, 0.0, &device).unwrap();
    let mut rng = Lcg(seed);
    let mut tensors: BTreeMap<String, Array> = state_dict::export(&net, Naming::Reference)
        .unwrap()
        .into_iter()
        .collect();
    for (name, a) in tensors.iter_mut() {
        for v in a.values.iter_mut() {
            if name.ends_with("running_mean")
                || name.ends_with("bn.bias")
                || name.ends_with("bbn.bias")
            {
                *v = 0.2 * (rng.next() - 0.5);
            } else if name.ends_with("running_var")
                || name.ends_with("bn.weight")
                || name.ends_with("bbn.weight")
            {
                *v = 0.5 + rng.next();
            }
        }
    }
    state_dict::import(net, &tensors, Naming::Reference, &device).unwrap()
}

fn input(spec: &NetSpec, batch: usize, seed: u64) -> Tensor<4> {
    let device = Device::flex();
    let [c, h, w] = spec.input;
    let mut rng = Lcg(seed);
    let values: Vec<f32> = (0..batch * c * h * w)
        .map(|_| 2.0 * rng.next() - 1.0)
        .collect();
    Tensor::from_data(TensorData::new(values, [batch, c, h, w]), &device)
}

/// The largest difference relative to the largest magnitude of `expected` (which must not be
/// near zero: a comparison of zeros would check nothing).
fn relative_difference(got: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(got.len(), expected.len(), "output sizes differ");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-3,
        "the expected logits are all near zero ({scale:e})"
    );
    let diff = got
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Runs an ONNX model in tract on `x` and returns its single output, flattened.
fn run_tract(onnx: &[u8], x: &Tensor<4>) -> Vec<f32> {
    let [n, c, h, w] = x.dims();
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .expect("tract reads the model")
        .with_input_fact(0, f32::fact([n, c, h, w]).into())
        .unwrap()
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .unwrap();
    let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
    let input: tract_onnx::prelude::Tensor =
        tract_ndarray::Array4::from_shape_vec((n, c, h, w), values)
            .unwrap()
            .into();
    let out = model
        .run(tvec!(input.into()))
        .expect("tract runs the model");
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// Our final head's logits, flattened.
fn ours(net: &SparseDenseNet, x: &Tensor<4>) -> Vec<f32> {
    net.forward(x.clone())
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Exports `net` to ONNX and checks tract's logits against ours at batch 2 and batch 1 (the
/// batch axis is dynamic).
fn check_onnx(name: &str, net: &SparseDenseNet) {
    let onnx = interop::onnx::export_onnx(net, Some(name)).unwrap();
    for batch in [2, 1] {
        let x = input(&net.graph.spec, batch, 7);
        let diff = relative_difference(&run_tract(&onnx, &x), &ours(net, &x));
        println!("{name}, batch {batch}: tract vs logdense, largest relative difference {diff:e}");
        assert!(
            diff <= 1e-4,
            "{name}, batch {batch}: tract differs from logdense by {diff:e} (relative)"
        );
    }
}

/// Every preset family at a small size (segmenters on 32 x 32 or 64 x 64 images).
fn small_families() -> Vec<(String, NetSpec)> {
    let mut out = Vec::new();
    for family in [
        "ld-v1",
        "ld-v2",
        "nearest",
        "evenly-spaced",
        "nearest-half",
        "evenly-spaced-half",
        "nearest-half-and-log",
        "dense",
        "loglog",
        "t2-nearest-half",
        "t2-evenly-spaced-half",
        "t2-nearest-half-and-log",
        "t2-dense",
    ] {
        let name = format!("{family}-3-4");
        out.push((name.clone(), presets::preset(&name).unwrap()));
    }
    out.push((
        "densenet-bc-16-4".into(),
        presets::preset("densenet-bc-16-4").unwrap(),
    ));
    out.push((
        "torchvision-densenet-tiny".into(),
        presets::torchvision_densenet(vec![2, 3, 2], 8, 16, 5, [3, 32, 32]),
    ));
    let mut fc_ld = presets::preset("fc-ld-small").unwrap();
    fc_ld.input = [3, 32, 32];
    out.push(("fc-ld-small@32".into(), fc_ld.clone()));
    // A strided stem: the final head upsamples its logits bilinearly (ONNX Resize); an odd
    // size makes the up path crop.
    let mut strided = fc_ld;
    strided.stem.stride = 2;
    strided.input = [3, 36, 44];
    out.push(("fc-ld-small-stride2@36x44".into(), strided));
    let mut tiramisu = presets::preset("fc-densenet-56").unwrap();
    tiramisu.input = [3, 64, 64];
    out.push(("fc-densenet-56@64".into(), tiramisu));
    out
}

#[test]
fn onnx_exports_run_in_tract_with_our_logits_on_every_preset_family() {
    for (name, spec) in small_families() {
        check_onnx(&name, &randomized(&spec, 3));
    }
}

#[test]
fn a_designed_pattern_exports_like_a_builtin_one() {
    let mut spec = NetSpec::v1(Pattern::Log, 4, 4, 2);
    spec.custom_sets = Some(vec![
        vec![],
        vec![0],
        vec![0, 1],
        vec![1, 2],
        vec![0, 2, 3],
        vec![4],
        vec![3, 5],
        vec![5, 6],
        vec![4, 7],
    ]);
    check_onnx("designed", &randomized(&spec, 5));
}

#[test]
fn safetensors_export_loads_back_to_the_same_weights_and_logits() {
    let spec = presets::preset("t2-nearest-half-and-log-3-4").unwrap();
    let net = randomized(&spec, 11);
    let bytes =
        interop::safetensors_export(&net, Some("t2-nearest-half-and-log-3-4"), None, None).unwrap();
    let dir = temp("roundtrip");
    let path = dir.join("model.safetensors");
    std::fs::write(&path, &bytes).unwrap();
    let import = interop::import_file(&path, None, &Device::flex()).unwrap();
    assert_eq!(import.naming, Naming::Reference);
    assert_eq!(import.model.graph.spec, spec);
    assert_eq!(import.model.flat_weights(), net.flat_weights());
    let x = input(&spec, 2, 1);
    assert_eq!(ours(&import.model, &x), ours(&net, &x));
    // PyTorch's names and layouts: the classifier's weight is [classes, in].
    let file = files::read_state_dict(&path).unwrap();
    let head = net.graph.nodes.len() - 2;
    let w = &file.tensors[&format!("mods.{head}.linear.weight")];
    assert_eq!(
        w.shape,
        vec![10, net.graph.nodes.last().unwrap().in_channels]
    );
    assert!(file.metadata.contains_key(files::META_GRAPH));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_imported_run_directory_is_read_by_eval_predict_and_resume() {
    let spec = presets::preset("ld-v1-3-4").unwrap();
    let net = randomized(&spec, 13);
    let dir = temp("rundir");
    let path = dir.join("w.safetensors");
    std::fs::write(
        &path,
        interop::safetensors_export(&net, Some("ld-v1-3-4"), None, None).unwrap(),
    )
    .unwrap();
    let import = interop::import_file(&path, None, &Device::flex()).unwrap();
    let run = dir.join("run");
    interop::write_run(&import, &run).unwrap();
    let t = logdense::training::run::Trained::load(&run, &Device::flex()).unwrap();
    assert_eq!(t.model.flat_weights(), net.flat_weights());
    assert_eq!(t.state.epochs_done, 0);
    // A second import into the same directory is refused, naming it, and leaves no temporary.
    let e = interop::write_run(&import, &run).unwrap_err().to_string();
    assert!(e.contains("already exists") && e.contains("run"), "{e}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision")
}

#[test]
fn torchvisions_densenet_state_dict_gives_torchvisions_logits() {
    let dir = fixture_dir();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("densenet-tiny.json")).expect("the committed fixture"),
    )
    .unwrap();
    let blocks: Vec<usize> = serde_json::from_value(config["block_config"].clone()).unwrap();
    let input_shape: [usize; 3] = serde_json::from_value(config["input"].clone()).unwrap();
    assert_eq!(config["bn_size"], 4, "our bottleneck is 4 x growth");
    let spec = presets::torchvision_densenet(
        blocks,
        config["growth_rate"].as_u64().unwrap() as usize,
        config["num_init_features"].as_u64().unwrap() as usize,
        config["num_classes"].as_u64().unwrap() as usize,
        input_shape,
    );
    let device = Device::flex();
    let pth = files::read_state_dict(&dir.join("densenet-tiny.pth")).unwrap();
    assert_eq!(
        interop::detect_naming(pth.tensors.keys()),
        Naming::Torchvision
    );
    let net = SparseDenseNet::new(&spec, 0.0, &device).unwrap();
    let net = state_dict::import(net, &pth.tensors, Naming::Torchvision, &device).unwrap();
    assert_eq!(
        net.trainable_params() as u64,
        config["params"].as_u64().unwrap()
    );
    let io = files::read_state_dict(&dir.join("densenet-tiny-io.safetensors")).unwrap();
    let x = interop::read_input(&dir.join("densenet-tiny-io.safetensors"), &spec, &device).unwrap();
    let diff = relative_difference(&ours(&net, &x), &io.tensors["logits"].values);
    println!("torchvision vs logdense: largest relative difference {diff:e}");
    assert!(
        diff <= 1e-4,
        "torchvision's logits differ from ours by {diff:e} (relative)"
    );
    // The published files' older key names load too (renamed as torchvision does on load).
    assert_eq!(
        state_dict::current_torchvision_key("features.denseblock2.denselayer3.norm.1.running_var"),
        "features.denseblock2.denselayer3.norm1.running_var"
    );
    assert_eq!(
        state_dict::current_torchvision_key("features.transition1.norm.weight"),
        "features.transition1.norm.weight"
    );
    // And back: our torchvision-named export is the file's state dict.
    let back: BTreeMap<String, Array> = state_dict::export(&net, Naming::Torchvision)
        .unwrap()
        .into_iter()
        .collect();
    for (name, a) in &back {
        assert_eq!(a, &pth.tensors[name], "{name}");
    }
}

#[test]
fn the_densenet_presets_have_torchvisions_parameter_counts() {
    // torchvision.models.densenet121/169/201(): sum(p.numel() for p in m.parameters()).
    for (name, params) in [
        ("densenet-121", 7_978_856),
        ("densenet-169", 14_149_480),
        ("densenet-201", 20_013_928),
    ] {
        let spec = presets::preset(name).unwrap();
        let graph = spec.build().unwrap();
        state_dict::torchvision_compatible(&graph).unwrap();
        assert_eq!(graph.cost().total.params, params, "{name}");
    }
}

#[test]
fn a_state_dict_for_another_network_is_refused_with_the_keys_named() {
    let device = Device::flex();
    let small = presets::preset("ld-v1-3-4").unwrap();
    let other = presets::preset("ld-v1-4-4").unwrap();
    let tensors: BTreeMap<String, Array> =
        state_dict::export(&randomized(&other, 1), Naming::Reference)
            .unwrap()
            .into_iter()
            .collect();
    let net = SparseDenseNet::new(&small, 0.0, &device).unwrap();
    let e = state_dict::import(net.clone(), &tensors, Naming::Reference, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("another network")
            && e.contains("keys the network does not have")
            && e.contains("mods."),
        "{e}"
    );
    // A missing key and a mis-shaped one.
    let mut own: BTreeMap<String, Array> = state_dict::export(&net, Naming::Reference)
        .unwrap()
        .into_iter()
        .collect();
    own.remove("mods.1.bn.running_var");
    let e = state_dict::import(net.clone(), &own, Naming::Reference, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing") && e.contains("mods.1.bn.running_var"),
        "{e}"
    );
    let mut own: BTreeMap<String, Array> = state_dict::export(&net, Naming::Reference)
        .unwrap()
        .into_iter()
        .collect();
    own.get_mut("mods.0.conv.weight").unwrap().shape.reverse();
    let e = state_dict::import(net.clone(), &own, Naming::Reference, &device)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mods.0.conv.weight") && e.contains("shape"),
        "{e}"
    );
    // torchvision's names on a network torchvision does not build.
    let e = state_dict::entries(&net.graph, Naming::Torchvision)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("torchvision") && e.contains("DenseNet-BC"),
        "{e}"
    );
}

#[test]
fn files_that_are_not_state_dicts_are_refused_by_name() {
    let dir = temp("bad");
    let spec = presets::preset("ld-v1-3-4").unwrap();
    let good = interop::safetensors_export(&randomized(&spec, 2), None, None, None).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text.safetensors",
            b"hello, this is not a model".to_vec(),
            "neither a safetensors file nor a PyTorch",
        ),
        ("empty.pth", Vec::new(), "neither"),
        (
            "truncated.safetensors",
            good[..good.len() / 2].to_vec(),
            "not a valid safetensors file",
        ),
        (
            "truncated.pth",
            b"PK\x03\x04\x14\x00\x00\x00".to_vec(),
            "not a readable PyTorch file",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = files::read_state_dict(&path).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(expected), "{name}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trained_run_exports_to_onnx_with_its_logits() {
    use logdense::training::config::TaskConfig;
    use logdense::training::run::{Run, Trained};
    let dir = temp("trained");
    let mut cfg = TaskConfig::default();
    cfg.data.train_subset = Some(512);
    cfg.data.eval_subset = Some(128);
    cfg.data.workers = 0;
    cfg.optim.epochs = 1;
    cfg.optim.final_only_epochs = 0;
    let run = Run {
        dir: dir.join("run"),
        cfg,
        device: Device::flex(),
        progress: false,
        stop_after: None,
        overwrite: false,
    };
    run.train(false)
        .expect("Fashion-MNIST is installed (the README's set-up and .ci/run install it)");
    let t = Trained::load(&dir.join("run"), &Device::flex()).unwrap();
    // Trained batch-norm statistics are not the fresh 0 and 1.
    let means = state_dict::export(&t.model, Naming::Reference).unwrap();
    assert!(means
        .iter()
        .any(|(n, a)| n.ends_with("running_mean") && a.values.iter().any(|v| v.abs() > 1e-3)));
    check_onnx("trained fashion run", &t.model);
    let _ = std::fs::remove_dir_all(&dir);
}
