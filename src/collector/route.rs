//! [`Route`]: one row of the route table — a method and path, the access it needs, and the
//! handler that answers it.
//!
//! The router, the API-key check, the OpenAPI document and the tests are all derived from
//! one table of these rows (`routes::ROUTES`), so a method the router answers cannot go
//! unchecked: the check is attached to the handler of the same row, and `HEAD`, which answers
//! through the `GET` handler, passes through the `GET` row's check.

use axum::routing::{MethodFilter, MethodRouter};

use super::auth::Access;

/// The methods routes are declared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// `GET`, and `HEAD` through the same handler and check.
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    pub(crate) fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Delete => MethodFilter::DELETE,
        }
    }

    /// The lower-case name OpenAPI uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Put => "put",
            Self::Delete => "delete",
        }
    }
}

/// One route: what the router answers, and what the caller needs to be answered.
#[derive(Debug)]
pub(crate) struct Route<S> {
    pub(crate) verb: Verb,
    /// The path template, in axum's syntax (`/v1/kv/{ns}/{*key}`).
    pub(crate) path: &'static str,
    pub(crate) access: Access,
    /// Builds the handler for `verb`'s filter (`|m| on(m, handler)`).
    pub(crate) handler: fn(MethodFilter) -> MethodRouter<S>,
}
