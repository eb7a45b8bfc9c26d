//! What a run needs against what the machine has, checked before any work starts: a run the
//! cost model says cannot fit in memory is refused with the figures and the option to change.

use crate::error::invalid;
use anyhow::Result;
use logdense_graph::NetSpec;

/// Memory available to a new process (`MemAvailable` in `/proc/meminfo`), in bytes; `None`
/// where the kernel does not say.
pub fn available_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// A lower bound on the memory a training step of `spec` at `batch` needs, in bytes: the
/// layer outputs every implementation keeps for the backward pass (the cost model's shared
/// activation memory per image) times the batch, plus weights, gradients and one optimiser
/// slot (3 x 4 bytes per parameter). `None` if it overflows 64 bits.
pub fn training_bytes_lower_bound(spec: &NetSpec, batch: usize) -> Option<u64> {
    let c = spec.build().ok()?.try_cost()?.total;
    c.activation_bytes_shared
        .checked_mul(batch as u64)?
        .checked_add(c.params.checked_mul(12)?)
}

/// Refuses a training run whose lower bound exceeds the memory available; `option` names the
/// batch size's option (e.g. `optim.batch_size (--batch-size)`).
pub fn check_training_fits(spec: &NetSpec, batch: usize, option: &str) -> Result<()> {
    let Some(available) = available_memory_bytes() else {
        return Ok(());
    };
    check_against(spec, batch, option, available)
}

/// [`check_training_fits`] against a given amount of memory.
pub fn check_against(spec: &NetSpec, batch: usize, option: &str, available: u64) -> Result<()> {
    let need = training_bytes_lower_bound(spec, batch);
    if need.is_some_and(|n| n <= available) {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let need = need.map_or_else(
        || "more than 2^64 bytes".into(),
        |n| format!("{:.1} GiB", gib(n)),
    );
    let [c, h, w] = spec.input;
    Err(invalid(format!(
        "{option}: a training step at batch {batch} of {c}x{h}x{w} images needs at least {need} \
         (the cost model's activations per image times the batch, plus weights, gradients and \
         optimiser state), and {:.1} GiB are available; use a smaller batch",
        gib(available)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_cannot_fit_is_refused_with_the_figures() {
        let spec = crate::model::presets::preset("fashion").unwrap();
        // The fashion network keeps well under a megabyte per image.
        check_against(&spec, 64, "optim.batch_size (--batch-size)", 1 << 30).unwrap();
        let e = check_against(
            &spec,
            1_000_000_000,
            "optim.batch_size (--batch-size)",
            24 << 30,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("optim.batch_size (--batch-size): a training step at batch 1000000000"),
            "{e}"
        );
        assert!(
            e.contains("GiB") && e.contains("24.0 GiB are available"),
            "{e}"
        );
        let e = check_against(&spec, usize::MAX, "--batch", 24 << 30).unwrap_err();
        assert!(e.to_string().contains("2^64"), "{e}");
        assert!(crate::error::is_invalid_input(&e));
    }
}
