//! Connection patterns as files: a designed pattern (`logdense design --out pattern.json`)
//! written once and used like a built-in pattern by every command that takes `--pattern`
//! (`--pattern-file`), by the config's `model.pattern_file`, the cost model, the MBD analysis,
//! the networks and the fused kernels.
//!
//! The file is JSON: the layers `L`, the input sets `sets[i]` of layers `0..=L` over global
//! indices, and how they were found (the [`Design`] fields). Loading checks what a network
//! needs of it (every layer reads at least one earlier layer, each once, in order) and that
//! its stated MBD and connection count are those of its sets; errors name the file and the
//! layer.

use crate::design::Design;
use crate::distance::summarize_sets;
use crate::pattern::connection_count;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `format` tag of pattern files.
pub const FORMAT: &str = "logdense-pattern/1";

/// The fields of a pattern file.
const FIELDS: [&str; 11] = [
    "format",
    "layers",
    "max_inputs",
    "sets",
    "mbd",
    "connections",
    "method",
    "proven_optimal",
    "lower_bound",
    "search_nodes",
    "budget",
];

/// Largest pattern file read (bytes): a 20,000-layer dense pattern stays well below it.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// A pattern file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// The design: layers, input sets, MBD, connections and how they were found.
    #[serde(flatten)]
    pub design: Design,
}

/// Checks input sets for `layers` feature layers: `layers + 1` sets, layer 0 reading nothing,
/// every other layer reading at least one layer, each earlier than itself, ascending and once.
/// The message names the layer at fault.
pub fn check_sets(sets: &[Vec<usize>], layers: usize) -> Result<(), String> {
    if sets.len() != layers + 1 {
        return Err(format!(
            "{} input sets for a network of {layers} layers (one per layer 0..={layers} is needed)",
            sets.len()
        ));
    }
    if !sets[0].is_empty() {
        return Err("layer 0 (the stem's output) cannot read other layers".into());
    }
    for (i, set) in sets.iter().enumerate().skip(1) {
        if set.is_empty() {
            return Err(format!("layer {i} reads no layer"));
        }
        if let Some(&j) = set.iter().find(|&&j| j >= i) {
            return Err(format!(
                "layer {i} reads layer {j}, which is not an earlier layer"
            ));
        }
        if set.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "layer {i}'s inputs {set:?} are not in ascending order without repeats"
            ));
        }
    }
    Ok(())
}

impl PatternFile {
    /// A file for a design.
    pub fn new(design: Design) -> Self {
        PatternFile {
            format: FORMAT.into(),
            design,
        }
    }

    /// Parses and checks a pattern file's text; `name` is how errors refer to it.
    pub fn parse(text: &str, name: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("pattern file {name}: {e}"))?;
        // serde cannot refuse unknown fields beside a flattened struct: they are checked here.
        if let Some(key) = value
            .as_object()
            .and_then(|o| o.keys().find(|k| !FIELDS.contains(&k.as_str())))
        {
            return Err(format!(
                "pattern file {name}: unknown field '{key}' (known: {})",
                FIELDS.join(", ")
            ));
        }
        let file: PatternFile =
            serde_json::from_value(value).map_err(|e| format!("pattern file {name}: {e}"))?;
        file.check()
            .map_err(|e| format!("pattern file {name}: {e}"))?;
        Ok(file)
    }

    /// Reads and checks a pattern file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let name = path.display().to_string();
        let len = std::fs::metadata(path)
            .map_err(|e| format!("pattern file {name}: {e}"))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(format!(
                "pattern file {name}: {len} bytes, more than the {MAX_FILE_BYTES} a pattern needs"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("pattern file {name}: {e}"))?;
        Self::parse(&text, &name)
    }

    /// The checks of [`PatternFile::parse`]: format, sets and the stated figures.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format '{}' is not '{FORMAT}'", self.format));
        }
        let d = &self.design;
        if d.layers == 0 || d.layers > crate::MAX_LAYERS {
            return Err(format!(
                "layers must lie in 1..={}, got {}",
                crate::MAX_LAYERS,
                d.layers
            ));
        }
        check_sets(&d.sets, d.layers)?;
        if let Some((i, s)) = d
            .sets
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() > d.max_inputs)
        {
            return Err(format!(
                "layer {i} reads {} layers, more than max_inputs = {}",
                s.len(),
                d.max_inputs
            ));
        }
        let connections = connection_count(&d.sets);
        if connections != d.connections {
            return Err(format!(
                "the sets hold {connections} connections, the file says {}",
                d.connections
            ));
        }
        let summary = summarize_sets(&d.sets).map_err(|e| e.to_string())?;
        if summary.mbd != d.mbd {
            return Err(format!(
                "the sets' MBD is {}, the file says {}",
                summary.mbd, d.mbd
            ));
        }
        Ok(())
    }

    /// The file as JSON, one layer's inputs per line.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a pattern file always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PatternFile {
        PatternFile::new(crate::design::design(12, 3, 12).unwrap())
    }

    #[test]
    fn a_design_round_trips_through_its_file() {
        let f = sample();
        assert_eq!(PatternFile::parse(&f.to_json(), "p.json").unwrap(), f);
    }

    #[test]
    fn broken_files_name_the_file_and_the_layer() {
        let f = sample();
        let bad = |edit: &dyn Fn(&mut PatternFile), needle: &str| {
            let mut g = f.clone();
            edit(&mut g);
            let e = PatternFile::parse(&g.to_json(), "p.json").unwrap_err();
            assert!(
                e.starts_with("pattern file p.json: ") && e.contains(needle),
                "{e}"
            );
        };
        bad(&|g| g.design.sets[5] = vec![2, 7], "layer 5 reads layer 7");
        bad(&|g| g.design.sets[5] = vec![5], "layer 5 reads layer 5");
        bad(&|g| g.design.sets[4] = vec![], "layer 4 reads no layer");
        bad(&|g| g.design.sets[6] = vec![3, 1], "layer 6's inputs");
        bad(&|g| g.design.sets[6] = vec![1, 1], "layer 6's inputs");
        bad(
            &|g| {
                g.design.sets.pop();
            },
            "12 input sets for a network of 12 layers",
        );
        bad(&|g| g.design.mbd += 1, "MBD");
        bad(&|g| g.design.connections += 1, "connections");
        bad(&|g| g.format = "x".into(), "format");
        bad(
            &|g| g.design.sets[9] = vec![0, 1, 2, 8],
            "more than max_inputs",
        );
        let e = PatternFile::parse("{", "p.json").unwrap_err();
        assert!(e.starts_with("pattern file p.json: "), "{e}");
        let e = PatternFile::parse(&f.to_json().replacen("{", "{\"extra\": 1,", 1), "p.json")
            .unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }
}
