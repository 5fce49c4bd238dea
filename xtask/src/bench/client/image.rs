//! The client scenario's image: made once as an OCI layout of gzip layers of random data, put
//! into the pull registry with `curl`, and the checks that a pull or a push copied it whole.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{CONFIG_TYPE, INDEX_TYPE, JOBS, LAYER_TYPE, LAYERS, SOURCE_REPO, TAG};
use crate::bench::data::{GEN_JOBS, blob_path, layer_sizes, layout_image, parallel, urandom_file};
use crate::bench::machine::{read_through, remove_dir, sha256_of};
use crate::bench::measure::timed;
use crate::bench::peers::{
    MANIFEST_TYPE, Registry, curl, download_blob, manifest_digest, upload_blob,
};
use crate::run_status;

/// A blob of the source image.
#[derive(Debug, Clone)]
pub(super) struct Blob {
    pub(super) digest: String,
    pub(super) size: u64,
    /// Where the source layout stores it.
    pub(super) path: PathBuf,
}

impl Blob {
    pub(super) fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// The source image, in its layout.
#[derive(Debug)]
pub(super) struct Image {
    pub(super) layout: PathBuf,
    pub(super) config: Blob,
    pub(super) layers: Vec<Blob>,
    pub(super) manifest: Blob,
}

impl Image {
    pub(super) fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// Hashes `file`, moves it into the layout's `blobs/sha256/` and returns it as a [`Blob`].
fn store_blob(file: &Path, layout: &Path) -> Result<Blob> {
    let digest = sha256_of(file)?;
    let size = fs::metadata(file)
        .with_context(|| format!("cannot stat {}", file.display()))?
        .len();
    let path = blob_path(layout, &digest);
    fs::rename(file, &path)
        .with_context(|| format!("cannot move {} to {}", file.display(), path.display()))?;
    Ok(Blob { digest, size, path })
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    fs::write(path, value.to_string()).with_context(|| format!("cannot write {}", path.display()))
}

/// Makes the source layout under `work`: [`LAYERS`] gzip layers of random data making
/// `size_bytes` of random bytes in all, a config, a manifest, tagged [`TAG`].
pub(super) fn make_image(work: &Path, size_bytes: u64) -> Result<Image> {
    let layout = work.join("source");
    let scratch = work.join("scratch");
    for dir in [layout.join("blobs/sha256"), scratch.clone()] {
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let sizes: Vec<(usize, u64)> = layer_sizes(size_bytes, LAYERS)
        .into_iter()
        .enumerate()
        .collect();
    let (seconds, made) = parallel(GEN_JOBS, &sizes, |&(i, size)| {
        let raw = scratch.join(format!("layer-{i}.tar"));
        urandom_file(&raw, size)?;
        let diff_id = sha256_of(&raw)?;
        let gz = scratch.join(format!("layer-{i}.tar.gz"));
        let mut gzip = Command::new("gzip");
        gzip.args(["-1", "-n", "-c"])
            .arg(&raw)
            .stdout(File::create(&gz).with_context(|| format!("cannot create {}", gz.display()))?);
        run_status(&mut gzip)?;
        fs::remove_file(&raw).with_context(|| format!("cannot remove {}", raw.display()))?;
        Ok((diff_id, store_blob(&gz, &layout)?))
    })?;
    println!("    {LAYERS} layers in {seconds:.1} s");
    let (diff_ids, layers): (Vec<String>, Vec<Blob>) = made.into_iter().unzip();

    let config_file = scratch.join("config.json");
    write_json(
        &config_file,
        &json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        }),
    )?;
    let config = store_blob(&config_file, &layout)?;
    let descriptor = |media_type: &str, blob: &Blob| json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.size });
    let manifest_file = scratch.join("manifest.json");
    write_json(
        &manifest_file,
        &json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, &config),
            "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
        }),
    )?;
    let manifest = store_blob(&manifest_file, &layout)?;
    let mut entry = descriptor(MANIFEST_TYPE, &manifest);
    entry["annotations"] = json!({ "org.opencontainers.image.ref.name": TAG });
    write_json(
        &layout.join("index.json"),
        &json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [entry] }),
    )?;
    write_json(
        &layout.join("oci-layout"),
        &json!({ "imageLayoutVersion": "1.0.0" }),
    )?;
    remove_dir(&scratch)?;
    Ok(Image {
        layout,
        config,
        layers,
        manifest,
    })
}

/// Fails unless the registry has `image` as `repo:`[`TAG`], byte for byte.
pub(super) fn check_pushed(registry: &Registry, repo: &str, image: &Image) -> Result<()> {
    let digest = manifest_digest(&registry.base(), repo, TAG)?;
    if digest != image.manifest.digest {
        bail!(
            "{}/{repo}:{TAG} is {digest}, expected the source's {} (was a layer changed?)",
            registry.host,
            image.manifest.digest
        );
    }
    Ok(())
}

/// Fails unless the layout `dir` has every blob of `image` with its size and an `index.json`
/// whose entry tagged [`TAG`] names its manifest.
pub(super) fn check_pulled(dir: &Path, image: &Image) -> Result<()> {
    let tagged = layout_image(dir, TAG)?;
    if tagged.manifest != image.manifest.digest {
        bail!(
            "{} tags {TAG} as {}, expected the source's {}",
            dir.join("index.json").display(),
            tagged.manifest,
            image.manifest.digest
        );
    }
    for blob in image.layers.iter().chain([&image.config, &image.manifest]) {
        let path = blob_path(dir, &blob.digest);
        let size = fs::metadata(&path)
            .with_context(|| format!("the pull left no {}", path.display()))?
            .len();
        if size != blob.size {
            bail!(
                "{} has {size} bytes, expected {}",
                path.display(),
                blob.size
            );
        }
    }
    Ok(())
}

/// Puts the image into `registry` as [`SOURCE_REPO`]:[`TAG`] with curl.
pub(super) fn seed(registry: &Registry, image: &Image) -> Result<()> {
    let base = registry.base();
    let blobs: Vec<&Blob> = image.layers.iter().chain([&image.config]).collect();
    parallel(JOBS, &blobs, |blob| {
        upload_blob(
            &base,
            SOURCE_REPO,
            Some(blob.path.as_path()),
            "",
            &blob.digest,
        )
    })?;
    let mut put = curl();
    put.args(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Content-Type: {MANIFEST_TYPE}")])
        .arg("--data-binary")
        .arg(format!("@{}", image.manifest.path.display()))
        .arg(format!("{base}/v2/{SOURCE_REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut put)?;
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of the manifest to {base} answered {code}, expected 201");
    }
    check_pushed(registry, SOURCE_REPO, image)
}

/// Reads the source layers and downloads them from the pull registry, untimed, so that the next
/// step finds them in the page cache.
pub(super) fn warm(pull: &Registry, image: &Image) -> Result<()> {
    let base = pull.base();
    parallel(JOBS, &image.layers, |l| {
        read_through(&l.path)?;
        download_blob(&base, SOURCE_REPO, &l.digest, l.size)
    })?;
    Ok(())
}
