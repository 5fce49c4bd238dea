//! `hoist completions` and the hidden `hoist man`: generated from the clap definitions, so
//! they cannot drift from the command line.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::output::print_bytes;

/// `hoist completions SHELL`.
pub(crate) fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "hoist", &mut script);
    print_bytes(&script)
}

/// `hoist man`: the man page, in roff.
pub(crate) fn man() -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    print_bytes(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_lists_the_commands() {
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.starts_with(".ie"), "{}", &page[..40]);
        for command in ["copy", "inspect", "login", "serve"] {
            assert!(page.contains(command), "{command}");
        }
        assert!(page.contains("Exit status"));
    }

    #[test]
    fn completions_for_each_shell() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hoist", &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("inspect"), "{shell}");
        }
    }
}
