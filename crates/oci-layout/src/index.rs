//! `index.json`: reading it leniently, changing it without losing what other tools wrote, and
//! the mapping between its `org.opencontainers.image.ref.name` annotations and repositories.

use serde_json::{Map, Value};

use oci_types::{Descriptor, Digest, Repository, Tag, media_type};

/// The annotation that names an index entry.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `index.json`, kept as JSON so that fields and entries hoist does not understand survive a
/// rewrite untouched.
#[derive(Debug, Clone)]
pub(crate) struct IndexFile {
    top: Map<String, Value>,
    entries: Vec<Value>,
}

/// One entry of `index.json` that hoist could read.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) descriptor: Descriptor,
    pub(crate) repository: Repository,
    pub(crate) tag: Option<Tag>,
}

impl IndexFile {
    /// An empty index.
    pub(crate) fn empty() -> Self {
        let mut top = Map::new();
        top.insert("schemaVersion".to_owned(), Value::from(2));
        top.insert("mediaType".to_owned(), Value::from(media_type::OCI_INDEX));
        Self {
            top,
            entries: Vec::new(),
        }
    }

    /// Reads `index.json`; refuses anything that is not an image index.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
        let Value::Object(mut top) = value else {
            return Err("not a JSON object".to_owned());
        };
        if top.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
            return Err("schemaVersion is not 2".to_owned());
        }
        let entries = match top.remove("manifests") {
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err("\"manifests\" is not an array".to_owned()),
            None => return Err("\"manifests\" is missing".to_owned()),
        };
        Ok(Self { top, entries })
    }

    /// The JSON to write.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut top = self.top.clone();
        top.insert("manifests".to_owned(), Value::Array(self.entries.clone()));
        // A map of JSON values always serialises.
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(top)).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// The entries hoist can read, each with the repository it belongs to. Entries it cannot
    /// read are skipped with a warning and kept as they are on rewrite: one bad entry must not
    /// make the rest of the layout unreadable.
    pub(crate) fn entries(&self, default: &Repository) -> Vec<Entry> {
        self.entries
            .iter()
            .filter_map(|raw| match read_entry(raw, default) {
                Ok(entry) => Some(entry),
                Err(reason) => {
                    tracing::warn!(%reason, entry = %raw, "skipping an index.json entry hoist cannot read");
                    None
                }
            })
            .collect()
    }

    /// The descriptor of every entry, whether or not hoist can tell its repository (a
    /// `ref.name` such as `localhost:5000/app:v1`, as other tools write): what the layout
    /// holds, for gc and fsck; and how many entries are not descriptors at all (what they
    /// reference cannot be known).
    pub(crate) fn all_descriptors(&self) -> (Vec<Descriptor>, usize) {
        let mut descriptors = Vec::new();
        let mut undecodable = 0;
        for raw in &self.entries {
            match serde_json::from_value::<Descriptor>(raw.clone()) {
                Ok(descriptor) => descriptors.push(descriptor),
                Err(_) => undecodable += 1,
            }
        }
        (descriptors, undecodable)
    }

    /// How many entries cannot be read.
    pub(crate) fn unreadable_entries(&self, default: &Repository) -> usize {
        self.entries
            .iter()
            .filter(|raw| read_entry(raw, default).is_err())
            .count()
    }

    /// Removes the readable entries for which `remove` is true and returns them.
    pub(crate) fn remove(
        &mut self,
        default: &Repository,
        mut remove: impl FnMut(&Entry) -> bool,
    ) -> Vec<Entry> {
        let mut removed = Vec::new();
        self.entries.retain(|raw| match read_entry(raw, default) {
            Ok(entry) if remove(&entry) => {
                removed.push(entry);
                false
            }
            _ => true,
        });
        removed
    }

    /// Removes the tag entries for which `remove` is true, keeping each manifest that loses its
    /// last entry in the repository as an untagged entry: like a registry, a layout forgets a
    /// manifest only when it is deleted by digest. Returns how many entries it removed.
    pub(crate) fn untag(
        &mut self,
        default: &Repository,
        remove: impl FnMut(&Entry) -> bool,
    ) -> usize {
        let removed = self.remove(default, remove);
        for entry in &removed {
            let still_listed = self.entries(default).iter().any(|e| {
                e.repository == entry.repository && e.descriptor.digest == entry.descriptor.digest
            });
            if !still_listed {
                self.add(&entry.descriptor, &entry.repository, None, default);
            }
        }
        removed.len()
    }

    /// Appends an entry for `descriptor`, owned by `repository` (and `tag`).
    pub(crate) fn add(
        &mut self,
        descriptor: &Descriptor,
        repository: &Repository,
        tag: Option<&Tag>,
        default: &Repository,
    ) {
        let mut descriptor = Descriptor::new(
            descriptor.media_type.clone(),
            descriptor.digest.clone(),
            descriptor.size,
        );
        if let Some(name) = ref_name(repository, tag, &descriptor.digest, default) {
            descriptor.annotations.insert(REF_NAME.to_owned(), name);
        }
        // A descriptor of validated parts always serialises.
        if let Ok(value) = serde_json::to_value(&descriptor) {
            self.entries.push(value);
        }
    }
}

fn read_entry(raw: &Value, default: &Repository) -> Result<Entry, String> {
    let descriptor: Descriptor = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    let (repository, tag) = owner(
        descriptor.annotations.get(REF_NAME).map(String::as_str),
        default,
    )?;
    Ok(Entry {
        descriptor,
        repository,
        tag,
    })
}

/// Which repository (and tag) a `ref.name` value names.
///
/// - none or empty: the default repository, untagged;
/// - a bare tag (`v1.0`, what skopeo, umoci and oras write): a tag of the default repository;
/// - `repo:tag`, `repo@digest` or `repo:tag@digest`: that repository;
/// - a bare repository name (`team/app`): that repository, untagged.
pub(crate) fn owner(
    ref_name: Option<&str>,
    default: &Repository,
) -> Result<(Repository, Option<Tag>), String> {
    let Some(name) = ref_name.filter(|n| !n.is_empty()) else {
        return Ok((default.clone(), None));
    };
    if let Ok(tag) = Tag::parse(name) {
        return Ok((default.clone(), Some(tag)));
    }
    let (name, digest) = match name.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (name, None),
    };
    if let Some(digest) = digest {
        Digest::parse(digest).map_err(|e| format!("ref.name {name:?}: {e}"))?;
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name[last_slash..].rfind(':') {
        Some(colon) => (
            &name[..last_slash + colon],
            Some(&name[last_slash + colon + 1..]),
        ),
        None => (name, None),
    };
    let repository = Repository::parse(repo).map_err(|e| format!("ref.name: {e}"))?;
    let tag = tag
        .map(Tag::parse)
        .transpose()
        .map_err(|e| format!("ref.name: {e}"))?;
    Ok((repository, tag))
}

/// The `ref.name` to write for an entry: a bare tag (or nothing) in the default repository, so
/// that skopeo, umoci and oras find it; `repo:tag` or `repo@digest` elsewhere.
pub(crate) fn ref_name(
    repository: &Repository,
    tag: Option<&Tag>,
    digest: &Digest,
    default: &Repository,
) -> Option<String> {
    match (repository == default, tag) {
        (true, Some(tag)) => Some(tag.to_string()),
        (true, None) => None,
        (false, Some(tag)) => Some(format!("{repository}:{tag}")),
        (false, None) => Some(format!("{repository}@{digest}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ref_name: Option<&str>, expected: Result<(&str, Option<&str>), ()>) {
        let default: Repository = "default".parse().unwrap();
        let got = owner(ref_name, &default)
            .map(|(r, t)| (r.to_string(), t.map(|t| t.to_string())))
            .map_err(|_| ());
        let expected = expected.map(|(r, t)| (r.to_owned(), t.map(str::to_owned)));
        assert_eq!(got, expected, "ref.name {ref_name:?}");
    }

    #[test]
    fn ref_names_map_to_repositories() {
        let digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        check(None, Ok(("default", None)));
        check(Some(""), Ok(("default", None)));
        check(Some("v1.0"), Ok(("default", Some("v1.0"))));
        check(Some("latest"), Ok(("default", Some("latest"))));
        check(Some("team/app:v2"), Ok(("team/app", Some("v2"))));
        check(Some("team/app"), Ok(("team/app", None)));
        check(Some(&format!("team/app@{digest}")), Ok(("team/app", None)));
        check(
            Some(&format!("team/app:v3@{digest}")),
            Ok(("team/app", Some("v3"))),
        );
        check(
            Some("docker.io/library/ubuntu:22.04"),
            Ok(("docker.io/library/ubuntu", Some("22.04"))),
        );
        check(Some("localhost:5000/x:t"), Err(()));
        check(Some("Team/App:v1"), Err(()));
        check(Some("team/app@sha256:abc"), Err(()));
        check(Some("team/app:"), Err(()));
        check(Some("a b"), Err(()));
    }

    #[test]
    fn written_ref_names_read_back_as_their_owner() {
        let default: Repository = "default".parse().unwrap();
        let other: Repository = "team/app".parse().unwrap();
        let tag: Tag = "v1".parse().unwrap();
        let digest = Digest::sha256(b"m");
        for repo in [&default, &other] {
            for tag in [Some(&tag), None] {
                let name = ref_name(repo, tag, &digest, &default);
                let (owner_repo, owner_tag) = owner(name.as_deref(), &default).unwrap();
                assert_eq!((&owner_repo, owner_tag.as_ref()), (repo, tag));
            }
        }
        assert_eq!(
            ref_name(&default, Some(&tag), &digest, &default).as_deref(),
            Some("v1")
        );
    }

    #[test]
    fn unreadable_entries_are_skipped_and_kept() {
        let default: Repository = "default".parse().unwrap();
        let json = format!(
            r#"{{"schemaVersion":2,"x-other":true,"manifests":[
                {{"mediaType":"{m}","digest":"{d}","size":3,"annotations":{{"{r}":"v1"}}}},
                {{"mediaType":"{m}","digest":"sha256:bad","size":3}},
                {{"mediaType":"{m}","digest":"{d}","size":3,"annotations":{{"{r}":"Bad Name"}}}}
            ]}}"#,
            m = media_type::OCI_MANIFEST,
            d = Digest::sha256(b"abc"),
            r = REF_NAME
        );
        let mut index = IndexFile::parse(json.as_bytes()).unwrap();
        let entries = index.entries(&default);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].tag.as_ref().map(Tag::as_str), Some("v1"));
        assert_eq!(index.remove(&default, |_| true).len(), 1);
        let rewritten: Value = serde_json::from_slice(&index.to_json()).unwrap();
        assert_eq!(
            rewritten["manifests"].as_array().unwrap().len(),
            2,
            "unreadable entries survive"
        );
        assert_eq!(
            rewritten["x-other"],
            Value::Bool(true),
            "unknown fields survive"
        );
    }
}
