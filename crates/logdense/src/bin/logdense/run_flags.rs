//! The flags every training command shares (`train`, `segment train`), and where such a
//! command's configuration and run directory come from.

use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(crate) struct RunFlags {
    /// TOML configuration (see README); the other flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run directory (default: under runs/, named after the preset).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["config", "preset", "out", "overwrite"])]
    pub resume: Option<PathBuf>,
    /// Replace the run the --out directory already holds (without it, such a directory is
    /// refused unless resumed).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long)]
    pub seed: Option<u64>,
    /// The fused kernels' precision, f32 or bf16 (`model.precision`): bf16 operands with f32
    /// sums where the CPU has AMX or AVX512-BF16, else f32 with a message.
    #[arg(long)]
    pub precision: Option<logdense::fused::Precision>,
    /// Loader worker threads.
    #[arg(long)]
    pub workers: Option<usize>,
    /// cpu (burn flex) or vulkan (with the vulkan feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// How a configuration type is found on disk and named after its preset.
pub(crate) struct RunKind<C> {
    /// The configuration file a run directory holds.
    pub config_file: &'static str,
    /// What a run directory of this kind is called in errors ("a run directory").
    pub what: &'static str,
    pub load: fn(&Path) -> Result<C>,
    pub preset: fn(&mut C) -> &mut String,
    /// The run directory when `--out` is not given.
    pub default_dir: fn(&C) -> PathBuf,
}

impl RunFlags {
    /// The configuration, run directory and whether to resume: the resumed run's own
    /// configuration, or the `--config` file (or the defaults) with `--preset`, in `--out`.
    pub(crate) fn start<C: Default>(
        &self,
        preset: Option<&String>,
        kind: RunKind<C>,
    ) -> Result<(C, PathBuf, bool)> {
        if let Some(dir) = &self.resume {
            let cfg = (kind.load)(&dir.join(kind.config_file))
                .with_context(|| format!("--resume: {} is not {}", dir.display(), kind.what))?;
            return Ok((cfg, dir.clone(), true));
        }
        let mut cfg = match &self.config {
            Some(p) => (kind.load)(p)?,
            None => C::default(),
        };
        if let Some(p) = preset {
            *(kind.preset)(&mut cfg) = p.clone();
        }
        let dir = self.out.clone().unwrap_or_else(|| (kind.default_dir)(&cfg));
        Ok((cfg, dir, false))
    }
}
