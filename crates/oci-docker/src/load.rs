//! The daemon's answer to `POST /images/load`, read as it arrives, with limits.
//!
//! Docker answers 200 and a stream of JSON messages, one per line (ended by `\r\n`): progress
//! objects (`{"status":"Loading layer","progressDetail":{..},"id":".."}`), then
//! `{"stream":"Loaded image: NAME:TAG\n"}` for each name (or `Loaded image ID: sha256:..` for
//! an image without one); a failure is a last `{"errorDetail":{"message":M},"error":M}` in the
//! same 200 answer. podman's Docker-compatible service answers one object,
//! `{"stream":"Loaded image: NAME[,NAME..]\n"}` (its own API: `{"Names":[..]}`), and reports
//! failures with HTTP 500 and `{"cause":..,"message":..,"response":500}` instead.

use oci_types::printable;
use std::collections::VecDeque;

use serde_json::Value;

use crate::{Error, Result};

/// The longest line of a streamed answer kept in memory (counting a `\r` before its `\n`).
pub(crate) const MAX_LINE: usize = 1 << 20;

/// The most names and image ids kept from one answer.
pub(crate) const MAX_LOADED: usize = 10_000;

/// The longest name or image id kept (a name is at most a few hundred bytes): with
/// [`MAX_LOADED`], what is kept stays within 40 MiB whatever the daemon answers.
pub(crate) const MAX_LOADED_NAME: usize = 4096;

/// The most other messages kept from one answer (the last ones).
pub(crate) const MAX_MESSAGES: usize = 32;

/// How much of something unreadable an error quotes.
const QUOTE: usize = 200;

/// What the daemon said it loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// The names the images were loaded as (`NAME:TAG`), as the daemon wrote them: Docker
    /// writes names as they are in the archive's `RepoTags`, in the short form
    /// (`busybox:latest`); podman writes them in full (`docker.io/library/busybox:latest`,
    /// `localhost/app:1` for a name without a registry).
    pub names: Vec<String>,
    /// The ids (`sha256:...`) of images loaded without a name, which Docker reports instead of
    /// names.
    pub image_ids: Vec<String>,
    /// The other things the daemon said (such as Docker's `The image NAME already exists,
    /// renaming the old one with ID sha256:.. to empty string`), the last few of them.
    pub messages: Vec<String>,
}

/// The reader of a load's answer: fed the answer's bytes as they come, it keeps what the
/// daemon loaded and the first error it reported.
#[derive(Debug)]
pub(crate) struct LoadAnswer {
    /// The request, for errors.
    request: String,
    /// The answer's HTTP status.
    status: u16,
    /// The start of a line whose end has not arrived yet.
    pending: Vec<u8>,
    names: Vec<String>,
    image_ids: Vec<String>,
    messages: VecDeque<String>,
    /// The first failure the daemon reported.
    error: Option<String>,
    /// How many progress messages there were (logged at the end).
    progress: u64,
}

impl LoadAnswer {
    /// A reader of the answer, with its HTTP status, to `request`.
    pub(crate) fn new(request: impl Into<String>, status: u16) -> Self {
        Self {
            request: request.into(),
            status,
            pending: Vec::new(),
            names: Vec::new(),
            image_ids: Vec::new(),
            messages: VecDeque::new(),
            error: None,
            progress: 0,
        }
    }

    /// The failure the daemon reported so far, if any, as an error.
    pub(crate) fn daemon_error(&self) -> Option<Error> {
        self.error.as_ref().map(|message| Error::Daemon {
            status: self.status,
            message: message.clone(),
        })
    }

    /// Reads the next piece of the answer.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for a line that is longer than [`MAX_LINE`] or not JSON objects, or
    /// when the daemon names more than [`MAX_LOADED`] images.
    pub(crate) fn push(&mut self, mut piece: &[u8]) -> Result<()> {
        while let Some(end) = piece.iter().position(|&b| b == b'\n') {
            self.extend_pending(&piece[..end])?;
            let line = std::mem::take(&mut self.pending);
            self.line(&line)?;
            self.pending = line;
            self.pending.clear();
            piece = &piece[end + 1..];
        }
        self.extend_pending(piece)
    }

    /// Ends the answer: what the daemon loaded, or the failure it reported.
    ///
    /// # Errors
    ///
    /// [`Error::Daemon`] with the first failure the daemon reported; [`Error::Protocol`] when
    /// the last line cannot be read.
    pub(crate) fn finish(mut self) -> Result<LoadReport> {
        let line = std::mem::take(&mut self.pending);
        self.line(&line)?;
        tracing::debug!(
            names = ?self.names,
            image_ids = ?self.image_ids,
            progress = self.progress,
            "the daemon answered the load"
        );
        if let Some(error) = self.daemon_error() {
            return Err(error);
        }
        Ok(LoadReport {
            names: self.names,
            image_ids: self.image_ids,
            messages: self.messages.into(),
        })
    }

    fn extend_pending(&mut self, bytes: &[u8]) -> Result<()> {
        if self.pending.len() + bytes.len() > MAX_LINE {
            return Err(self.protocol(format!(
                "a line of the answer is longer than {} MiB",
                MAX_LINE >> 20
            )));
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads one line: JSON objects, normally one, separated by whitespace if more.
    fn line(&mut self, line: &[u8]) -> Result<()> {
        let line = line.trim_ascii();
        for value in serde_json::Deserializer::from_slice(line).into_iter::<Value>() {
            match value {
                Ok(Value::Object(message)) => self.message(&message)?,
                Ok(_) | Err(_) => {
                    return Err(
                        self.protocol(format!("expected JSON objects, got {:?}", quote(line)))
                    );
                }
            }
        }
        Ok(())
    }

    fn message(&mut self, message: &serde_json::Map<String, Value>) -> Result<()> {
        let text = |key: &str| message.get(key).and_then(Value::as_str);
        let detail = message
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(Value::as_str);
        if let Some(error) = detail.or(text("error")).filter(|e| !e.is_empty()) {
            tracing::debug!(error, "the daemon reported a failure of the load");
            self.error.get_or_insert_with(|| printable(error));
            return Ok(());
        }
        if let Some(stream) = text("stream") {
            return self.stream(stream);
        }
        if let Some(names) = message.get("Names").and_then(Value::as_array) {
            for name in names {
                let name = name.as_str().ok_or_else(|| {
                    self.protocol(format!("a name that is not a string in {:?}", names))
                })?;
                self.loaded_name(name)?;
            }
            return Ok(());
        }
        if message.contains_key("status") || message.contains_key("progressDetail") {
            self.progress += 1;
            tracing::trace!(?message, "load progress");
            return Ok(());
        }
        tracing::debug!(
            ?message,
            "an unknown message in the daemon's answer, ignored"
        );
        Ok(())
    }

    /// A `stream` message: text meant for a terminal, one or more lines.
    fn stream(&mut self, stream: &str) -> Result<()> {
        for line in stream.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(id) = line.strip_prefix("Loaded image ID: ") {
                self.loaded_id(id.trim())?;
            } else if let Some(names) = line
                .strip_prefix("Loaded image: ")
                .or_else(|| line.strip_prefix("Loaded image(s): "))
            {
                // podman joins several names with commas, which no name contains.
                for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    self.loaded_name(name)?;
                }
            } else {
                if self.messages.len() == MAX_MESSAGES {
                    self.messages.pop_front();
                }
                self.messages.push_back(printable(line));
            }
        }
        Ok(())
    }

    fn loaded_name(&mut self, name: &str) -> Result<()> {
        self.check_kept(name)?;
        self.names.push(name.to_owned());
        Ok(())
    }

    fn loaded_id(&mut self, id: &str) -> Result<()> {
        self.check_kept(id)?;
        self.image_ids.push(id.to_owned());
        Ok(())
    }

    /// Whether `name` (a name or an image id) may be kept: within the count and its length.
    fn check_kept(&self, name: &str) -> Result<()> {
        if self.names.len() + self.image_ids.len() >= MAX_LOADED {
            return Err(self.protocol(format!("more than {MAX_LOADED} images loaded")));
        }
        if name.len() > MAX_LOADED_NAME {
            return Err(self.protocol(format!(
                "a loaded image named in {} bytes, more than {MAX_LOADED_NAME}",
                name.len()
            )));
        }
        Ok(())
    }

    fn protocol(&self, reason: String) -> Error {
        Error::Protocol {
            request: self.request.clone(),
            reason,
        }
    }
}

/// The start of `bytes` as text, for an error message.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let text = printable(&String::from_utf8_lossy(&bytes[..bytes.len().min(QUOTE)]));
    if bytes.len() > QUOTE {
        format!("{text}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "POST /v1.41/images/load";

    /// Reads `answer` in pieces of `piece` bytes (every size from 1 up gives the same result).
    fn read(status: u16, answer: &str, piece: usize) -> Result<LoadReport> {
        let mut reader = LoadAnswer::new(REQUEST, status);
        for chunk in answer.as_bytes().chunks(piece) {
            reader.push(chunk)?;
        }
        reader.finish()
    }

    /// Reads `answer` whole and byte by byte, checks both agree, returns the result.
    fn check(status: u16, answer: &str) -> Result<LoadReport> {
        let whole = read(status, answer, answer.len().max(1));
        for piece in [1, 2, 7, 64] {
            let again = read(status, answer, piece);
            assert_eq!(
                format!("{whole:?}"),
                format!("{again:?}"),
                "pieces of {piece} bytes"
            );
        }
        whole
    }

    fn report(names: &[&str], ids: &[&str], messages: &[&str]) -> LoadReport {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        LoadReport {
            names: owned(names),
            image_ids: owned(ids),
            messages: owned(messages),
        }
    }

    fn daemon_error(result: Result<LoadReport>) -> (u16, String) {
        match result {
            Err(Error::Daemon { status, message }) => (status, message),
            other => panic!("expected a daemon error, got {other:?}"),
        }
    }

    fn protocol_error(result: Result<LoadReport>) -> String {
        match result {
            Err(Error::Protocol { request, reason }) => {
                assert_eq!(request, REQUEST);
                reason
            }
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    /// Docker Engine 20.10 and 26.1 (the same bytes) loading a docker-archive of one image
    /// with one layer, recorded with curl.
    const DOCKER_LOADED: &str = concat!(
        "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":10240,\"total\":10240},\"progress\":\"[==================================================\\u003e]  10.24kB/10.24kB\",\"id\":\"3981f2ba26a5\"}\r\n",
        "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":10240,\"total\":10240},\"progress\":\"[==================================================\\u003e]  10.24kB/10.24kB\",\"id\":\"3981f2ba26a5\"}\r\n",
        "{\"stream\":\"Loaded image: hoist-test/x:1\\n\"}\r\n",
    );

    /// The same, loaded a second time: no progress.
    const DOCKER_LOADED_AGAIN: &str = "{\"stream\":\"Loaded image: hoist-test/x:1\\n\"}\r\n";

    /// Docker Engine 20.10 and 26.1 loading an archive whose layer does not match its diff_id.
    const DOCKER_BAD_DIFF_ID: &str = concat!(
        "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":10240,\"total\":10240},\"progress\":\"[==================================================\\u003e]  10.24kB/10.24kB\",\"id\":\"2d711642b726\"}\r\n",
        "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":10240,\"total\":10240},\"progress\":\"[==================================================\\u003e]  10.24kB/10.24kB\",\"id\":\"2d711642b726\"}\r\n",
        "{\"errorDetail\":{\"message\":\"invalid diffID for layer 0: expected \\\"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\\\", got \\\"sha256:e37ba8fa491b8a270480d25eac39012de5e0691cd0bdb60262716f578e6cbe1b\\\"\"},\"error\":\"invalid diffID for layer 0: expected \\\"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\\\", got \\\"sha256:e37ba8fa491b8a270480d25eac39012de5e0691cd0bdb60262716f578e6cbe1b\\\"\"}\r\n",
    );

    /// Docker Engine 20.10 given something that is not a tar.
    const DOCKER20_NOT_A_TAR: &str = "{\"errorDetail\":{\"message\":\"Error processing tar file(exit status 1): unexpected EOF\"},\"error\":\"Error processing tar file(exit status 1): unexpected EOF\"}\r\n";

    /// Docker Engine 26.1 given something that is not a tar.
    const DOCKER26_NOT_A_TAR: &str =
        "{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\r\n";

    /// podman 4.3's Docker-compatible service: one object, no line end inside the text.
    const PODMAN_LOADED: &str = "{\"stream\":\"Loaded image: localhost/hoist-test/x:1\"}\n";

    #[test]
    fn docker_success() {
        assert_eq!(
            check(200, DOCKER_LOADED).unwrap(),
            report(&["hoist-test/x:1"], &[], &[])
        );
        assert_eq!(
            check(200, DOCKER_LOADED_AGAIN).unwrap(),
            report(&["hoist-test/x:1"], &[], &[])
        );
    }

    #[test]
    fn docker_several_names_ids_and_notes() {
        let answer = concat!(
            "{\"stream\":\"The image hoist-test/x:1 already exists, renaming the old one with ID sha256:1111111111111111111111111111111111111111111111111111111111111111 to empty string\\n\"}\r\n",
            "{\"stream\":\"Loaded image: hoist-test/x:1\\n\"}\r\n",
            "{\"stream\":\"Loaded image: registry.example:5000/a/b:latest\\n\"}\r\n",
            "{\"stream\":\"Loaded image ID: sha256:2222222222222222222222222222222222222222222222222222222222222222\\n\"}\r\n",
        );
        assert_eq!(
            check(200, answer).unwrap(),
            report(
                &["hoist-test/x:1", "registry.example:5000/a/b:latest"],
                &["sha256:2222222222222222222222222222222222222222222222222222222222222222"],
                &[
                    "The image hoist-test/x:1 already exists, renaming the old one with ID sha256:1111111111111111111111111111111111111111111111111111111111111111 to empty string"
                ],
            )
        );
        // Without the final line end, and two objects on one line.
        let answer = "{\"stream\":\"Loaded image: a:1\\n\"} {\"stream\":\"Loaded image: b:2\\n\"}";
        assert_eq!(
            check(200, answer).unwrap(),
            report(&["a:1", "b:2"], &[], &[])
        );
    }

    #[test]
    fn docker_failure_is_the_last_line_of_a_200() {
        let (status, message) = daemon_error(check(200, DOCKER_BAD_DIFF_ID));
        assert_eq!(status, 200);
        assert_eq!(
            message,
            "invalid diffID for layer 0: expected \"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881\", got \"sha256:e37ba8fa491b8a270480d25eac39012de5e0691cd0bdb60262716f578e6cbe1b\""
        );
        assert_eq!(
            daemon_error(check(200, DOCKER20_NOT_A_TAR)).1,
            "Error processing tar file(exit status 1): unexpected EOF"
        );
        assert_eq!(
            daemon_error(check(200, DOCKER26_NOT_A_TAR)).1,
            "unexpected EOF"
        );
        // `error` alone, and the first failure wins over later ones.
        let answer = "{\"error\":\"first\"}\n{\"errorDetail\":{\"message\":\"second\"}}\n";
        assert_eq!(daemon_error(check(200, answer)), (200, "first".to_owned()));
        // A failure after names is still a failure.
        let answer = "{\"stream\":\"Loaded image: a:1\\n\"}\n{\"error\":\"disk full\"}\n";
        assert_eq!(
            daemon_error(check(200, answer)),
            (200, "disk full".to_owned())
        );
    }

    #[test]
    fn podman_answers() {
        assert_eq!(
            check(200, PODMAN_LOADED).unwrap(),
            report(&["localhost/hoist-test/x:1"], &[], &[])
        );
        // Several images: podman 4 joins their names with commas (and answers 500, "one or
        // more images are required", when there are none).
        let answer = "{\"stream\":\"Loaded image: localhost/a:1,docker.io/library/b:2\"}";
        assert_eq!(
            check(200, answer).unwrap(),
            report(&["localhost/a:1", "docker.io/library/b:2"], &[], &[])
        );
        // podman's own API.
        let answer = "{\"Names\":[\"localhost/a:1\",\"localhost/b:2\"]}\n";
        assert_eq!(
            check(200, answer).unwrap(),
            report(&["localhost/a:1", "localhost/b:2"], &[], &[])
        );
        let reason = protocol_error(check(200, "{\"Names\":[1]}"));
        assert!(reason.contains("not a string"), "{reason}");
    }

    #[test]
    fn empty_answers() {
        assert_eq!(check(200, "").unwrap(), LoadReport::default());
        assert_eq!(check(200, "\r\n\n  \n").unwrap(), LoadReport::default());
        assert_eq!(check(200, "{}\n").unwrap(), LoadReport::default());
    }

    #[test]
    fn unreadable_answers() {
        let reason = protocol_error(check(200, "Loaded image: a:1\n"));
        assert!(
            reason.contains("expected JSON objects, got \"Loaded image: a:1\""),
            "{reason}"
        );
        let reason = protocol_error(check(200, "{\"stream\":\"Loaded image: a:1\\n\"}\n[1]\n"));
        assert!(reason.contains("[1]"), "{reason}");
        let reason = protocol_error(check(200, "{\"stream\":\"Loaded"));
        assert!(reason.contains("expected JSON objects"), "{reason}");
    }

    #[test]
    fn a_line_over_the_limit() {
        // A line of exactly the limit is read; one byte more is refused before the line ends,
        // however it arrives.
        let padding = MAX_LINE - "{\"stream\":\"Loaded image: a:1\\n\",\"x\":\"\"}".len();
        let at_limit = format!(
            "{{\"stream\":\"Loaded image: a:1\\n\",\"x\":\"{}\"}}",
            " ".repeat(padding)
        );
        assert_eq!(at_limit.len(), MAX_LINE);
        assert_eq!(
            read(200, &format!("{at_limit}\n"), 4096).unwrap().names,
            ["a:1"]
        );
        assert_eq!(read(200, &at_limit, 4096).unwrap().names, ["a:1"]);
        let over = format!("{at_limit} ");
        for piece in [1 << 16, over.len()] {
            let reason = protocol_error(read(200, &over, piece));
            assert!(reason.contains("longer than 1 MiB"), "{reason}");
        }
        // Many lines, each under the limit, are fine: only lines are bounded.
        let progress = "{\"status\":\"Loading layer\",\"progressDetail\":{\"current\":1,\"total\":2},\"id\":\"x\"}\r\n";
        let answer = format!(
            "{}{{\"stream\":\"Loaded image: a:1\\n\"}}",
            progress.repeat(40_000)
        );
        assert_eq!(read(200, &answer, 8192).unwrap().names, ["a:1"]);
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let line = "{\"stream\":\"Loaded image: a:1\\n\"}\n";
        let reason = protocol_error(read(200, &line.repeat(MAX_LOADED + 1), 1 << 16));
        assert!(reason.contains("more than 10000 images"), "{reason}");
        assert_eq!(
            read(200, &line.repeat(MAX_LOADED), 1 << 16)
                .unwrap()
                .names
                .len(),
            MAX_LOADED
        );
        let long = format!(
            "{{\"stream\":\"Loaded image: {}:1\\n\"}}\n",
            "a".repeat(MAX_LOADED_NAME)
        );
        let reason = protocol_error(read(200, &long, 1 << 16));
        assert!(reason.contains("more than 4096"), "{reason}");
        let notes: String = (0..100)
            .map(|i| format!("{{\"stream\":\"note {i}\\n\"}}\n"))
            .collect();
        let messages = read(200, &notes, 1 << 16).unwrap().messages;
        assert_eq!(messages.len(), MAX_MESSAGES);
        assert_eq!(messages.last().map(String::as_str), Some("note 99"));
    }

    /// What the daemon says reaches the terminal without its control characters.
    #[test]
    fn daemon_text_is_printable() {
        assert_eq!(quote(b"\x1b]0;title\x07"), "\\u{1b}]0;title\\u{7}");
        let mut load = LoadAnswer::new(REQUEST, 200);
        load.push(b"{\"stream\":\"note \\u001b[31mred\\n\"}\n")
            .unwrap();
        load.push(b"{\"error\":\"bad \\u001b[2J\"}\n").unwrap();
        let error = load.daemon_error().unwrap().to_string();
        assert!(error.contains("bad \\u{1b}[2J"), "{error}");
        assert!(!error.contains('\u{1b}'), "{error}");
    }

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote(b"abc"), "abc");
        let long = quote(&[b'x'; 1000]);
        assert_eq!(long.len(), QUOTE + 3);
        assert_eq!(quote(b"\xff"), "\u{fffd}");
    }
}
