//! Errors a user fixes by changing an option, a config field or the data: the CLI exits with
//! code 2 for them, as for a bad flag, whether the value came from a flag or a file.

/// Bad input: an option, a config field, data that do not fit the run, a run directory in use.
/// The message names the option, field or file to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// An [`InvalidInput`] error with this message.
pub fn invalid(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(InvalidInput(message.into()))
}

/// Whether `e` (or an error it wraps) is bad input rather than a failure.
pub fn is_invalid_input(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<InvalidInput>().is_some()
            || c.downcast_ref::<logdense_graph::SpecError>().is_some()
    })
}
