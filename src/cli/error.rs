//! A subcommand's failure, [`CliError`]: a message and the error that caused it. `main`
//! prints it as `error: ` and the whole cause chain on one line, each cause once
//! ([`chain`]); a closed stdout and a run stopped by a signal are told apart here.

use std::error::Error;
use std::fmt;
use std::io;

/// A failure of a subcommand: a message and the error that caused it, if any.
#[derive(Debug)]
pub struct CliError {
    message: String,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl CliError {
    /// A failure described by `message` alone.
    pub fn message(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// A failure described by `message`, caused by `source`.
    pub fn context(message: impl Into<String>, source: impl Error + Send + Sync + 'static) -> Self {
        Self { message: message.into(), source: Some(Box::new(source)) }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for CliError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl CliError {
    /// `error` as the failure itself: its message first, its own causes after.
    fn of(error: &(dyn Error + 'static)) -> Self {
        Self { message: error.to_string(), source: error.source().map(|s| Box::new(ChainLink::of(s)) as _) }
    }
}

/// The data error names file and record itself.
impl From<loupe::data::DataError> for CliError {
    fn from(error: loupe::data::DataError) -> Self {
        Self::of(&error)
    }
}

/// The import error says which step failed.
impl From<loupe::jobs::ImportError> for CliError {
    fn from(error: loupe::jobs::ImportError) -> Self {
        Self::of(&error)
    }
}

/// A cause chain copied into owned strings (the original sources borrow the error).
#[derive(Debug)]
struct ChainLink {
    message: String,
    next: Option<Box<ChainLink>>,
}

impl ChainLink {
    fn of(error: &(dyn Error + 'static)) -> Self {
        Self { message: error.to_string(), next: error.source().map(|s| Box::new(ChainLink::of(s))) }
    }
}

impl fmt::Display for ChainLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ChainLink {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.next.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// `error` and its causes joined by `: `.
pub(super) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

pub(super) fn is_broken_pipe(error: &CliError) -> bool {
    error
        .source
        .as_deref()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// Whether `error` is a training run stopped by a signal after writing its checkpoint.
pub(super) fn is_interrupted(error: &CliError) -> bool {
    error
        .source
        .as_deref()
        .and_then(|s| s.downcast_ref::<loupe::train::run::RunError>())
        .is_some_and(|e| matches!(e, loupe::train::run::RunError::Interrupted { .. }))
}
