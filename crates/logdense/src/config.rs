//! Training configuration: one TOML file (every field optional), overridden by CLI flags.
//!
//! ```toml
//! seed = 1
//! [model]
//! preset = "fashion"
//! dropout = 0.0
//! [data]
//! dataset = "fashion-mnist"
//! dir = "/usr/share/datasets/fashion-mnist"
//! [optim]
//! epochs = 20                 # an upper bound under the budget
//! batch_size = 64
//! lr_schedule = "budget-cosine"  # to 0 over the budget
//! max_train_s = 450.0            # the default budget of budget-cosine
//! ```

use anyhow::{bail, Context, Result};
use logdense_data::Augment;
use logdense_graph::{NetSpec, Pattern};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub seed: u64,
    pub model: ModelConfig,
    pub data: DataConfig,
    pub optim: OptimConfig,
}

/// The network: a preset, optionally changed field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub preset: String,
    pub dropout: f64,
    /// Run the layers through the fused CPU kernels where they apply (`--no-fused`: plain
    /// burn ops, the reference the tests hold the kernels to). `summary.json` reports whether
    /// they ran.
    pub fused: bool,
    /// The fused kernels' precision: `f32`, or `bf16` (mixed precision: bf16 operands with f32
    /// sums in the fused convolutions; weights, optimiser state and batch-norm statistics stay
    /// f32). bf16 needs AMX or AVX512-BF16; elsewhere f32 runs and a message says so.
    /// `summary.json` reports the precision that ran.
    pub precision: crate::fused::Precision,
    pub growth: Option<usize>,
    pub blocks: Option<Vec<usize>>,
    pub pattern: Option<String>,
    pub bottleneck: Option<bool>,
    pub deep_supervision: Option<bool>,
    pub stem_width: Option<usize>,
    pub hub_multiplier: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `fashion-mnist`, `mnist`, `cifar10`, `cifar100`, `svhn` or `folder` (ImageNet layout:
    /// `DIR/train/CLASS/*.jpg`, `DIR/val/CLASS/*.jpg`).
    pub dataset: String,
    /// Defaults to `/usr/share/datasets/fashion-mnist` for Fashion-MNIST.
    pub dir: Option<PathBuf>,
    /// Train / test on the first-drawn subsets of this many images (seeded).
    pub train_subset: Option<usize>,
    pub test_subset: Option<usize>,
    pub augment: Augment,
    /// Loader worker threads (0: batch on the training thread, fully reproducible order).
    pub workers: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Epochs of the main schedule.
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Fractions of the main schedule's iterations after which the rate is multiplied by `gamma`.
    pub milestones: Vec<f64>,
    pub gamma: f64,
    /// Extra epochs optimising the final prediction alone (SPEC: one, with deep supervision).
    pub final_only_epochs: usize,
    /// How the main stage's rate moves: `step` (the paper's: `gamma` at each milestone),
    /// `cosine` (to 0 over the epochs) or `budget-cosine` (to 0 over the wall-clock budget).
    pub lr_schedule: ClassSchedule,
    /// Wall-clock budget of training in seconds, counted across resumed runs (`--max-minutes`;
    /// with `budget-cosine` it defaults to [`DEFAULT_BUDGET_S`], otherwise to none). With
    /// `budget-cosine` the stages train until their share of it is spent, stopping part-way
    /// through an epoch (`epochs` and `final_only_epochs` are then upper bounds); otherwise no
    /// epoch starts that the last one's duration says would end past it.
    pub max_train_s: Option<f64>,
    /// With `budget-cosine`: the share of the budget the final-head-only stage gets.
    pub final_only_share: f64,
}

/// The main stage's learning-rate schedule of a classification run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassSchedule {
    Step,
    Cosine,
    BudgetCosine,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 1,
            model: ModelConfig::default(),
            data: DataConfig::default(),
            optim: OptimConfig::default(),
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            preset: crate::presets::DEFAULT_PRESET.into(),
            dropout: 0.0,
            fused: true,
            precision: crate::fused::Precision::F32,
            growth: None,
            blocks: None,
            pattern: None,
            bottleneck: None,
            deep_supervision: None,
            stem_width: None,
            hub_multiplier: None,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: "fashion-mnist".into(),
            dir: None,
            train_subset: None,
            test_subset: None,
            augment: Augment {
                flip: true,
                ..Augment::none()
            },
            workers: 2,
        }
    }
}

/// The largest batch size a configuration may ask for (the memory check refuses smaller ones
/// that do not fit).
pub const MAX_BATCH: usize = 1 << 20;
/// The most epochs of a stage.
pub const MAX_EPOCHS: usize = 1_000_000;
/// The most loader worker threads.
pub const MAX_WORKERS: usize = 256;

/// The checks classification and segmentation configs share: a non-negative weight decay and
/// a positive, finite budget.
pub(crate) fn check_weight_decay_and_budget(
    weight_decay: f64,
    max_train_s: Option<f64>,
) -> Result<()> {
    if !(weight_decay.is_finite() && weight_decay >= 0.0) {
        bail!("optim.weight_decay must be a non-negative number, got {weight_decay}");
    }
    if let Some(b) = max_train_s {
        if !(b.is_finite() && b > 0.0) {
            bail!(
                "optim.max_train_s (--max-minutes) must be a positive number of seconds, got {b}"
            );
        }
    }
    Ok(())
}

/// The wall-clock budget of `budget-cosine` when none is given: 7.5 minutes of training, so
/// that `logdense train` ends its training, with the last evaluation, within 8 minutes on a
/// slow 2-core machine.
pub const DEFAULT_BUDGET_S: f64 = 450.0;

impl OptimConfig {
    /// The wall-clock budget in seconds: `max_train_s`, or [`DEFAULT_BUDGET_S`] under
    /// `budget-cosine`.
    pub fn budget_s(&self) -> Option<f64> {
        self.max_train_s
            .or((self.lr_schedule == ClassSchedule::BudgetCosine).then_some(DEFAULT_BUDGET_S))
    }
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            epochs: 30,
            batch_size: 64,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            milestones: vec![0.5, 0.75],
            gamma: 0.1,
            final_only_epochs: 1,
            lr_schedule: ClassSchedule::BudgetCosine,
            max_train_s: None,
            final_only_share: 0.2,
        }
    }
}

/// Reads a TOML configuration and checks it with `validate`; errors name the file and the
/// offending field. Serves classification and segmentation configurations alike.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<()>,
) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    // A bad value is bad input wherever it came from: the CLI exits 2 as for a bad flag.
    let cfg: T = toml::from_str(&text).map_err(|e| {
        // One line: where, then what (toml's own message spans several lines with a drawing).
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        crate::error::invalid(format!(
            "invalid config {}: {at}{}",
            path.display(),
            e.message().trim()
        ))
    })?;
    validate(&cfg)
        .map_err(|e| crate::error::invalid(format!("invalid config {}: {e:#}", path.display())))?;
    Ok(cfg)
}

impl TrainConfig {
    /// Reads a TOML file; errors name the file and the offending field.
    pub fn load(path: &Path) -> Result<Self> {
        load_toml(path, Self::validate)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serialises")
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let o = &self.optim;
        if o.epochs == 0 {
            bail!("optim.epochs (--epochs) must be at least 1");
        }
        if o.batch_size == 0 {
            bail!("optim.batch_size (--batch-size) must be at least 1");
        }
        if o.batch_size > MAX_BATCH {
            bail!(
                "optim.batch_size (--batch-size) must be at most {MAX_BATCH}, got {}",
                o.batch_size
            );
        }
        if o.epochs > MAX_EPOCHS || o.final_only_epochs > MAX_EPOCHS {
            bail!(
                "optim.epochs (--epochs) and optim.final_only_epochs must be at most {MAX_EPOCHS}"
            );
        }
        if !(o.lr.is_finite() && o.lr > 0.0) {
            bail!("optim.lr (--lr) must be a positive number, got {}", o.lr);
        }
        if !(0.0..1.0).contains(&o.momentum) {
            bail!("optim.momentum must lie in [0, 1), got {}", o.momentum);
        }
        check_weight_decay_and_budget(o.weight_decay, o.max_train_s)?;
        if !(o.gamma.is_finite() && o.gamma > 0.0) {
            bail!("optim.gamma must be a positive number, got {}", o.gamma);
        }
        if self.data.workers > MAX_WORKERS {
            bail!(
                "data.workers (--workers) must be at most {MAX_WORKERS}, got {}",
                self.data.workers
            );
        }
        if self.data.train_subset == Some(0) || self.data.test_subset == Some(0) {
            bail!("data.train_subset and data.test_subset (--train-subset, --test-subset) must be at least 1");
        }
        self.data.augment.validate().map_err(anyhow::Error::msg)?;
        if !(0.0..1.0).contains(&o.final_only_share) {
            bail!(
                "optim.final_only_share must lie in [0, 1), got {}",
                o.final_only_share
            );
        }
        if o.milestones.iter().any(|m| !(0.0..=1.0).contains(m)) {
            bail!(
                "optim.milestones must be fractions in [0, 1], got {:?}",
                o.milestones
            );
        }
        if !(0.0..1.0).contains(&self.model.dropout) {
            bail!(
                "model.dropout (--dropout) must lie in [0, 1), got {}",
                self.model.dropout
            );
        }
        self.net_spec()?;
        Ok(())
    }

    /// How the network is built (dropout, fused kernels).
    pub fn net_options(&self) -> crate::network::NetOptions {
        crate::network::NetOptions {
            dropout: self.model.dropout,
            fused: self.model.fused,
        }
    }

    /// The network this config describes (before the data fixes input shape and classes).
    pub fn net_spec(&self) -> Result<NetSpec> {
        let m = &self.model;
        let mut spec = crate::presets::preset_for(&m.preset, logdense_graph::Task::Classify)
            .map_err(anyhow::Error::msg)
            .context("model.preset (--preset)")?;
        if let Some(g) = m.growth {
            spec.growth = g;
        }
        if let Some(b) = &m.blocks {
            spec.blocks = b.clone();
        }
        if let Some(p) = &m.pattern {
            let pattern: Pattern = p
                .parse()
                .map_err(anyhow::Error::msg)
                .context("model.pattern")?;
            match &mut spec.arch {
                logdense_graph::Arch::V1 { pattern: old } => *old = pattern,
                other => bail!("model.pattern applies to V1 presets only, not {other:?}"),
            }
        }
        if let Some(b) = m.bottleneck {
            spec.bottleneck = b;
        }
        if let Some(d) = m.deep_supervision {
            spec.deep_supervision = d;
        }
        if let Some(w) = m.stem_width {
            spec.stem.width = w;
        }
        if let Some(h) = m.hub_multiplier {
            spec.hub_multiplier = h;
        }
        spec.build().map_err(|e| anyhow::anyhow!("model: {e}"))?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_toml() {
        let c = TrainConfig::default();
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_default_budget_applies_to_budget_cosine_only() {
        let c = TrainConfig::default();
        assert_eq!(c.optim.lr_schedule, ClassSchedule::BudgetCosine);
        assert_eq!(c.optim.budget_s(), Some(DEFAULT_BUDGET_S));
        let step: TrainConfig = toml::from_str("[optim]\nlr_schedule = \"step\"").unwrap();
        assert_eq!(
            step.optim.budget_s(),
            None,
            "a paper schedule is not cut short"
        );
        let set: TrainConfig =
            toml::from_str("[optim]\nlr_schedule = \"step\"\nmax_train_s = 60.0").unwrap();
        assert_eq!(set.optim.budget_s(), Some(60.0));
        // The stages split the budget: the final-head-only stage takes its share at the end.
        let stages = c.stages(4);
        assert_eq!(stages.len(), 2);
        let end = DEFAULT_BUDGET_S * (1.0 - c.optim.final_only_share);
        assert_eq!(stages[0].budget, Some((0.0, end)));
        assert_eq!(stages[1].budget, Some((end, DEFAULT_BUDGET_S)));
        assert!(stages[1].final_head_only && (stages[1].lr - 1e-3).abs() < 1e-12);
        // Without auxiliary heads there is no final-only stage, and the main one takes it all.
        assert_eq!(c.stages(1)[0].budget, Some((0.0, DEFAULT_BUDGET_S)));
        let mut bad = TrainConfig::default();
        bad.optim.max_train_s = Some(f64::NAN);
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_train_s"));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = toml::from_str::<TrainConfig>("[optim]\nepochz = 3\n").unwrap_err();
        assert!(e.to_string().contains("epochz"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut c = TrainConfig::default();
        c.optim.epochs = 0;
        assert!(c.validate().unwrap_err().to_string().contains("epochs"));
        let mut c = TrainConfig::default();
        c.model.growth = Some(0);
        assert!(format!("{:#}", c.validate().unwrap_err()).contains("--g"));
    }

    #[test]
    fn precision_reads_from_toml_and_a_bad_one_is_named() {
        let c: TrainConfig = toml::from_str("[model]\nprecision = \"bf16\"\n").unwrap();
        assert_eq!(c.model.precision, crate::fused::Precision::Bf16);
        assert_eq!(
            TrainConfig::default().model.precision,
            crate::fused::Precision::F32
        );
        let e = toml::from_str::<TrainConfig>("[model]\nprecision = \"fp8\"\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("precision") && text.contains("bf16"),
            "{text}"
        );
    }
}
