//! One module per command (or per family of commands sharing their code).

pub(crate) mod artifact;
pub(crate) mod blob;
pub(crate) mod build;
pub(crate) mod copy;
pub(crate) mod generate;
pub(crate) mod index;
pub(crate) mod inspect;
pub(crate) mod layout;
pub(crate) mod list;
pub(crate) mod login;
pub(crate) mod manifest;
pub(crate) mod serve;
pub(crate) mod sync;
pub(crate) mod tag;
pub(crate) mod unpack;

use crate::open::Opener;
use crate::progress;

/// What every command gets: the global flags and the store opener.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// `-q`: no progress, no summaries.
    pub(crate) quiet: bool,
    /// `-v` count.
    pub(crate) verbose: u8,
    /// Opens the locations the user named.
    pub(crate) opener: Opener,
}

impl Ctx {
    /// Tells the person running hoist what happened, on stderr, unless `-q`.
    pub(crate) fn say(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Reports a failure that does not stop the command (one tag of many), on stderr, even
    /// with `-q`; what a registry said in it is shown without its control characters.
    pub(crate) fn warn(&self, message: impl std::fmt::Display) {
        eprintln!("hoist: {}", oci_types::printable(&message.to_string()));
    }

    /// How copies show their progress.
    pub(crate) fn progress_mode(&self) -> progress::Mode {
        progress::Mode::choose(self.quiet, self.verbose)
    }
}
