//! A small router for [`App`](crate::App)s: path patterns with `{name}`
//! segments, matched by method, with the 404 and 405 (and its `Allow`
//! header) an HTTP framework would answer.
//!
//! Built once in `init`, matched per request without allocating: a match
//! borrows the route's handler and the request's path. Match the path as
//! the client sent it, `environ.raw_path_info()`, so that `%2F` in a
//! segment is not taken for a `/`; [`Params::decoded`] and
//! [`Params::parse`] percent-decode a segment.
//!
//! ```
//! use abi::http::Method;
//! use abi::route::{Routed, Router};
//!
//! let router = Router::new()
//!     .route("/todos", Method::GET, "list")
//!     .route("/todos", Method::POST, "create")
//!     .route("/todos/{id}", Method::GET, "show");
//! let Routed::Found(handler, params) = router.find(&Method::GET, "/todos/7") else {
//!     panic!("no match");
//! };
//! assert_eq!((*handler, params.get("id")), ("show", Some("7")));
//! assert!(matches!(router.find(&Method::PUT, "/todos"), Routed::NotAllowed("GET,HEAD,POST")));
//! assert!(matches!(router.find(&Method::GET, "/nope"), Routed::NotFound));
//! ```

use std::borrow::Cow;
use std::str::FromStr;

use http::{Method, StatusCode};

use super::body::Body;
use super::error::Error;
use super::query::decode_path;
use super::response::StartResponse;

/// The most `{name}` segments one pattern may have; [`Params`] keeps them
/// inline so that matching never allocates.
pub const MAX_PARAMS: usize = 4;

/// Routes from path patterns and methods to handlers of type `H` (a
/// function pointer, an enum, ...).
pub struct Router<H> {
    paths: Vec<Path<H>>,
}

/// One pattern and the handlers registered for it, by method.
struct Path<H> {
    segments: Vec<Segment>,
    handlers: Vec<(Method, H)>,
    /// The `Allow` header of a 405 on this path, kept up to date by
    /// [`Router::route`] so that answering one costs no formatting.
    allow: String,
}

enum Segment {
    Literal(String),
    Param(String),
}

/// What [`Router::find`] made of a request.
pub enum Routed<'r, 'p, H> {
    /// The handler for this path and method, and the path's parameters.
    Found(&'r H, Params<'r, 'p>),
    /// The path exists, not with this method: answer 405 with this `Allow`
    /// header ([`method_not_allowed`]).
    NotAllowed(&'r str),
    /// No pattern matches the path.
    NotFound,
}

/// The `{name}` segments of a matched path, as they were in the path given
/// to [`Router::find`] (percent-encoded, for a raw path).
#[derive(Clone, Copy, Debug, Default)]
pub struct Params<'r, 'p> {
    pairs: [(&'r str, &'p str); MAX_PARAMS],
    len: usize,
}

impl<'r, 'p> Params<'r, 'p> {
    /// The segment matched by `{name}`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.pairs[..self.len]
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The segment matched by `{name}`, percent-decoded (`a%2Fb` is
    /// `a/b`; bytes that are not UTF-8 become U+FFFD).
    pub fn decoded(&self, name: &str) -> Option<Cow<'p, str>> {
        self.get(name).map(|v| decode_path(v.as_bytes()))
    }

    /// The segment matched by `{name}`, percent-decoded and parsed; a
    /// segment that does not parse (`/todos/abc` for a number) is the
    /// client's mistake, a 400.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<T, Error> {
        let value = self
            .decoded(name)
            .ok_or_else(|| Error::new(format_args!("no path parameter {name:?}")))?;
        value.parse().map_err(|_| {
            Error::status(StatusCode::BAD_REQUEST)
                .with_message(format_args!("path parameter {name}={value:?} is not valid"))
        })
    }
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { paths: Vec::new() }
    }
}

impl<H> Router<H> {
    pub fn new() -> Router<H> {
        Router::default()
    }

    /// Route `method` on `pattern` (`/todos/{id}`: literal segments and
    /// whole-segment `{name}`s) to `handler`. A `GET` route also answers
    /// `HEAD` (the host sends no body for it). The first route registered
    /// for a path and method wins.
    ///
    /// Panics on a pattern that does not start with `/`, has an empty
    /// `{}`, or more than [`MAX_PARAMS`] parameters: a programming
    /// mistake, found the first time `init` runs (in a unit test).
    pub fn route(mut self, pattern: &str, method: Method, handler: H) -> Router<H> {
        let segments = parse_pattern(pattern);
        let index = match self.paths.iter().position(|p| same(&p.segments, &segments)) {
            Some(index) => index,
            None => {
                self.paths.push(Path {
                    segments,
                    handlers: Vec::new(),
                    allow: String::new(),
                });
                self.paths.len() - 1
            }
        };
        let path = &mut self.paths[index];
        path.handlers.push((method, handler));
        path.allow = allow_header(&path.handlers);
        self
    }

    /// The handler for `method` on `path`: `environ.raw_path_info()` as
    /// UTF-8 (the path relative to where the app is mounted, as the client
    /// sent it; it is ASCII unless the client sent raw bytes).
    pub fn find<'r, 'p>(&'r self, method: &Method, path: &'p str) -> Routed<'r, 'p, H> {
        let mut allowed = None;
        for candidate in &self.paths {
            let Some(params) = match_path(&candidate.segments, path) else {
                continue;
            };
            let wanted = if method == Method::HEAD {
                &Method::GET
            } else {
                method
            };
            let exact = candidate.handlers.iter().find(|(m, _)| m == method);
            match exact.or_else(|| candidate.handlers.iter().find(|(m, _)| m == wanted)) {
                Some((_, handler)) => return Routed::Found(handler, params),
                None => allowed = allowed.or(Some(candidate.allow.as_str())),
            }
        }
        match allowed {
            Some(allow) => Routed::NotAllowed(allow),
            None => Routed::NotFound,
        }
    }
}

/// Answer 405 Method Not Allowed with its `Allow` header and no body.
pub fn method_not_allowed(start: &mut StartResponse<'_>, allow: &str) -> Result<Body, Error> {
    start
        .status(StatusCode::METHOD_NOT_ALLOWED)
        .header("allow", allow)
        .start()?;
    Ok(Body::empty())
}

fn parse_pattern(pattern: &str) -> Vec<Segment> {
    let Some(rest) = pattern.strip_prefix('/') else {
        panic!("route pattern {pattern:?} does not start with '/'");
    };
    let segments: Vec<Segment> = rest
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some("") => panic!("route pattern {pattern:?} has an unnamed parameter"),
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(s.to_owned()),
            },
        )
        .collect();
    let params = segments
        .iter()
        .filter(|s| matches!(s, Segment::Param(_)))
        .count();
    assert!(
        params <= MAX_PARAMS,
        "route pattern {pattern:?} has more than {MAX_PARAMS} parameters"
    );
    segments
}

fn same(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Param(x), Segment::Param(y)) => x == y,
            _ => false,
        })
}

fn match_path<'r, 'p>(segments: &'r [Segment], path: &'p str) -> Option<Params<'r, 'p>> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let mut params = Params::default();
    for segment in segments {
        let part = parts.next()?;
        match segment {
            Segment::Literal(literal) if literal == part => {}
            Segment::Literal(_) => return None,
            // A parameter is a whole, non-empty segment: `/todos/` is not
            // `/todos/{id}` with an empty id.
            Segment::Param(_) if part.is_empty() => return None,
            Segment::Param(name) => {
                params.pairs[params.len] = (name.as_str(), part);
                params.len += 1;
            }
        }
    }
    parts.next().is_none().then_some(params)
}

/// `GET,HEAD,POST`: the methods in registration order, `HEAD` after `GET`
/// (as axum writes it).
fn allow_header<H>(handlers: &[(Method, H)]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for (method, _) in handlers {
        if !methods.contains(&method.as_str()) {
            methods.push(method.as_str());
        }
        if method == Method::GET && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
    }
    methods.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<u8> {
        Router::new()
            .route("/", Method::GET, 0)
            .route("/todos", Method::GET, 1)
            .route("/todos", Method::POST, 2)
            .route("/todos/{id}", Method::GET, 3)
            .route("/todos/{id}", Method::DELETE, 4)
            .route("/a/{x}/b/{y}", Method::PUT, 5)
    }

    fn found(router: &Router<u8>, method: Method, path: &str) -> Option<(u8, Vec<String>)> {
        match router.find(&method, path) {
            Routed::Found(h, p) => {
                let values = p.pairs[..p.len].iter().map(|(_, v)| v.to_string());
                Some((*h, values.collect()))
            }
            _ => None,
        }
    }

    #[test]
    fn literals_params_and_head() {
        let r = router();
        assert_eq!(found(&r, Method::GET, "/"), Some((0, vec![])));
        assert_eq!(found(&r, Method::POST, "/todos"), Some((2, vec![])));
        assert_eq!(found(&r, Method::HEAD, "/todos"), Some((1, vec![])));
        assert_eq!(
            found(&r, Method::DELETE, "/todos/9"),
            Some((4, vec!["9".into()]))
        );
        assert_eq!(
            found(&r, Method::PUT, "/a/1/b/2"),
            Some((5, vec!["1".into(), "2".into()]))
        );
    }

    #[test]
    fn misses_are_404_or_405_with_allow() {
        let r = router();
        for path in ["/todos/", "/todos/1/x", "/todo", "", "todos", "/a/1/b"] {
            assert!(
                matches!(r.find(&Method::GET, path), Routed::NotFound),
                "{path}"
            );
        }
        assert!(matches!(
            r.find(&Method::PUT, "/todos"),
            Routed::NotAllowed("GET,HEAD,POST")
        ));
        assert!(matches!(
            r.find(&Method::POST, "/todos/1"),
            Routed::NotAllowed("GET,HEAD,DELETE")
        ));
    }

    #[test]
    fn params_parse_or_answer_400() {
        let r = router();
        let Routed::Found(_, params) = r.find(&Method::GET, "/todos/x1") else {
            panic!("no match");
        };
        assert_eq!(params.get("id"), Some("x1"));
        assert_eq!(params.get("nope"), None);
        let err = params.parse::<u64>("id").unwrap_err();
        assert_eq!(err.status_code(), Some(StatusCode::BAD_REQUEST));
        let Routed::Found(_, params) = r.find(&Method::GET, "/todos/41") else {
            panic!("no match");
        };
        assert_eq!(params.parse::<u64>("id").unwrap(), 41);
        let Routed::Found(_, params) = r.find(&Method::GET, "/todos/a%2Fb%20c") else {
            panic!("an encoded slash is inside one segment");
        };
        assert_eq!(params.get("id"), Some("a%2Fb%20c"));
        assert_eq!(params.decoded("id").as_deref(), Some("a/b c"));
    }

    #[test]
    #[should_panic(expected = "more than 4 parameters")]
    fn too_many_params_is_refused() {
        let _ = Router::new().route("/{a}/{b}/{c}/{d}/{e}", Method::GET, ());
    }
}
