//! Progress of a copy, from the copy engine's [`CopyEvent`]s, on stderr: bars for a person at a
//! terminal, one line per blob and manifest with `-v` elsewhere (logs, CI), nothing with `-q`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_build::{BuildEvent, BuildProgress, CopyEvent, ProgressSink};
use oci_types::Digest;

use crate::output::{count, human_size};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// indicatif bars: an overall one and one per blob in flight.
    Bars,
    /// One plain line per event.
    Lines,
    /// Nothing.
    Silent,
}

impl Mode {
    /// Bars when stderr is a terminal, lines with `-v` when it is not, nothing with `-q`.
    pub(crate) fn choose(quiet: bool, verbose: u8) -> Self {
        if quiet {
            Self::Silent
        } else if std::io::stderr().is_terminal() {
            Self::Bars
        } else if verbose > 0 {
            Self::Lines
        } else {
            Self::Silent
        }
    }
}

/// The progress display of one copy.
#[derive(Debug, Clone)]
pub(crate) struct CopyProgress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    multi: MultiProgress,
    overall: ProgressBar,
    blobs: Mutex<HashMap<Digest, ProgressBar>>,
}

/// `sha256:0123456789ab`: enough of a digest to tell blobs apart on screen.
fn short(digest: &Digest) -> String {
    let encoded = digest.encoded();
    format!(
        "{}:{}",
        digest.algorithm().as_str(),
        &encoded[..encoded.len().min(12)]
    )
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>19} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

impl CopyProgress {
    pub(crate) fn new(mode: Mode) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            Mode::Lines | Mode::Silent => ProgressDrawTarget::hidden(),
        });
        let overall = multi.add(ProgressBar::new_spinner().with_message("reading manifests"));
        if mode == Mode::Bars {
            overall.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            overall.enable_steady_tick(Duration::from_millis(120));
        }
        Self {
            inner: Arc::new(Inner {
                mode,
                multi,
                overall,
                blobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The sink to hand to the copy engine; `None` when nothing is shown.
    pub(crate) fn sink(&self) -> Option<ProgressSink> {
        if self.inner.mode == Mode::Silent {
            return None;
        }
        let inner = Arc::clone(&self.inner);
        Some(Arc::new(move |event: &CopyEvent| inner.on(event)))
    }

    /// Removes the bars (before the summary is printed).
    pub(crate) fn finish(&self) {
        let blobs = std::mem::take(
            &mut *self
                .inner
                .blobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for bar in blobs.into_values() {
            bar.finish_and_clear();
        }
        self.inner.overall.finish_and_clear();
        let _ = self.inner.multi.clear();
    }
}

impl Inner {
    fn on(&self, event: &CopyEvent) {
        match self.mode {
            Mode::Bars => self.bars(event),
            Mode::Lines => {
                if let Some(line) = line_for(event) {
                    eprintln!("{line}");
                }
            }
            Mode::Silent => {}
        }
    }

    fn bars(&self, event: &CopyEvent) {
        match event {
            CopyEvent::Planned { bytes, .. } => {
                self.overall.disable_steady_tick();
                self.overall.set_style(bar_style());
                self.overall.set_prefix("total");
                self.overall.set_length(*bytes);
                self.overall.set_position(0);
                self.overall.reset_eta();
            }
            CopyEvent::BlobStarted { digest, size } => {
                let bar = self.multi.add(
                    ProgressBar::new(*size)
                        .with_style(bar_style())
                        .with_prefix(short(digest)),
                );
                self.blobs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(digest.clone(), bar);
            }
            CopyEvent::BlobProgress { digest, bytes } => {
                self.overall.inc(*bytes);
                if let Some(bar) = self
                    .blobs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(digest)
                {
                    bar.inc(*bytes);
                }
            }
            CopyEvent::BlobDone { digest, .. } => {
                let bar = self
                    .blobs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(digest);
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
            // Not transferred: out of the total, so that rate and ETA describe the transfer.
            CopyEvent::BlobSkipped { size, .. } | CopyEvent::BlobMounted { size, .. } => {
                self.overall.dec_length(*size);
            }
            _ => {}
        }
    }
}

/// The progress display of a build or mutation: one bar for the layer being made (compressed
/// bytes stored, rate) at a terminal, a line per layer with `-v` elsewhere.
#[derive(Debug, Clone)]
pub(crate) struct BuildProgressView {
    mode: Mode,
    bar: ProgressBar,
}

impl BuildProgressView {
    pub(crate) fn new(mode: Mode, what: &str) -> Self {
        let bar = ProgressBar::with_draw_target(
            None,
            match mode {
                Mode::Bars => ProgressDrawTarget::stderr(),
                Mode::Lines | Mode::Silent => ProgressDrawTarget::hidden(),
            },
        );
        if mode == Mode::Bars {
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes:>10} {bytes_per_sec:>12}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Self { mode, bar }
    }

    /// The sink to hand to the builder; `None` when nothing is shown.
    pub(crate) fn sink(&self) -> Option<BuildProgress> {
        if self.mode == Mode::Silent {
            return None;
        }
        let view = self.clone();
        Some(Arc::new(move |event: &BuildEvent| view.show(event)))
    }

    /// Shows one event (unpacking reports its layers through this view too).
    pub(crate) fn show(&self, event: &BuildEvent) {
        match (self.mode, event) {
            (Mode::Bars, BuildEvent::LayerStarted { index, count }) => {
                self.bar.set_position(0);
                self.bar.set_message(format!("layer {}/{count}", index + 1));
            }
            (Mode::Bars, BuildEvent::LayerProgress { bytes, .. }) => self.bar.inc(*bytes),
            (Mode::Lines, BuildEvent::LayerDone { index, descriptor }) => eprintln!(
                "layer {}: {} done, {}",
                index + 1,
                descriptor.digest,
                human_size(descriptor.size)
            ),
            _ => {}
        }
    }

    /// Removes the bar (before the summary is printed).
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The line `-v` prints for an event off a terminal (none for byte counts).
fn line_for(event: &CopyEvent) -> Option<String> {
    Some(match event {
        CopyEvent::Planned { blobs, bytes } => format!(
            "planned: {} ({})",
            count(*blobs, "blob", "blobs"),
            human_size(*bytes)
        ),
        CopyEvent::BlobStarted { digest, size } => {
            format!("blob {digest}: copying {}", human_size(*size))
        }
        CopyEvent::BlobDone { digest, size } => {
            format!("blob {digest}: copied {}", human_size(*size))
        }
        CopyEvent::BlobSkipped { digest, .. } => format!("blob {digest}: already there"),
        CopyEvent::BlobMounted { digest, .. } => format!("blob {digest}: mounted"),
        CopyEvent::ManifestPushed { digest, tags } if tags.is_empty() => {
            format!("manifest {digest}: pushed")
        }
        CopyEvent::ManifestPushed { digest, tags } => format!(
            "manifest {digest}: pushed, tagged {}",
            tags.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        CopyEvent::ManifestSkipped { digest } => format!("manifest {digest}: already there"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use oci_types::Tag;

    use super::*;

    #[test]
    fn lines_name_the_blob_and_what_happened() {
        let digest = Digest::sha256(b"layer");
        assert_eq!(
            line_for(&CopyEvent::BlobDone {
                digest: digest.clone(),
                size: 2048
            })
            .unwrap(),
            format!("blob {digest}: copied 2.0 KiB")
        );
        assert_eq!(
            line_for(&CopyEvent::ManifestPushed {
                digest: digest.clone(),
                tags: vec![Tag::parse("v1").unwrap(), Tag::latest()]
            })
            .unwrap(),
            format!("manifest {digest}: pushed, tagged v1, latest")
        );
        assert!(
            line_for(&CopyEvent::BlobProgress {
                digest: digest.clone(),
                bytes: 1
            })
            .is_none()
        );
        assert_eq!(short(&digest).len(), "sha256:".len() + 12);
    }

    #[test]
    fn silent_progress_has_no_sink() {
        assert!(CopyProgress::new(Mode::Silent).sink().is_none());
        assert!(CopyProgress::new(Mode::Lines).sink().is_some());
        assert_eq!(Mode::choose(true, 3), Mode::Silent);
    }
}
