//! Errors for bad network descriptions and analysis requests.

use thiserror::Error;

/// A network description or analysis request that cannot be honoured. `field` names the
/// option (as the command line spells it) so that the user knows what to change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    /// An option has a value the network or analysis cannot use.
    #[error("--{field}: {message}")]
    Invalid {
        /// The option at fault, without its leading `--`.
        field: &'static str,
        /// What is wrong with the value and what is accepted.
        message: String,
    },
}

impl SpecError {
    /// The option at fault.
    pub fn field(&self) -> &'static str {
        match self {
            SpecError::Invalid { field, .. } => field,
        }
    }
}
