//! Image platforms (`linux/arm64/v8`): parsing, containerd-style normalisation, and matching a
//! wanted platform against the platforms of an index's manifests.
//!
//! Normalisation and matching follow containerd's `platforms` package, so that hoist picks the
//! same manifest from an index as `ctr`, `nerdctl` and Docker do, with one deliberate difference:
//! hoist spells 64-bit ARM's baseline variant out (`linux/arm64/v8`) where containerd leaves it
//! empty.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// An image's platform (image-spec "platform" object).
///
/// The fields hold what was written, which may be an alias such as `x86_64` or `aarch64`;
/// [`Platform::normalized`] gives the canonical form, and [`PlatformMatcher`] compares platforms
/// in that form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct Platform {
    /// The CPU architecture, as a `GOARCH` value such as `amd64` or `arm64`.
    pub architecture: String,
    /// The operating system, as a `GOOS` value such as `linux` or `windows`.
    pub os: String,
    /// The operating system's version, such as `10.0.17763.5329` on Windows.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// The operating system features the image needs, such as `win32k`.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// The variant of the CPU architecture, such as `v7` for `arm` or `v3` for `amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Reserved by the image-spec for future use; kept so that a platform survives a round trip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

impl Platform {
    /// Makes a platform from an operating system and an architecture, with no variant or version.
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Self {
            architecture: architecture.into(),
            os: os.into(),
            os_version: None,
            os_features: Vec::new(),
            variant: None,
            features: Vec::new(),
        }
    }

    /// Returns the platform with its architecture variant set.
    pub fn with_variant(mut self, variant: impl Into<String>) -> Self {
        self.variant = Some(variant.into());
        self
    }

    /// Returns the platform with its operating system version set.
    pub fn with_os_version(mut self, v: impl Into<String>) -> Self {
        self.os_version = Some(v.into());
        self
    }

    /// Parses `os/arch[/variant]`, the form that `--platform` takes.
    ///
    /// Each part must be non-empty and made of ASCII letters, digits, `.`, `_` and `-`. The result
    /// keeps what was typed (`linux/x86_64` stays `x86_64`); call [`Platform::normalized`] to get
    /// the canonical form.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Platform`] naming the input and the part that is missing, empty or has a
    /// character outside the allowed set, or saying that there are more than three parts.
    pub fn parse(input: &str) -> Result<Self> {
        if input.is_empty() {
            return Err(platform_error(input, "empty, expected os/arch[/variant]"));
        }
        let parts: Vec<&str> = input.split('/').collect();
        let (os, architecture, variant) = match parts.as_slice() {
            [os, architecture] => (*os, *architecture, None),
            [os, architecture, variant] => (*os, *architecture, Some(*variant)),
            [_] => {
                return Err(platform_error(
                    input,
                    "architecture is missing, expected os/arch[/variant]",
                ));
            }
            _ => {
                return Err(platform_error(
                    input,
                    format!(
                        "{} parts separated by '/', expected os/arch[/variant]",
                        parts.len()
                    ),
                ));
            }
        };
        check_part(input, "os", os)?;
        check_part(input, "architecture", architecture)?;
        let mut platform = Self::new(os, architecture);
        if let Some(variant) = variant {
            check_part(input, "variant", variant)?;
            platform.variant = Some(variant.to_owned());
        }
        Ok(platform)
    }

    /// Returns the canonical form of the platform, following containerd's `platforms.Normalize`.
    ///
    /// The operating system, architecture and variant are lowercased, `macos` becomes `darwin`,
    /// and architecture aliases become their `GOARCH` names: `x86_64` becomes `amd64`, `aarch64`
    /// becomes `arm64`, `i386` becomes `386`, `armhf` becomes `arm/v7` and `armel` becomes
    /// `arm/v6`. Variants are written with their `v` (`arm/7` becomes `arm/v7`); `arm` without a
    /// variant means `arm/v7`, `arm64` without a variant means `arm64/v8`, and `amd64/v1` is plain
    /// `amd64`. The operating system version and the feature lists are kept unchanged.
    pub fn normalized(&self) -> Self {
        let (architecture, variant) =
            normalize_architecture(&self.architecture, self.variant.as_deref());
        Self {
            architecture,
            os: normalize_os(&self.os),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant,
            features: self.features.clone(),
        }
    }

    /// The platform of the running host, normalised.
    ///
    /// It is the platform hoist was compiled for, translated to `GOOS`/`GOARCH` names. A 32-bit
    /// ARM host is taken to be `arm/v7` because the variant cannot be told from the target name
    /// alone, and no Windows version is filled in.
    pub fn host() -> Self {
        Self::new(host_os(), host_architecture()).normalized()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match self.variant.as_deref() {
            Some(variant) if !variant.is_empty() => write!(f, "/{variant}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(feature = "oci-spec")]
impl TryFrom<&oci_spec::image::Platform> for Platform {
    type Error = Error;

    /// Converts oci-spec's platform, checking its parts with the rules of [`Platform::parse`].
    ///
    /// An empty variant is read as no variant, since some registries write `"variant": ""`.
    fn try_from(value: &oci_spec::image::Platform) -> Result<Self> {
        let os = value.os().to_string();
        let architecture = value.architecture().to_string();
        let variant = value.variant().clone().filter(|v| !v.is_empty());
        let input = match &variant {
            Some(variant) => format!("{os}/{architecture}/{variant}"),
            None => format!("{os}/{architecture}"),
        };
        check_part(&input, "os", &os)?;
        check_part(&input, "architecture", &architecture)?;
        if let Some(variant) = &variant {
            check_part(&input, "variant", variant)?;
        }
        Ok(Self {
            architecture,
            os,
            os_version: value.os_version().clone(),
            os_features: value.os_features().clone().unwrap_or_default(),
            variant,
            features: value.features().clone().unwrap_or_default(),
        })
    }
}

/// Says whether images of a platform run on a wanted platform, and ranks the candidates.
///
/// It follows containerd's `platforms.Only`: an ARM host also runs images of older ARM variants,
/// a 64-bit ARM host also runs 32-bit ARM images, an `amd64` host also runs images of older
/// microarchitecture levels and `386` images, and a Windows host runs only images of its own
/// build. Both sides are normalised before they are compared.
#[derive(Debug, Clone)]
pub struct PlatformMatcher {
    /// The normalised operating system every candidate must have.
    os: String,
    /// The wanted Windows `major.minor.build`, when the wanted platform is Windows with a version.
    windows_build: Option<Vec<String>>,
    /// The architectures and variants that run on the wanted platform, best first.
    accepted: Vec<(String, Option<String>)>,
}

impl PlatformMatcher {
    /// Makes a matcher for images that run on `wanted`.
    pub fn new(wanted: &Platform) -> Self {
        let wanted = wanted.normalized();
        let windows_build = if wanted.os == "windows" {
            wanted.os_version.as_deref().map(windows_build)
        } else {
            None
        };
        Self {
            accepted: accepted_architectures(&wanted.architecture, wanted.variant.as_deref()),
            os: wanted.os,
            windows_build,
        }
    }

    /// True when an image built for `candidate` runs on the wanted platform.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }

    /// The candidate's rank: `Some(0)` for the best (exact) match, higher numbers for fallbacks,
    /// `None` when it does not match.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        let candidate = candidate.normalized();
        if candidate.os != self.os {
            return None;
        }
        // An image that does not say which Windows build it targets is assumed to run on any,
        // as containerd does, because old indexes often leave os.version out.
        if let (Some(wanted), Some(version)) = (&self.windows_build, &candidate.os_version)
            && *wanted != windows_build(version)
        {
            return None;
        }
        self.accepted.iter().position(|(architecture, variant)| {
            *architecture == candidate.architecture && *variant == candidate.variant
        })
    }

    /// The index of the best matching candidate in a list (lowest rank; first one wins ties), or
    /// `None` when no candidate matches.
    pub fn best<'a, I: IntoIterator<Item = &'a Platform>>(&self, candidates: I) -> Option<usize> {
        candidates
            .into_iter()
            .enumerate()
            .filter_map(|(index, candidate)| self.rank(candidate).map(|rank| (rank, index)))
            // `min` breaks ties on the index, which keeps the first of equally good candidates.
            .min()
            .map(|(_, index)| index)
    }
}

fn platform_error(input: &str, reason: impl Into<String>) -> Error {
    Error::Platform {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Checks one part of `os/arch[/variant]`, naming it in the error.
fn check_part(input: &str, name: &str, part: &str) -> Result<()> {
    if part.is_empty() {
        return Err(platform_error(input, format!("{name} is empty")));
    }
    match part
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(bad) => Err(platform_error(
            input,
            format!("{name} {part:?} contains {bad:?}, allowed are [a-zA-Z0-9._-]"),
        )),
        None => Ok(()),
    }
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" {
        "darwin".to_owned()
    } else {
        os
    }
}

/// The canonical `(architecture, variant)` of an architecture and variant as written.
fn normalize_architecture(architecture: &str, variant: Option<&str>) -> (String, Option<String>) {
    let architecture = architecture.to_ascii_lowercase();
    let variant = variant
        .filter(|v| !v.is_empty())
        .map(|v| with_v_prefix(&v.to_ascii_lowercase()));
    match architecture.as_str() {
        // 386 has no variants in the image-spec, and `amd64` hosts fall back to plain `386`, so a
        // stray variant would only stop those images from matching.
        "i386" | "386" | "i686" => ("386".to_owned(), None),
        // v1 is the baseline every amd64 CPU meets, so it is the same platform as no variant.
        "x86_64" | "x86-64" | "amd64" => ("amd64".to_owned(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => {
            let variant = match variant {
                None => "v8".to_owned(),
                // `v8.0` and `v9.0` are the baselines `v8` and `v9` spelt longer.
                Some(v) => v.strip_suffix(".0").map(str::to_owned).unwrap_or(v),
            };
            ("arm64".to_owned(), Some(variant))
        }
        "armhf" => ("arm".to_owned(), Some("v7".to_owned())),
        "armel" => ("arm".to_owned(), Some("v6".to_owned())),
        "arm" => (
            "arm".to_owned(),
            Some(variant.unwrap_or_else(|| "v7".to_owned())),
        ),
        _ => (architecture, variant),
    }
}

/// Writes a bare version number as a variant (`7` as `v7`), leaving other variants alone.
fn with_v_prefix(variant: &str) -> String {
    if variant.starts_with(|c: char| c.is_ascii_digit()) {
        format!("v{variant}")
    } else {
        variant.to_owned()
    }
}

/// Reads a variant of the form `vN` or `vN.M` as its numbers.
fn variant_number(variant: Option<&str>) -> Option<(u32, Option<u32>)> {
    let number = variant?.strip_prefix('v')?;
    match number.split_once('.') {
        Some((major, minor)) => Some((major.parse().ok()?, Some(minor.parse().ok()?))),
        None => Some((number.parse().ok()?, None)),
    }
}

/// The normalised architectures and variants whose images run on a normalised wanted
/// architecture and variant, best first (containerd's `platformVector`).
fn accepted_architectures(
    architecture: &str,
    variant: Option<&str>,
) -> Vec<(String, Option<String>)> {
    let mut accepted = vec![(architecture.to_owned(), variant.map(str::to_owned))];
    match architecture {
        "arm" => {
            if let Some((major, None)) = variant_number(variant) {
                accepted.extend(older_arm(major));
            }
        }
        "arm64" => {
            if let Some((major, minor)) = variant_number(variant) {
                // Each arm64 level includes the ones before it: v8.2 runs v8.1 and v8 images.
                if let Some(minor) = minor {
                    accepted.extend((1..minor).rev().map(|m| arm64(format!("v{major}.{m}"))));
                    accepted.push(arm64(format!("v{major}")));
                }
                accepted.extend((8..major).rev().map(|m| arm64(format!("v{m}"))));
            }
            // Every 64-bit ARM CPU that containerd knows of also runs 32-bit ARM code up to v8.
            accepted.push(("arm".to_owned(), Some("v8".to_owned())));
            accepted.extend(older_arm(8));
        }
        "amd64" => {
            if let Some((level, None)) = variant_number(variant) {
                accepted.extend((2..level).rev().map(|l| amd64(Some(format!("v{l}")))));
                if level > 1 {
                    accepted.push(amd64(None));
                }
            }
            accepted.push(("386".to_owned(), None));
        }
        _ => {}
    }
    accepted
}

/// The 32-bit ARM variants older than `vN`, newest first, down to v5, the oldest one in use.
fn older_arm(major: u32) -> impl Iterator<Item = (String, Option<String>)> {
    (5..major)
        .rev()
        .map(|m| ("arm".to_owned(), Some(format!("v{m}"))))
}

fn arm64(variant: String) -> (String, Option<String>) {
    ("arm64".to_owned(), Some(variant))
}

fn amd64(variant: Option<String>) -> (String, Option<String>) {
    ("amd64".to_owned(), variant)
}

/// The `major.minor.build` parts of a Windows version, the parts that must agree between a
/// Windows host and an image (the fourth part, the revision, may differ).
fn windows_build(version: &str) -> Vec<String> {
    version.split('.').take(3).map(str::to_owned).collect()
}

fn host_os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

/// The `GOARCH` name of the architecture hoist was compiled for, which Rust names differently.
fn host_architecture() -> &'static str {
    let little_endian = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86" => "386",
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "loongarch64" => "loong64",
        "powerpc" => "ppc",
        "powerpc64" if little_endian => "ppc64le",
        "powerpc64" => "ppc64",
        "mips" if little_endian => "mipsle",
        "mips64" if little_endian => "mips64le",
        "wasm32" => "wasm",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn parse_accepts_os_arch_and_variant() {
        #[track_caller]
        fn check(input: &str, os: &str, architecture: &str, variant: Option<&str>) {
            let platform = Platform::parse(input).unwrap();
            assert_eq!(platform.os, os, "{input}");
            assert_eq!(platform.architecture, architecture, "{input}");
            assert_eq!(platform.variant.as_deref(), variant, "{input}");
            assert_eq!(platform.os_version, None, "{input}");
        }
        check("linux/amd64", "linux", "amd64", None);
        check("linux/arm64/v8", "linux", "arm64", Some("v8"));
        check("linux/arm/v7", "linux", "arm", Some("v7"));
        check("windows/amd64", "windows", "amd64", None);
        check("linux/x86_64", "linux", "x86_64", None);
        check("Linux/AMD64", "Linux", "AMD64", None);
        check("linux/x86-64/v2", "linux", "x86-64", Some("v2"));
        check("linux/arm64/v8.2", "linux", "arm64", Some("v8.2"));
        check("linux/riscv64", "linux", "riscv64", None);
    }

    #[test]
    fn parse_refuses_malformed_input() {
        #[track_caller]
        fn check(input: &str, reason_has: &str) {
            match Platform::parse(input) {
                Err(Error::Platform { input: got, reason }) => {
                    assert_eq!(got, input);
                    assert!(reason.contains(reason_has), "{input:?}: {reason}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
        check("", "empty");
        check("linux", "architecture is missing");
        check("linux/", "architecture is empty");
        check("/amd64", "os is empty");
        check("linux//amd64", "architecture is empty");
        check("linux/amd64/", "variant is empty");
        check("a/b/c/d", "4 parts");
        check("linux/arm/v7/extra/more", "5 parts");
        check("linux /amd64", "os \"linux \" contains ' '");
        check(" linux/amd64", "os");
        check("linux/amd64 ", "architecture \"amd64 \" contains ' '");
        check("linux/arm/v 7", "variant");
        check("linux/amd64:10.0", "contains ':'");
        check("linux/ärm", "contains 'ä'");
    }

    #[test]
    fn from_str_is_parse() {
        assert_eq!(
            "linux/arm/v7".parse::<Platform>(),
            Platform::parse("linux/arm/v7")
        );
        assert!("linux".parse::<Platform>().is_err());
    }

    #[test]
    fn display_and_from_str_round_trip() {
        #[track_caller]
        fn check(text: &str) {
            let platform: Platform = text.parse().unwrap();
            assert_eq!(platform.to_string(), text);
            assert_eq!(platform.to_string().parse::<Platform>().unwrap(), platform);
        }
        check("linux/amd64");
        check("linux/arm64/v8");
        check("linux/arm/v5");
        check("windows/amd64");
        check("Linux/X86_64/V2");
    }

    #[test]
    fn display_leaves_out_version_and_empty_variant() {
        let windows = Platform::new("windows", "amd64").with_os_version("10.0.17763.5329");
        assert_eq!(windows.to_string(), "windows/amd64");
        assert_eq!(
            Platform::new("linux", "arm").with_variant("").to_string(),
            "linux/arm"
        );
    }

    #[test]
    fn normalized_follows_containerd() {
        #[track_caller]
        fn check(input: &str, want: &str) {
            assert_eq!(p(input).normalized().to_string(), want, "{input}");
        }
        check("linux/amd64", "linux/amd64");
        check("linux/x86_64", "linux/amd64");
        check("linux/x86-64", "linux/amd64");
        check("linux/AMD64", "linux/amd64");
        check("linux/amd64/v1", "linux/amd64");
        check("linux/amd64/1", "linux/amd64");
        check("linux/amd64/v3", "linux/amd64/v3");
        check("linux/x86_64/V2", "linux/amd64/v2");
        check("linux/i386", "linux/386");
        check("linux/i686", "linux/386");
        check("linux/386/sse2", "linux/386");
        check("linux/aarch64", "linux/arm64/v8");
        check("linux/arm64", "linux/arm64/v8");
        check("linux/arm64/8", "linux/arm64/v8");
        check("linux/arm64/v8.0", "linux/arm64/v8");
        check("linux/arm64/9", "linux/arm64/v9");
        check("linux/arm64/9.0", "linux/arm64/v9");
        check("linux/arm64/v9.0", "linux/arm64/v9");
        check("linux/arm64/8.2", "linux/arm64/v8.2");
        check("linux/aarch64/v8.2", "linux/arm64/v8.2");
        check("linux/armhf", "linux/arm/v7");
        check("linux/armel", "linux/arm/v6");
        check("linux/armhf/v6", "linux/arm/v7");
        check("linux/arm", "linux/arm/v7");
        check("linux/arm/7", "linux/arm/v7");
        check("linux/arm/5", "linux/arm/v5");
        check("linux/arm/6", "linux/arm/v6");
        check("linux/arm/8", "linux/arm/v8");
        check("linux/ARM/V6", "linux/arm/v6");
        check("MacOS/arm64", "darwin/arm64/v8");
        check("macos/x86_64", "darwin/amd64");
        check("Windows/amd64", "windows/amd64");
        check("linux/ppc64le", "linux/ppc64le");
        check("linux/s390x", "linux/s390x");
        check("linux/riscv64/RVA22", "linux/riscv64/rva22");
    }

    #[test]
    fn normalized_keeps_versions_and_features() {
        let mut platform = Platform::new("Windows", "x86_64").with_os_version("10.0.17763.5329");
        platform.os_features = vec!["win32k".to_owned()];
        platform.features = vec!["sse4".to_owned()];
        let normalized = platform.normalized();
        assert_eq!(normalized.os, "windows");
        assert_eq!(normalized.architecture, "amd64");
        assert_eq!(normalized.os_version.as_deref(), Some("10.0.17763.5329"));
        assert_eq!(normalized.os_features, ["win32k"]);
        assert_eq!(normalized.features, ["sse4"]);
        assert_eq!(normalized.normalized(), normalized);
    }

    #[test]
    fn normalized_turns_empty_variant_into_none() {
        let platform = Platform::new("linux", "ppc64le").with_variant("");
        assert_eq!(platform.normalized().variant, None);
    }

    #[test]
    fn host_is_normalised_and_known() {
        let host = Platform::host();
        assert_eq!(host, host.normalized());
        assert!(!host.os.is_empty() && !host.architecture.is_empty());
        assert_ne!(host.os, "macos");
        assert!(!["x86_64", "aarch64", "x86"].contains(&host.architecture.as_str()));
        assert!(PlatformMatcher::new(&host).matches(&host));
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(host.to_string(), "linux/amd64");
        }
        if cfg!(all(target_os = "linux", target_arch = "aarch64")) {
            assert_eq!(host.to_string(), "linux/arm64/v8");
        }
    }

    #[test]
    fn matcher_matches_and_ranks() {
        #[track_caller]
        fn check(wanted: &str, candidate: &str, rank: Option<usize>) {
            let matcher = PlatformMatcher::new(&p(wanted));
            assert_eq!(
                matcher.rank(&p(candidate)),
                rank,
                "{wanted} wanted, {candidate} offered"
            );
            assert_eq!(matcher.matches(&p(candidate)), rank.is_some());
        }
        // Exact and alias matches.
        check("linux/amd64", "linux/amd64", Some(0));
        check("linux/amd64", "linux/x86_64", Some(0));
        check("linux/x86_64", "linux/amd64", Some(0));
        check("linux/amd64", "Linux/AMD64", Some(0));
        check("linux/arm64", "linux/arm64/v8", Some(0));
        check("linux/arm64/v8", "linux/arm64", Some(0));
        check("linux/aarch64", "linux/arm64/8", Some(0));
        check("linux/arm/v7", "linux/arm", Some(0));
        check("linux/arm", "linux/arm/v7", Some(0));
        check("linux/armhf", "linux/arm/7", Some(0));
        check("linux/ppc64le", "linux/ppc64le", Some(0));
        // 32-bit ARM runs older variants only.
        check("linux/arm/v7", "linux/arm/v6", Some(1));
        check("linux/arm/v7", "linux/arm/v5", Some(2));
        check("linux/arm/v7", "linux/arm/v8", None);
        check("linux/arm/v6", "linux/arm/v7", None);
        check("linux/arm/v6", "linux/arm/v5", Some(1));
        check("linux/arm/v5", "linux/arm/v6", None);
        check("linux/arm/v8", "linux/arm/v5", Some(3));
        check("linux/armel", "linux/arm/v5", Some(1));
        // 64-bit ARM runs 32-bit ARM after its own images.
        check("linux/arm64", "linux/arm/v8", Some(1));
        check("linux/arm64", "linux/arm/v7", Some(2));
        check("linux/arm64", "linux/arm/v5", Some(4));
        check("linux/arm64/v8.2", "linux/arm64/v8.1", Some(1));
        check("linux/arm64/v8.2", "linux/arm64", Some(2));
        check("linux/arm64/v8.2", "linux/arm/v7", Some(4));
        check("linux/arm64/v8", "linux/arm64/v8.2", None);
        check("linux/arm64/v9", "linux/arm64/v8", Some(1));
        check("linux/arm64", "linux/arm64/v9", None);
        check("linux/arm/v7", "linux/arm64", None);
        // amd64 runs older levels, then 386; never the reverse.
        check("linux/amd64/v3", "linux/amd64/v3", Some(0));
        check("linux/amd64/v3", "linux/amd64/v2", Some(1));
        check("linux/amd64/v3", "linux/amd64/v1", Some(2));
        check("linux/amd64/v3", "linux/amd64", Some(2));
        check("linux/amd64/v3", "linux/386", Some(3));
        check("linux/amd64/v3", "linux/amd64/v4", None);
        check("linux/amd64", "linux/386", Some(1));
        check("linux/amd64", "linux/i386", Some(1));
        check("linux/amd64", "linux/amd64/v2", None);
        check("linux/amd64/v1", "linux/amd64", Some(0));
        check("linux/386", "linux/amd64", None);
        check("linux/386", "linux/386", Some(0));
        check("linux/amd64", "linux/arm64", None);
        check("linux/arm64", "linux/amd64", None);
        // The operating system must agree.
        check("linux/amd64", "windows/amd64", None);
        check("windows/amd64", "linux/amd64", None);
        check("darwin/arm64", "macos/aarch64", Some(0));
        check("linux/riscv64", "linux/riscv64", Some(0));
        check("linux/riscv64", "linux/riscv64/rva22", None);
    }

    #[test]
    fn matcher_compares_windows_builds() {
        #[track_caller]
        fn check(wanted: (&str, Option<&str>), candidate: (&str, Option<&str>), matches: bool) {
            let with_version = |(text, version): (&str, Option<&str>)| {
                let platform = p(text);
                match version {
                    Some(version) => platform.with_os_version(version),
                    None => platform,
                }
            };
            let matcher = PlatformMatcher::new(&with_version(wanted));
            assert_eq!(
                matcher.matches(&with_version(candidate)),
                matches,
                "{wanted:?} wanted, {candidate:?} offered"
            );
        }
        let ltsc2019 = Some("10.0.17763.5329");
        check(
            ("windows/amd64", ltsc2019),
            ("windows/amd64", ltsc2019),
            true,
        );
        check(
            ("windows/amd64", ltsc2019),
            ("windows/amd64", Some("10.0.17763.1")),
            true,
        );
        check(
            ("windows/amd64", ltsc2019),
            ("windows/amd64", Some("10.0.17763")),
            true,
        );
        check(
            ("windows/amd64", ltsc2019),
            ("windows/amd64", Some("10.0.20348.2227")),
            false,
        );
        check(
            ("windows/amd64", ltsc2019),
            ("windows/amd64", Some("10.0")),
            false,
        );
        check(("windows/amd64", ltsc2019), ("windows/amd64", None), true);
        check(("windows/amd64", None), ("windows/amd64", ltsc2019), true);
        check(
            ("windows/amd64", ltsc2019),
            ("windows/arm64", ltsc2019),
            false,
        );
        check(
            ("windows/amd64", ltsc2019),
            ("linux/amd64", ltsc2019),
            false,
        );
        // Only Windows gives os.version a meaning.
        check(
            ("linux/amd64", Some("5.15")),
            ("linux/amd64", Some("6.1")),
            true,
        );
    }

    /// The platforms of a typical official image on Docker Hub, in index order.
    fn hub_list() -> Vec<Platform> {
        vec![
            p("linux/amd64"),
            p("linux/arm/v5"),
            p("linux/arm/v7"),
            p("linux/arm64/v8"),
            p("linux/386"),
            p("linux/ppc64le"),
            p("linux/s390x"),
            p("windows/amd64").with_os_version("10.0.17763.5329"),
        ]
    }

    #[test]
    fn best_picks_from_a_hub_list() {
        #[track_caller]
        fn check(wanted: Platform, index: Option<usize>) {
            let list = hub_list();
            assert_eq!(PlatformMatcher::new(&wanted).best(&list), index, "{wanted}");
        }
        check(p("linux/amd64"), Some(0));
        check(p("linux/x86_64"), Some(0));
        check(p("linux/amd64/v3"), Some(0));
        check(p("linux/arm/v5"), Some(1));
        check(p("linux/arm/v6"), Some(1));
        check(p("linux/armel"), Some(1));
        check(p("linux/arm/v7"), Some(2));
        check(p("linux/arm"), Some(2));
        check(p("linux/arm/v8"), Some(2));
        check(p("linux/arm64"), Some(3));
        check(p("linux/aarch64"), Some(3));
        check(p("linux/arm64/v8.2"), Some(3));
        check(p("linux/386"), Some(4));
        check(p("linux/ppc64le"), Some(5));
        check(p("linux/s390x"), Some(6));
        check(p("windows/amd64"), Some(7));
        check(p("windows/amd64").with_os_version("10.0.17763.1"), Some(7));
        check(p("windows/amd64").with_os_version("10.0.20348.1"), None);
        check(p("linux/riscv64"), None);
        check(p("darwin/arm64"), None);
    }

    #[test]
    fn best_falls_back_and_breaks_ties_by_position() {
        #[track_caller]
        fn check(wanted: &str, list: &[&str], index: Option<usize>) {
            let list: Vec<Platform> = list.iter().map(|s| p(s)).collect();
            assert_eq!(
                PlatformMatcher::new(&p(wanted)).best(&list),
                index,
                "{wanted}"
            );
        }
        check(
            "linux/arm64",
            &["linux/amd64", "linux/arm/v6", "linux/arm/v7"],
            Some(2),
        );
        check("linux/amd64", &["linux/386", "linux/amd64"], Some(1));
        check("linux/amd64", &["linux/arm64", "linux/386"], Some(1));
        check(
            "linux/amd64/v3",
            &["linux/amd64", "linux/amd64/v2", "linux/amd64/v4"],
            Some(1),
        );
        check("linux/amd64", &["linux/x86_64", "linux/amd64"], Some(0));
        check("linux/arm64", &["linux/arm64", "linux/arm64/v8"], Some(0));
        check("linux/arm/v7", &["linux/arm/v5", "linux/arm/v6"], Some(1));
        check("linux/arm/v6", &["linux/arm/v7", "linux/arm64"], None);
        check("linux/amd64", &[], None);
    }

    #[test]
    fn serde_uses_image_spec_names() {
        #[track_caller]
        fn check(json: &str, want: Platform) {
            let platform: Platform = serde_json::from_str(json).unwrap();
            assert_eq!(platform, want, "{json}");
            let back: serde_json::Value = serde_json::to_value(&platform).unwrap();
            let original: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(back, original, "{json}");
        }
        let mut windows = Platform::new("windows", "amd64").with_os_version("10.0.17763.5329");
        windows.os_features = vec!["win32k".to_owned()];
        check(
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.5329","os.features":["win32k"]}"#,
            windows,
        );
        check(
            r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#,
            Platform::new("linux", "arm64").with_variant("v8"),
        );
        check(
            r#"{"architecture":"amd64","os":"linux"}"#,
            Platform::new("linux", "amd64"),
        );
        let mut featured = Platform::new("linux", "amd64");
        featured.features = vec!["sse4".to_owned()];
        check(
            r#"{"architecture":"amd64","os":"linux","features":["sse4"]}"#,
            featured,
        );
    }

    #[test]
    fn serde_refuses_a_platform_without_os_or_architecture() {
        assert!(serde_json::from_str::<Platform>(r#"{"os":"linux"}"#).is_err());
        assert!(serde_json::from_str::<Platform>(r#"{"architecture":"amd64"}"#).is_err());
    }

    #[test]
    #[cfg(feature = "oci-spec")]
    fn try_from_oci_spec_platform() {
        #[track_caller]
        fn check(json: &str, want: Platform) {
            let spec: oci_spec::image::Platform = serde_json::from_str(json).unwrap();
            assert_eq!(Platform::try_from(&spec).unwrap(), want, "{json}");
        }
        check(
            r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#,
            Platform::new("linux", "arm64").with_variant("v8"),
        );
        check(
            r#"{"architecture":"386","os":"linux"}"#,
            Platform::new("linux", "386"),
        );
        check(
            r#"{"architecture":"amd64","os":"linux","variant":""}"#,
            Platform::new("linux", "amd64"),
        );
        check(
            r#"{"architecture":"riscv64","os":"freebsd"}"#,
            Platform::new("freebsd", "riscv64"),
        );
        // oci-spec 0.10 names the version fields `os_version`/`os_features`, not the image-spec's
        // dotted names, so that is the spelling it reads them from.
        let mut windows = Platform::new("windows", "amd64").with_os_version("10.0.17763.5329");
        windows.os_features = vec!["win32k".to_owned()];
        check(
            r#"{"architecture":"amd64","os":"windows","os_version":"10.0.17763.5329","os_features":["win32k"]}"#,
            windows,
        );
    }

    #[test]
    #[cfg(feature = "oci-spec")]
    fn try_from_oci_spec_platform_refuses_bad_parts() {
        #[track_caller]
        fn check(json: &str, reason_has: &str) {
            let spec: oci_spec::image::Platform = serde_json::from_str(json).unwrap();
            match Platform::try_from(&spec) {
                Err(Error::Platform { reason, .. }) => {
                    assert!(reason.contains(reason_has), "{json}: {reason}");
                }
                other => panic!("{json} gave {other:?}"),
            }
        }
        check(
            r#"{"architecture":"","os":"linux"}"#,
            "architecture is empty",
        );
        check(r#"{"architecture":"amd64","os":""}"#, "os is empty");
        check(
            r#"{"architecture":"amd64","os":"linux","variant":"v 2"}"#,
            "variant",
        );
        check(r#"{"architecture":"arm/v7","os":"linux"}"#, "contains '/'");
    }
}
