//! `/api/v1/...`: the JSON admin API.

use bytes::Bytes;
use hyper::{Method, Response};

use super::{Body, HttpState};

/// The response for an API path, or `None` if no endpoint has it.
pub fn route(
    _state: &HttpState,
    _method: &Method,
    _path: &str,
    _query: Option<&str>,
    _body: &Bytes,
) -> Option<Response<Body>> {
    None
}
