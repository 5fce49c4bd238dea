//! The one error type of `oci-types`: every parse or validation failure, naming the input.

/// A parse or validation failure. Each variant names the input that was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string that is not `ALGORITHM:HEX` with a known algorithm and the right hex.
    #[error("invalid digest {input:?}: {reason}")]
    Digest {
        /// The text that was refused.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A repository name outside the distribution-spec grammar.
    #[error("invalid repository name {input:?}: {reason}")]
    Repository {
        /// The text that was refused.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag outside `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
    #[error("invalid tag {input:?}: {reason}")]
    Tag {
        /// The text that was refused.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An image reference as a person types it (`ubuntu`, `ghcr.io/org/app:1.2`) that cannot be read.
    #[error("invalid reference {input:?}: {part} {reason}")]
    Reference {
        /// The whole reference that was refused.
        input: String,
        /// Which part is wrong: "registry", "repository", "tag" or "digest".
        part: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A media type that is not `type/subtype[; parameters]`.
    #[error("invalid media type {input:?}: {reason}")]
    MediaType {
        /// The text that was refused.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A platform string or value that cannot be read (`os/arch[/variant]`).
    #[error("invalid platform {input:?}: {reason}")]
    Platform {
        /// The text that was refused.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A manifest or index that is not valid JSON of its kind, or breaks a rule of the image-spec.
    #[error("invalid manifest: {reason}")]
    Manifest {
        /// What is wrong with it, naming the field where there is one.
        reason: String,
    },
}

/// The result type of `oci-types`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
