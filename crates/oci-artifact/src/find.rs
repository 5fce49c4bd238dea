//! Finding the layers of a manifest by title, media type or digest (gardener's
//! `GetLayerByName`, `GetLayerByMediaType`, `GetLayerByDigest`), and reading them as streams.

use oci_store::{BlobReader, OciInterface, OciInterfaceExt as _};
use oci_types::{
    Descriptor, Digest, ImageManifest, MAX_MANIFEST_SIZE, Manifest, ManifestRef, MediaType,
    Repository,
};

use crate::{Error, Result};

/// The annotation that names a layer's file (`org.opencontainers.image.title`), as oras and
/// hoist set it.
pub const TITLE: &str = "org.opencontainers.image.title";

/// Which layers of a manifest are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerQuery {
    /// Layers whose [`TITLE`] annotation is this name.
    Title(String),
    /// Layers of this media type.
    MediaType(MediaType),
    /// The layer with this digest.
    Digest(Digest),
}

impl LayerQuery {
    /// Whether `layer` is one of those wanted.
    pub fn matches(&self, layer: &Descriptor) -> bool {
        match self {
            Self::Title(title) => layer.annotations.get(TITLE) == Some(title),
            Self::MediaType(media_type) => &layer.media_type == media_type,
            Self::Digest(digest) => &layer.digest == digest,
        }
    }
}

/// The layers of `manifest` that `query` wants, in the manifest's order.
pub fn find_layers<'m>(manifest: &'m ImageManifest, query: &LayerQuery) -> Vec<&'m Descriptor> {
    manifest
        .layers
        .iter()
        .filter(|layer| query.matches(layer))
        .collect()
}

/// The image manifest `reference` names in `repo` (an artifact's or an image's), verified, with
/// its descriptor. An index is refused: an artifact is one manifest.
pub async fn fetch_manifest(
    store: &dyn OciInterface,
    repo: &Repository,
    reference: &ManifestRef,
) -> Result<(Descriptor, ImageManifest)> {
    let read = store.get_manifest_ref(repo, reference).await;
    let context = || format!("reading {repo}{reference}");
    let reader = read.map_err(|e| Error::store(context(), e))?;
    let descriptor = reader.descriptor().clone();
    let bytes = reader
        .bytes(MAX_MANIFEST_SIZE as u64)
        .await
        .map_err(|e| Error::store(context(), e))?;
    match Manifest::parse(&bytes, &descriptor.media_type) {
        Ok(Manifest::Image(manifest)) => Ok((descriptor, manifest)),
        Ok(_) => Err(Error::Manifest(format!(
            "{} is an index ({}), not the manifest of one artifact",
            descriptor.digest, descriptor.media_type
        ))),
        Err(e) => Err(Error::Manifest(format!("{}: {e}", descriptor.digest))),
    }
}

/// Opens `layer` of `repo` as a stream of its bytes, verified against its digest as it is read.
pub async fn open_layer(
    store: &dyn OciInterface,
    repo: &Repository,
    layer: &Descriptor,
) -> Result<BlobReader> {
    let context = || format!("reading layer {} of {repo}", layer.digest);
    let reader = store
        .get_blob(repo, &layer.digest)
        .await
        .map_err(|e| Error::store(context(), e))?;
    // The content is checked against its digest as it is read; the size the manifest states
    // (and a pull reports) must be the content's too.
    let size = reader.descriptor().size;
    if size != layer.size {
        return Err(Error::store(
            context(),
            oci_store::Error::SizeInvalid {
                what: "a layer whose manifest states another size:".to_owned(),
                digest: layer.digest.clone(),
                expected: layer.size,
                actual: size,
            },
        ));
    }
    Ok(reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_pick_layers_by_title_media_type_and_digest() {
        let layer = |title: &str, kind: &'static str, data: &[u8]| {
            let mut d = Descriptor::new(MediaType::from_static(kind), Digest::sha256(data), 1);
            d.annotations.insert(TITLE.to_owned(), title.to_owned());
            d
        };
        let config = Descriptor::new(
            MediaType::from_static(oci_types::media_type::OCI_EMPTY),
            Digest::sha256(b"{}"),
            2,
        );
        let manifest = ImageManifest::new(
            config,
            vec![
                layer("a.txt", "text/plain", b"a"),
                layer("b.json", "application/json", b"b"),
                layer("c.txt", "text/plain", b"c"),
            ],
        );
        let titles = |query: LayerQuery| -> Vec<String> {
            find_layers(&manifest, &query)
                .iter()
                .map(|d| d.annotations[TITLE].clone())
                .collect()
        };
        assert_eq!(titles(LayerQuery::Title("b.json".into())), ["b.json"]);
        assert_eq!(
            titles(LayerQuery::MediaType(MediaType::from_static("text/plain"))),
            ["a.txt", "c.txt"]
        );
        assert_eq!(titles(LayerQuery::Digest(Digest::sha256(b"c"))), ["c.txt"]);
        assert!(titles(LayerQuery::Title("missing".into())).is_empty());
    }
}
