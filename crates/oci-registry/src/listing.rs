//! Listings (`_catalog`, `tags/list`): paged with `n` and `last`, following `Link`, and robust
//! to registries that ignore both and send everything, unsorted, on every page.

use futures::stream::{self, BoxStream, StreamExt};
use http::{Method, StatusCode, header};
use oci_store::{ListParams, Result};
use oci_types::Repository;

use crate::client::{RegistryClient, Target};
use crate::response::read_limited;
use crate::transport::Call;

/// The page size asked of registries when listing everything (ECR's maximum).
const LIST_PAGE: usize = 1000;

/// The most pages one listing asks for (ten million names at full pages): a registry that
/// hands out a new page with ever larger names for ever must not keep `hoist ls` or a sync
/// going for ever.
const MAX_LIST_PAGES: usize = 10_000;

/// A listing endpoint: where it is, what it needs, and how to read its names.
pub(crate) struct Listing<T> {
    pub(crate) path: String,
    pub(crate) scope: String,
    pub(crate) repo: Option<Repository>,
    /// The JSON field holding the names (`tags`, `repositories`).
    pub(crate) field: &'static str,
    pub(crate) parse: fn(&str) -> Option<T>,
    pub(crate) name_of: fn(&T) -> String,
}

impl RegistryClient {
    /// Pages through a listing endpoint, following `Link`, else `last`.
    pub(crate) fn list<T: Send + 'static>(
        &self,
        listing: Listing<T>,
        params: &ListParams,
    ) -> BoxStream<'static, Result<T>> {
        let Listing {
            path,
            scope,
            repo: target_repo,
            field,
            parse,
            name_of,
        } = listing;
        struct Pager<T> {
            next: Option<String>,
            remaining: Option<usize>,
            buffered: std::collections::VecDeque<T>,
            /// The last name handed out (or `start_after`): registries that ignore `n` and
            /// `last` send everything on every page, unsorted, so each page is sorted and
            /// only names after this one are kept.
            after: Option<String>,
            /// Pages asked for so far: at most [`MAX_LIST_PAGES`].
            pages: usize,
        }
        let client = self.clone();
        let page = params.limit.map_or(LIST_PAGE, |l| l.clamp(1, LIST_PAGE));
        let first = match &params.start_after {
            // Encoded: `last` may come from outside (a mirror's client), and must stay one
            // value of the query.
            Some(last) => {
                let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
                format!("{path}?n={page}&last={last}")
            }
            None => format!("{path}?n={page}"),
        };
        if params.limit == Some(0) {
            return stream::empty().boxed();
        }
        let state = Pager {
            next: Some(first),
            remaining: params.limit,
            buffered: std::collections::VecDeque::new(),
            after: params.start_after.clone(),
            pages: 0,
        };
        stream::unfold(state, move |mut state| {
            let (client, scope, target_repo, path) = (
                client.clone(),
                scope.clone(),
                target_repo.clone(),
                path.clone(),
            );
            async move {
                loop {
                    if state.remaining == Some(0) {
                        return None;
                    }
                    if let Some(item) = state.buffered.pop_front() {
                        state.remaining = state.remaining.map(|r| r - 1);
                        state.after = Some(name_of(&item));
                        return Some((Ok(item), state));
                    }
                    let url = state.next.take()?;
                    state.pages += 1;
                    if state.pages > MAX_LIST_PAGES {
                        let error = client.backend(format!(
                            "{path}: the listing goes on past {MAX_LIST_PAGES} pages; stopped"
                        ));
                        return Some((Err(error), state));
                    }
                    let uri = match client.resolve(&url) {
                        Ok(uri) => uri,
                        Err(error) => return Some((Err(error), state)),
                    };
                    let mut call = Call::new(Method::GET, uri);
                    let target = match &target_repo {
                        Some(repo) => Target::Repository(repo),
                        None => Target::Catalog,
                    };
                    let response = match client
                        .expect(&mut call, &scope, &[StatusCode::OK], target)
                        .await
                    {
                        Ok(response) => response,
                        Err(error) => return Some((Err(error), state)),
                    };
                    let link = response
                        .headers()
                        .get(header::LINK)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(';').next())
                        .map(|v| {
                            v.trim()
                                .trim_start_matches('<')
                                .trim_end_matches('>')
                                .to_owned()
                        });
                    let stall = client.inner.stall_timeout;
                    let body = match read_limited(response, 64 << 20, stall).await {
                        Ok(body) => body,
                        Err(error) => return Some((Err(error), state)),
                    };
                    let names: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get(field).cloned())
                        .and_then(|v| serde_json::from_value(v).ok())
                        .unwrap_or_default();
                    let full_page = names.len() >= page;
                    let mut names: Vec<String> = names
                        .into_iter()
                        .filter(|n| state.after.as_ref().is_none_or(|after| n > after))
                        .collect();
                    names.sort();
                    names.dedup();
                    let items: Vec<T> = names.iter().filter_map(|n| parse(n)).collect();
                    // A page that brings nothing new ends the listing, whatever it links to.
                    if items.is_empty() {
                        return None;
                    }
                    // Without a Link, a full page may mean more: ask again after its last name.
                    state.next = link.or_else(|| {
                        full_page
                            .then(|| items.last().map(name_of))
                            .flatten()
                            .map(|last| format!("{path}?n={page}&last={last}"))
                    });
                    state.buffered.extend(items);
                }
            }
        })
        .boxed()
    }
}
