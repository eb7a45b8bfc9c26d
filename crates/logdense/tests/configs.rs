//! Every configuration a user is shown loads: the files under `configs/` and the README's
//! TOML examples, through the same entry point as `train --config`.

use logdense::graph::TaskKind;
use logdense::training::config::TaskConfig;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn every_file_under_configs_loads() {
    let mut loaded = 0;
    for entry in std::fs::read_dir(root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = TaskConfig::load(&path, TaskKind::Classify)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            // A file read as `segment train --config` reads the same.
            assert_eq!(cfg, TaskConfig::load(&path, TaskKind::Segment).unwrap());
            loaded += 1;
        }
    }
    assert!(loaded >= 1, "no config under configs/");
}

#[test]
fn every_toml_example_of_the_readme_loads() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty(), "the README shows no TOML example");
    for block in blocks {
        let cfg = TaskConfig::from_toml(block, TaskKind::Classify)
            .unwrap_or_else(|e| panic!("README example fails: {e:#}\n{block}"));
        // The example of every field shows the defaults it says it shows.
        if block.contains("task = \"classify\"") {
            assert_eq!(cfg, TaskConfig::defaults(TaskKind::Classify), "{block}");
        }
    }
}
