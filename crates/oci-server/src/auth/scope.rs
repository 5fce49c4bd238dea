//! Scopes: what a token allows, what a request needs, and what a request that got through may
//! do beyond its own endpoint.

use std::sync::Arc;

use http::Method;
use serde::{Deserialize, Serialize};

use crate::policy::{AccessPolicy, Action};
use crate::route::Route;

/// A token's grant: whose it is and what it allows (the claims of a signed access token).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Grant {
    pub(super) user: Option<String>,
    pub(super) scopes: Vec<Scope>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Scope {
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) actions: Vec<String>,
}

impl Scope {
    /// Reads `repository:team/app:pull,push`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    pub(super) fn repository(name: &str, action: Action) -> Self {
        Self {
            kind: "repository".to_owned(),
            name: name.to_owned(),
            actions: vec![action.as_str().to_owned()],
        }
    }

    pub(super) fn catalog() -> Self {
        Self {
            kind: "registry".to_owned(),
            name: "catalog".to_owned(),
            actions: vec!["*".to_owned()],
        }
    }

    pub(super) fn covers(&self, needed: &Scope) -> bool {
        self.kind == needed.kind
            && self.name == needed.name
            && needed
                .actions
                .iter()
                .all(|a| self.actions.iter().any(|mine| mine == a || mine == "*"))
    }

    pub(super) fn render(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// What a request that got through may do beyond what it asked: the handlers ask it about
/// other repositories (the source of a mount) and about each repository of the catalog.
#[derive(Debug, Clone)]
pub(crate) struct Access(pub(super) Option<Arc<Granted>>);

#[derive(Debug)]
pub(super) struct Granted {
    pub(super) user: Option<String>,
    pub(super) policy: Arc<AccessPolicy>,
    /// A token's scopes; `None` under basic auth, where the policy is asked directly.
    pub(super) scopes: Option<Vec<Scope>>,
}

impl Access {
    /// No auth: everything.
    pub(crate) fn unrestricted() -> Self {
        Self(None)
    }

    /// Whether the request may `action` on `repository`: by its token's scopes under token
    /// auth (those were narrowed by the policy when issued), by the policy under basic auth.
    pub(crate) fn may(&self, repository: &str, action: Action) -> bool {
        let Some(granted) = &self.0 else {
            return true;
        };
        match &granted.scopes {
            Some(scopes) => {
                let needed = Scope::repository(repository, action);
                scopes.iter().any(|s| s.covers(&needed))
            }
            None => granted
                .policy
                .allowed(granted.user.as_deref(), repository)
                .contains(action),
        }
    }

    /// Whether the catalog lists `repository`: the user may pull it by the policy (a token for
    /// the catalog names no repositories).
    pub(crate) fn lists(&self, repository: &str) -> bool {
        self.0.as_ref().is_none_or(|granted| {
            granted
                .policy
                .allowed(granted.user.as_deref(), repository)
                .contains(Action::Pull)
        })
    }
}

/// The scope a request needs: pull to read, push to write (an upload's status too: it is
/// part of a push), delete to delete; the catalog needs `registry:catalog:*`; `/v2/` needs
/// only a valid token.
pub(super) fn needed_scope(method: &Method, route: &Route<'_>) -> Option<Scope> {
    let name = match route {
        Route::Base | Route::Token => return None,
        Route::Catalog => return Some(Scope::catalog()),
        Route::Blob { name, .. }
        | Route::Manifest { name, .. }
        | Route::Uploads { name }
        | Route::Upload { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. } => name,
    };
    let action = match *method {
        Method::GET | Method::HEAD if !matches!(route, Route::Upload { .. }) => Action::Pull,
        Method::DELETE if !matches!(route, Route::Upload { .. }) => Action::Delete,
        _ => Action::Push,
    };
    Some(Scope::repository(name, action))
}
