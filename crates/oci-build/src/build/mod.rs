//! Making images: layers from files, their compression, configs, manifests and indexes.

mod compress;
mod config;
mod image;
mod layer;
mod mutate;
mod tarball;

pub use compress::{
    COMPRESSION_ANNOTATION, Compression, DEFAULT_GZIP_BLOCK_SIZE, DEFAULT_GZIP_LEVEL,
    DEFAULT_ZSTD_LEVEL, Encoder, GzipOptions, ZstdOptions,
};
pub(crate) use config::Config;
pub use config::{ConfigEdit, EnvEdit};
pub use image::{
    BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, Base, BaseRole, BuildOptions, Built, build_image,
};
pub use layer::{BuildEvent, BuildProgress, BuiltLayer, push_layer, push_layer_with};
pub use mutate::{MutateOptions, flatten_image, rebase_image, recompress_image};
pub use tarball::{EntrySource, LayerEntry, LayerSource, Mtime, TarOptions};
