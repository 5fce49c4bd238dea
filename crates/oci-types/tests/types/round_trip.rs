//! `FromStr` then `Display` gives the same text, for every textual type: a table of valid inputs
//! per type, and names generated from the distribution-spec grammar (property style, with a
//! fixed seed so that a failure always reproduces).

use std::fmt::Display;
use std::str::FromStr;

use oci_types::{Digest, MediaType, Platform, Reference, Repository, Tag, media_type};

#[track_caller]
fn check<T>(input: &str)
where
    T: FromStr<Err = oci_types::Error> + Display + PartialEq + std::fmt::Debug,
{
    let parsed: T = input
        .parse()
        .unwrap_or_else(|e| panic!("{input:?} does not parse: {e}"));
    let text = parsed.to_string();
    assert_eq!(text, input);
    assert_eq!(text.parse::<T>().unwrap(), parsed);
}

#[test]
fn tables() {
    for input in [
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    ] {
        check::<Digest>(input);
    }
    for input in [
        "a",
        "0",
        "library/ubuntu",
        "a.b_c__d---e/f",
        "x/y/z/w",
        &"r".repeat(255),
    ] {
        check::<Repository>(input);
    }
    for input in [
        "latest",
        "v1.2.3",
        "_x",
        "22.04",
        "A-b_C.d",
        &"t".repeat(128),
    ] {
        check::<Tag>(input);
    }
    let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    for input in [
        "docker.io/library/ubuntu:latest",
        "docker.io/user/repo:v1",
        "ghcr.io/org/app:1.2",
        &format!("ghcr.io/org/app@{d}"),
        &format!("ghcr.io/org/app:1.2@{d}"),
        "localhost/x:latest",
        "localhost:5000/a/b:t",
        "[::1]:5000/x:latest",
        "[::1]/x:t",
        "127.0.0.1:5000/x:latest",
        "example.com:443/x:latest",
    ] {
        check::<Reference>(input);
    }
    for input in [
        media_type::OCI_MANIFEST,
        media_type::OCI_INDEX,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_SCHEMA1_SIGNED,
        "application/vnd.example+type",
        "text/plain; charset=utf-8",
        "text/plain ; charset=utf-8",
        "a/b;",
    ] {
        check::<MediaType>(input);
    }
    for input in [
        "linux/amd64",
        "linux/arm/v7",
        "linux/arm64/v8",
        "windows/amd64",
        "darwin/arm64",
        "linux/x86_64",
        "linux/386",
        "freebsd/riscv64",
    ] {
        check::<Platform>(input);
    }
}

/// A tiny deterministic generator (xorshift64*), so that the crate needs no `rand`.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick(&mut self, from: &str) -> char {
        let chars: Vec<char> = from.chars().collect();
        chars[self.below(chars.len())]
    }

    fn alnum_run(&mut self, alphabet: &str) -> String {
        (0..1 + self.below(4))
            .map(|_| self.pick(alphabet))
            .collect()
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    fn component(&mut self) -> String {
        const ALNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = self.alnum_run(ALNUM);
        for _ in 0..self.below(4) {
            match self.below(4) {
                0 => out.push('.'),
                1 => out.push('_'),
                2 => out.push_str("__"),
                _ => out.push_str(&"-".repeat(1 + self.below(3))),
            }
            out.push_str(&self.alnum_run(ALNUM));
        }
        out
    }

    fn repository(&mut self) -> String {
        (0..1 + self.below(4))
            .map(|_| self.component())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
    fn tag(&mut self) -> String {
        const FIRST: &str = "abcXYZ019_";
        const REST: &str = "abcXYZ019_.-";
        let len = self.below(128);
        std::iter::once(self.pick(FIRST))
            .chain((0..len).map(|_| self.pick(REST)))
            .collect()
    }

    fn registry(&mut self) -> String {
        let host = match self.below(4) {
            0 => "localhost".to_owned(),
            1 => format!("{}.example.com", self.alnum_run("abc123")),
            2 => format!("10.0.{}.{}", self.below(256), self.below(256)),
            _ => "[::1]".to_owned(),
        };
        match self.below(2) {
            0 => host,
            _ => format!("{host}:{}", 1 + self.below(65535)),
        }
    }
}

#[test]
fn generated() {
    let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let repository = generator.repository();
        if repository.len() <= oci_types::MAX_REPOSITORY_LEN {
            check::<Repository>(&repository);
        }
        let tag = generator.tag();
        check::<Tag>(&tag);

        let data = generator.next().to_le_bytes();
        let digest = Digest::sha256(&data);
        check::<Digest>(digest.as_str());

        let registry = generator.registry();
        let reference = match generator.below(3) {
            0 => format!("{registry}/{repository}:{tag}"),
            1 => format!("{registry}/{repository}@{digest}"),
            _ => format!("{registry}/{repository}:{tag}@{digest}"),
        };
        if registry.len() + 1 + repository.len() <= oci_types::MAX_REPOSITORY_LEN {
            check::<Reference>(&reference);
        }
    }
}
