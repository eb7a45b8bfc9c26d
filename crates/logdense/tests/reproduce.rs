//! `logdense reproduce` across machines: two shards of one plan train into one directory (as
//! two machines of a job array would), a killed shard's rerun skips what finished, and the
//! report merges every finished run into runs.csv and table.md.

use burn::prelude::*;
use logdense::experiments::reproduce::{self, Experiment, Options};

#[test]
fn two_shards_into_one_directory_merge_into_the_table() {
    let out = std::env::temp_dir().join(format!("logdense-repro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = Options {
        quick: true,
        medium: false,
        dataset: "fashion-mnist".into(),
        data: None,
        seeds: 1,
        epochs: Some(1),
        subset: Some(128),
        test_subset: Some(64),
        workers: 0,
        out: out.clone(),
    };
    let plan = reproduce::plan(Experiment::Table1, &opts).unwrap();
    assert_eq!(plan.len(), 4);
    let device = Device::flex();
    let first = reproduce::shard(plan.clone(), 1, 2).unwrap();
    let second = reproduce::shard(plan.clone(), 2, 2).unwrap();
    assert_eq!(
        reproduce::execute(&first, &opts, &device, false).unwrap(),
        2
    );
    // Before the second shard has run, the report holds the first shard's runs.
    assert_eq!(
        reproduce::report(&out, Experiment::Table1).unwrap().len(),
        2
    );
    assert_eq!(
        reproduce::execute(&second, &opts, &device, false).unwrap(),
        2
    );
    // A rerun of a shard skips its finished runs.
    assert_eq!(
        reproduce::execute(&first, &opts, &device, false).unwrap(),
        0
    );
    let rows = reproduce::report(&out, Experiment::Table1).unwrap();
    assert_eq!(rows.len(), 4);
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    for l in ["LD", "N", "E", "LD2"] {
        assert!(labels.contains(&l), "{labels:?}");
    }
    assert!(rows
        .iter()
        .all(|r| (0.0..=100.0).contains(&r.final_test_error) && r.epochs == 2));
    let csv = std::fs::read_to_string(out.join("table1/runs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    let table = std::fs::read_to_string(out.join("table1/table.md")).unwrap();
    assert!(
        table.contains("| (24, 4) |") && table.contains("MBD 8"),
        "{table}"
    );
    // One seed per column: every claim of Table 1 gets an outcome.
    assert_eq!(
        table.matches("| (24, 4) | ").count(),
        1 + Experiment::Table1.claims().len(),
        "{table}"
    );
    for plot in [
        "error_vs_gflops.png",
        "error_vs_params.png",
        "error_vs_mbd.png",
        "curves.png",
    ] {
        let bytes = std::fs::read(out.join("table1").join(plot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{plot} is not a PNG");
    }
    // Fig. 8's LD column is Table 1's LD run (same config): it is copied, not trained again.
    let fig8 = reproduce::plan(Experiment::Fig8, &opts).unwrap();
    assert_eq!(fig8.len(), 4);
    assert_eq!(reproduce::execute(&fig8, &opts, &device, false).unwrap(), 3);
    let ld = fig8.iter().find(|r| r.cell.label == "LD").unwrap();
    let plan: reproduce::PlannedRun =
        serde_json::from_slice(&std::fs::read(ld.dir.join("plan.json")).unwrap()).unwrap();
    assert_eq!(
        plan.reused_from.as_deref(),
        Some(out.join("table1/ld-n24-g4-s1").as_path())
    );
    for file in ["metrics.json", "summary.json", "checkpoint.ldck"] {
        assert_eq!(
            std::fs::read(ld.dir.join(file)).unwrap(),
            std::fs::read(out.join("table1/ld-n24-g4-s1").join(file)).unwrap(),
            "{file}"
        );
    }
    let rows = reproduce::report(&out, Experiment::Fig8).unwrap();
    assert_eq!(rows.len(), 4);
    std::fs::remove_dir_all(&out).unwrap();
}
