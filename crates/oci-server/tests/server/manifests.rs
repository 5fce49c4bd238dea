//! Manifests: push by tag and by digest, reads, tag listing with pagination, deletes, and the
//! referrers API.

use std::sync::Arc;

use http::StatusCode;
use oci_server::{MAX_LISTING_PAGE, RegistryServer};
use oci_store::{MemoryStore, OciInterface, PushManifestParams};
use oci_types::{MediaType, Repository, Tag};
use serde_json::{Value, json};

use crate::support::{Client, EMPTY_JSON, INDEX, MANIFEST, digest, serve, start_default};

#[tokio::test]
async fn a_manifest_pushed_by_tag_reads_back_identical_by_tag_and_by_digest() {
    let (_server, client) = start_default().await;
    let image = client.push_image("team/app", "v1", b"layer").await;

    for reference in ["v1", image.digest.as_str()] {
        let path = format!("/v2/team/app/manifests/{reference}");
        let get = client.get(&path).send().await;
        assert_eq!(get.status, StatusCode::OK, "{reference}");
        assert_eq!(get.body, image.manifest, "{reference}: bytes as pushed");
        assert_eq!(get.header("Content-Type"), Some(MANIFEST));
        assert_eq!(
            get.header("Docker-Content-Digest"),
            Some(image.digest.as_str())
        );

        let head = client.head(&path).send().await;
        assert_eq!(head.status, StatusCode::OK, "{reference}");
        assert_eq!(
            head.header("Docker-Content-Digest"),
            Some(image.digest.as_str())
        );
        assert_eq!(
            head.header("Content-Length"),
            Some(image.manifest.len().to_string().as_str())
        );
    }
}

#[tokio::test]
async fn a_manifest_push_answers_its_location_digest_and_tags() {
    let (_server, client) = start_default().await;
    let image = client.push_image("r", "v1", b"layer").await;
    // The same manifest again, by digest, with two more tags.
    let reply = client
        .put(&format!("/v2/r/manifests/{}?tag=a&tag=b", image.digest))
        .header("Content-Type", MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(
        reply.header("Location"),
        Some(format!("/v2/r/manifests/{}", image.digest).as_str())
    );
    let tags: Vec<&str> = reply
        .headers
        .get_all("OCI-Tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["a", "b"]);
    let listed = client.get("/v2/r/tags/list").send().await.json();
    assert_eq!(listed["tags"], json!(["a", "b", "v1"]));
}

/// One push applies at most 64 tags: more `?tag=` values are not refused but left
/// unconfirmed (no `OCI-Tag`), for the client to push one by one, so that no request makes
/// the store do unbounded work under its lock.
#[tokio::test]
async fn a_push_applies_at_most_64_tags_and_confirms_those() {
    let (_server, client) = start_default().await;
    let image = client.push_image("r", "v1", b"layer").await;
    let query: Vec<String> = (0..100).map(|i| format!("tag=t{i:03}")).collect();
    let reply = client
        .put(&format!(
            "/v2/r/manifests/{}?{}",
            image.digest,
            query.join("&")
        ))
        .header("Content-Type", MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let confirmed: Vec<String> = reply
        .headers
        .get_all("OCI-Tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..64).map(|i| format!("t{i:03}")).collect();
    assert_eq!(confirmed, expected);
    let listed = client.get("/v2/r/tags/list").send().await.json();
    assert_eq!(listed["tags"].as_array().unwrap().len(), 64 + 1, "{listed}");
}

#[tokio::test]
async fn a_manifest_naming_a_missing_blob_is_refused() {
    let (_server, client) = start_default().await;
    let manifest = crate::support::image_manifest(&digest(b"c"), 1, &digest(b"l"), 1);
    let reply = client
        .put("/v2/r/manifests/v1")
        .header("Content-Type", MANIFEST)
        .body(manifest)
        .send()
        .await;
    reply.assert_error(StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN");
    let get = client.get("/v2/r/manifests/v1").send().await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tags_are_listed_in_pages_linked_by_n_and_last() {
    let (_server, client) = start_default().await;
    let image = client.push_image("r", "t1", b"layer").await;
    for tag in ["t2", "t3", "t4", "t5"] {
        client
            .push_manifest("r", tag, MANIFEST, &image.manifest)
            .await;
    }

    let all = client.get("/v2/r/tags/list").send().await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(
        all.json(),
        json!({"name": "r", "tags": ["t1", "t2", "t3", "t4", "t5"]})
    );
    assert_eq!(all.header("Link"), None, "one page: no next");

    // Follow the `Link` headers from the first page to the last.
    let mut pages: Vec<Value> = Vec::new();
    let mut next = Some("/v2/r/tags/list?n=2".to_owned());
    while let Some(path) = next {
        assert!(pages.len() < 5, "the links do not end: {pages:?}");
        let page = client.get(&path).send().await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        pages.push(page.json()["tags"].clone());
        next = page.header("Link").map(|link| {
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("not a next link: {link}"));
            target.to_owned()
        });
    }
    assert_eq!(
        pages,
        [json!(["t1", "t2"]), json!(["t3", "t4"]), json!(["t5"])]
    );

    let first = client.get("/v2/r/tags/list?n=2").send().await;
    assert_eq!(
        first.header("Link"),
        Some("</v2/r/tags/list?n=2&last=t2>; rel=\"next\"")
    );
    let after = client.get("/v2/r/tags/list?last=t3").send().await;
    assert_eq!(after.json()["tags"], json!(["t4", "t5"]));

    let not_a_count = client.get("/v2/r/tags/list?n=many").send().await;
    assert_eq!(not_a_count.status, StatusCode::BAD_REQUEST);
}

/// However many tags there are and whatever `n` asks, one answer lists at most
/// `MAX_LISTING_PAGE` of them and links to the rest: no request makes the server collect
/// and render them all at once.
#[tokio::test]
async fn a_tag_listing_holds_at_most_the_largest_page_and_links_to_the_rest() {
    let store = Arc::new(MemoryStore::new());
    let listening = serve(RegistryServer::new(
        Arc::clone(&store) as Arc<dyn OciInterface>
    ))
    .await;
    let client = Client::new(&listening);
    let image = client.push_image("r", "t", b"layer").await;
    let repo = Repository::parse("r").unwrap();
    let tags: Vec<Tag> = (0..MAX_LISTING_PAGE + 5)
        .map(|i| Tag::parse(&format!("x{i:06}")).unwrap())
        .collect();
    for batch in tags.chunks(1000) {
        let params = PushManifestParams::new().with_tags(batch.iter().cloned());
        let manifest = image.manifest.clone();
        store
            .push_manifest(&repo, manifest, &MediaType::from_static(MANIFEST), &params)
            .await
            .unwrap();
    }
    let last = format!("x{:06}", MAX_LISTING_PAGE - 2);
    for path in [
        "/v2/r/tags/list".to_owned(),
        format!("/v2/r/tags/list?n={}", usize::MAX),
    ] {
        let first = client.get(&path).send().await;
        assert_eq!(first.status, StatusCode::OK, "{path}");
        let listed = first.json()["tags"].as_array().unwrap().len();
        assert_eq!(listed, MAX_LISTING_PAGE, "{path}");
        let link = format!("</v2/r/tags/list?n={MAX_LISTING_PAGE}&last={last}>; rel=\"next\"");
        assert_eq!(first.header("Link"), Some(link.as_str()), "{path}");
        let rest = client
            .get(&format!("/v2/r/tags/list?n={MAX_LISTING_PAGE}&last={last}"))
            .send()
            .await;
        let rest: Vec<String> = serde_json::from_value(rest.json()["tags"].clone()).unwrap();
        let expected: Vec<String> = (MAX_LISTING_PAGE - 1..MAX_LISTING_PAGE + 5)
            .map(|i| format!("x{i:06}"))
            .collect();
        assert_eq!(rest, expected, "{path}");
    }
}

#[tokio::test]
async fn deleting_a_tag_keeps_the_manifest_and_deleting_the_digest_removes_it() {
    let (_server, client) = start_default().await;
    let image = client.push_image("r", "v1", b"layer").await;
    client
        .push_manifest("r", "v2", MANIFEST, &image.manifest)
        .await;

    let untagged = client.delete("/v2/r/manifests/v1").send().await;
    assert_eq!(untagged.status, StatusCode::ACCEPTED, "{}", untagged.text());
    client
        .get("/v2/r/manifests/v1")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    let by_digest = format!("/v2/r/manifests/{}", image.digest);
    assert_eq!(client.get(&by_digest).send().await.status, StatusCode::OK);
    assert_eq!(
        client.get("/v2/r/tags/list").send().await.json()["tags"],
        json!(["v2"])
    );

    let deleted = client.delete(&by_digest).send().await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{}", deleted.text());
    client
        .get(&by_digest)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    let head = client.head(&by_digest).send().await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
}

/// An artifact (an empty config, one layer of `layer`) about `subject`.
fn artifact(subject: &str, subject_size: usize, artifact_type: &str, layer: &[u8]) -> Vec<u8> {
    let (empty, layer_size, layer) = (digest(b"{}"), layer.len(), digest(layer));
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": layer_size}],
        "subject": {"mediaType": MANIFEST, "digest": subject, "size": subject_size},
    }))
    .unwrap()
}

#[tokio::test]
async fn referrers_list_the_manifests_whose_subject_is_the_digest() {
    let (_server, client) = start_default().await;
    let image = client.push_image("r", "v1", b"layer").await;
    for blob in [b"{}".as_slice(), b"signature", b"an sbom"] {
        client.push_blob("r", blob).await;
    }
    let size = image.manifest.len();
    let signed = artifact(
        &image.digest,
        size,
        "application/vnd.example.sig",
        b"signature",
    );
    let described = artifact(
        &image.digest,
        size,
        "application/vnd.example.sbom",
        b"an sbom",
    );

    let mut pushed = Vec::new();
    for manifest in [&signed, &described] {
        let digest = digest(manifest);
        let reply = client.push_manifest("r", &digest, MANIFEST, manifest).await;
        // The registry tells the client it keeps the referrers itself.
        assert_eq!(reply.header("OCI-Subject"), Some(image.digest.as_str()));
        pushed.push(digest);
    }
    // A manifest without a subject gets no such header.
    let plain = client
        .push_manifest("r", "plain", MANIFEST, &image.manifest)
        .await;
    assert_eq!(plain.header("OCI-Subject"), None);

    let listed = client
        .get(&format!("/v2/r/referrers/{}", image.digest))
        .send()
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    assert_eq!(listed.header("Content-Type"), Some(INDEX));
    let index = listed.json();
    assert_eq!(index["mediaType"], INDEX);
    let mut found: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["artifactType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        (pushed[0].clone(), "application/vnd.example.sig".to_owned()),
        (pushed[1].clone(), "application/vnd.example.sbom".to_owned()),
    ];
    expected.sort();
    assert_eq!(found, expected);

    let filtered = client
        .get(&format!(
            "/v2/r/referrers/{}?artifactType=application/vnd.example.sig",
            image.digest
        ))
        .send()
        .await;
    assert_eq!(filtered.header("OCI-Filters-Applied"), Some("artifactType"));
    let manifests = filtered.json()["manifests"].clone();
    assert_eq!(manifests.as_array().unwrap().len(), 1, "{manifests}");
    assert_eq!(manifests[0]["digest"], json!(pushed[0]));

    // A digest nothing refers to has an empty list, not an error.
    let none = client
        .get(&format!("/v2/r/referrers/{}", pushed[0]))
        .send()
        .await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.json()["manifests"], json!([]));
}
