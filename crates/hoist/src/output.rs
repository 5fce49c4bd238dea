//! Writing machine output to stdout (a closed pipe is not a failure) and formatting for people.

use std::io::Write;

use anyhow::{Context, Result};

use crate::exit::StdoutClosed;

/// Turns a write error on stdout into [`StdoutClosed`] when the reader went away.
fn stdout_error(error: std::io::Error) -> anyhow::Error {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        anyhow::Error::new(StdoutClosed)
    } else {
        anyhow::Error::new(error).context("cannot write to stdout")
    }
}

/// Writes bytes to stdout exactly as they are.
pub(crate) fn print_bytes(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).map_err(stdout_error)?;
    stdout.flush().map_err(stdout_error)
}

/// Writes one line to stdout.
pub(crate) fn print_line(line: impl std::fmt::Display) -> Result<()> {
    print_bytes(format!("{line}\n").as_bytes())
}

/// Writes a JSON value to stdout, pretty-printed, with a final newline.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot render JSON")?;
    text.push('\n');
    print_bytes(text.as_bytes())
}

/// An async writer's error on stdout, as [`print_bytes`] reports it.
pub(crate) fn async_stdout_error(error: std::io::Error) -> anyhow::Error {
    stdout_error(error)
}

/// A size for people: bytes below 1 KiB, else one decimal in binary units (`3.4 MiB`).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `n thing` or `n things`.
pub(crate) fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        for (bytes, text) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (3_623_807, "3.5 MiB"),
            (5 << 30, "5.0 GiB"),
        ] {
            assert_eq!(human_size(bytes), text, "{bytes}");
        }
        assert_eq!(count(1, "blob", "blobs"), "1 blob");
        assert_eq!(count(0, "blob", "blobs"), "0 blobs");
    }
}
