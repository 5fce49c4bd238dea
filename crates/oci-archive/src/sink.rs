//! The tar an archive is written as: ustar headers of regular files, written by hand so that
//! an entry is streamed after a header that already states its size, and an entry whose
//! content turns out wrong is taken back (a file is truncated to where the entry began) or,
//! where nothing can be taken back (a gzip stream, a daemon's socket), the whole archive is
//! given up.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use flate2::write::GzEncoder;

/// Where the tar goes.
pub(crate) enum Output {
    /// A file: entries can be taken back.
    File(File),
    /// A gzip stream into a file.
    Gzip(Box<GzEncoder<File>>),
    /// Any other writer (a daemon's request body).
    Stream(Box<dyn Write + Send>),
}

/// A tar being written.
pub(crate) struct TarSink {
    output: Output,
    /// Bytes of tar written so far.
    written: u64,
}

/// The block size of tar.
const BLOCK: u64 = 512;

impl TarSink {
    pub(crate) fn new(output: Output) -> Self {
        Self { output, written: 0 }
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.output {
            Output::File(file) => file,
            Output::Gzip(encoder) => encoder,
            Output::Stream(stream) => stream,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer().write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Where the next entry will begin, for [`rollback`](Self::rollback).
    pub(crate) fn mark(&self) -> u64 {
        self.written
    }

    /// Writes the header of a regular file (mode 0644, owner 0:0, time 0: the same content
    /// gives the same tar).
    pub(crate) fn begin_file(&mut self, name: &str, size: u64) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_path(name)?;
        header.set_size(size);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        self.write_all(header.as_bytes())
    }

    /// Writes a piece of the current file's content.
    pub(crate) fn data(&mut self, piece: &[u8]) -> io::Result<()> {
        self.write_all(piece)
    }

    /// Pads the current file's content to a whole block.
    pub(crate) fn end_file(&mut self) -> io::Result<()> {
        let partial = self.written % BLOCK;
        if partial != 0 {
            let padding = [0u8; BLOCK as usize];
            self.write_all(&padding[..(BLOCK - partial) as usize])?;
        }
        Ok(())
    }

    /// A whole small file.
    pub(crate) fn file(&mut self, name: &str, content: &[u8]) -> io::Result<()> {
        self.begin_file(name, content.len() as u64)?;
        self.data(content)?;
        self.end_file()
    }

    /// Takes back everything written after `mark`; false when the output cannot.
    pub(crate) fn rollback(&mut self, mark: u64) -> io::Result<bool> {
        let Output::File(file) = &mut self.output else {
            return Ok(false);
        };
        file.set_len(mark)?;
        file.seek(SeekFrom::Start(mark))?;
        self.written = mark;
        Ok(true)
    }

    /// Writes the end-of-archive blocks and flushes; returns the file, if the output is one,
    /// synced to disk.
    pub(crate) fn finish(mut self) -> io::Result<Option<File>> {
        self.write_all(&[0u8; 2 * BLOCK as usize])?;
        let file = match self.output {
            Output::File(file) => Some(file),
            Output::Gzip(encoder) => Some(encoder.finish()?),
            Output::Stream(mut stream) => {
                stream.flush()?;
                None
            }
        };
        if let Some(file) = &file {
            file.sync_all()?;
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                (name, content)
            })
            .collect()
    }

    #[test]
    fn a_taken_back_entry_leaves_no_trace() {
        let file = tempfile::tempfile().unwrap();
        let mut sink = TarSink::new(Output::File(file));
        sink.file("a", b"first").unwrap();
        let mark = sink.mark();
        sink.begin_file("b", 10).unwrap();
        sink.data(b"half").unwrap();
        assert!(sink.rollback(mark).unwrap());
        sink.file("c", b"third").unwrap();
        let mut file = sink.finish().unwrap().unwrap();
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(
            entries(&bytes),
            [
                ("a".to_owned(), b"first".to_vec()),
                ("c".to_owned(), b"third".to_vec())
            ]
        );
    }

    #[test]
    fn a_stream_cannot_take_back() {
        let mut sink = TarSink::new(Output::Stream(Box::new(Vec::new())));
        let mark = sink.mark();
        sink.file("a", b"x").unwrap();
        assert!(!sink.rollback(mark).unwrap());
    }
}
