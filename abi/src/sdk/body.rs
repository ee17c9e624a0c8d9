//! The response body: PEP 3333's iterable, as the application builds it, and
//! the state the SDK keeps behind `nwsgi_body` while the host drains it.

use std::fmt;

use super::error::Error;

type ChunkIter = Box<dyn Iterator<Item = Result<Vec<u8>, Error>> + Send + 'static>;

/// What [`App::call`](crate::App::call) returns besides what it wrote.
///
/// * [`Body::empty`]: no iterator; everything (if anything) went out through
///   [`StartResponse::write`](crate::StartResponse::write).
/// * One chunk ([`Body::from_static`], `From<Vec<u8>>`, `From<String>`, ...):
///   handed over as `NWSGI_BODY_LAST`, so the host can frame the response
///   with `Content-Length`.
/// * An iterator ([`Body::from_iter`], [`Body::from_fallible_iter`]): each item
///   is sent as `NWSGI_BODY_MORE` as soon as it is produced, then
///   `NWSGI_BODY_END`; without an application `Content-Length` the host uses
///   chunked encoding.
///
/// Closing is dropping: the host's `close` drops the iterator exactly once,
/// after the last chunk, on error, or when the client disconnects. A `Drop`
/// impl on the iterator therefore observes PEP 3333's `close()`.
pub struct Body(Kind);

enum Kind {
    Empty,
    Single(Single),
    Iter(ChunkIter),
}

/// A one-chunk body's bytes.
pub(crate) enum Single {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Body {
    /// No body iterator (the `nwsgi_body` stays zeroed).
    pub fn empty() -> Body {
        Body(Kind::Empty)
    }

    /// One chunk of static bytes (no copy).
    pub fn from_static(bytes: &'static [u8]) -> Body {
        Body(Kind::Single(Single::Static(bytes)))
    }

    /// A streamed body: each item is one `NWSGI_BODY_MORE` chunk.
    ///
    /// The iterator is dropped when the host closes the body, also early
    /// (client gone): put clean-up in its `Drop`.
    // Named after the brief's API; it cannot be `FromIterator` because of the
    // `Send + 'static` bounds.
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(iter: I) -> Body
    where
        I: IntoIterator,
        I::Item: Into<Vec<u8>>,
        I::IntoIter: Send + 'static,
    {
        Body(Kind::Iter(Box::new(iter.into_iter().map(|c| Ok(c.into())))))
    }

    /// A streamed body whose items may fail. An `Err` is logged and makes
    /// `next` return `NWSGI_ERROR`: the host answers 500 if nothing was sent
    /// yet, else aborts the connection.
    pub fn from_fallible_iter<I, T, E>(iter: I) -> Body
    where
        I: IntoIterator<Item = Result<T, E>>,
        I::IntoIter: Send + 'static,
        T: Into<Vec<u8>>,
        E: Into<Error>,
    {
        Body(Kind::Iter(Box::new(
            iter.into_iter()
                .map(|c| c.map(Into::into).map_err(Into::into)),
        )))
    }

    /// True for [`Body::empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self.0, Kind::Empty)
    }

    /// The whole body, when it is one chunk: what `call` can give the host
    /// in one `write_last` (ABI 1.2) instead of an iterator.
    pub(crate) fn as_single(&self) -> Option<&[u8]> {
        match &self.0 {
            Kind::Single(Single::Static(bytes)) => Some(bytes),
            Kind::Single(Single::Owned(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// How `call` hands this body to the host.
    pub(crate) fn into_handoff(self) -> Handoff {
        match self.0 {
            Kind::Empty => Handoff::None,
            Kind::Single(Single::Static(bytes)) => Handoff::Static(StaticBody::new(bytes)),
            Kind::Single(chunk) => Handoff::State(BodyState::Single { chunk, sent: false }),
            Kind::Iter(iter) => Handoff::State(BodyState::Iter {
                iter,
                current: Vec::new(),
                finished: false,
            }),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Empty => f.write_str("Body::empty()"),
            Kind::Single(Single::Static(b)) => write!(f, "Body::from_static({} bytes)", b.len()),
            Kind::Single(Single::Owned(b)) => write!(f, "Body::from({} bytes)", b.len()),
            Kind::Iter(_) => f.write_str("Body::from_iter(..)"),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(Kind::Single(Single::Owned(bytes)))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(s.into_bytes())
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from_static(s.as_bytes())
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body::from_static(bytes)
    }
}

/// One step of the body, as `next` reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<'a> {
    /// `NWSGI_BODY_MORE`
    More(&'a [u8]),
    /// `NWSGI_BODY_LAST`
    Last(&'a [u8]),
    /// `NWSGI_BODY_END`
    End,
    /// A negative status after logging this error.
    Failed(Error),
}

/// How `call` hands a [`Body`] to the host.
pub(crate) enum Handoff {
    /// No iterator: the `nwsgi_body` stays zeroed.
    None,
    /// One static chunk. Its whole state is plain `Copy` data, so the
    /// boundary keeps it in per-thread storage instead of a heap box.
    Static(StaticBody),
    /// Everything else, boxed behind `nwsgi_body.state` until `close`.
    State(BodyState),
}

/// A body of one static chunk: `Last(bytes)` on the first `next`, `End`
/// after. Nothing to drop, so closing it is forgetting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StaticBody {
    bytes: &'static [u8],
    sent: bool,
}

impl StaticBody {
    fn new(bytes: &'static [u8]) -> StaticBody {
        StaticBody { bytes, sent: false }
    }

    /// Produce the next chunk (static: it outlives any `close`).
    pub(crate) fn next(&mut self) -> Step<'static> {
        if std::mem::replace(&mut self.sent, true) {
            Step::End
        } else {
            Step::Last(self.bytes)
        }
    }

    /// The same body as a [`BodyState`], for when no per-thread home is free.
    pub(crate) fn into_state(self) -> BodyState {
        BodyState::Single {
            chunk: Single::Static(self.bytes),
            sent: self.sent,
        }
    }
}

/// What a boxed `nwsgi_body.state` points to. Dropping it is the body's
/// `close`.
pub(crate) enum BodyState {
    /// One chunk: `Last(chunk)` on the first `next`, `End` after. The chunk
    /// stays here, unmoved, until close, as the header requires.
    Single { chunk: Single, sent: bool },
    Iter {
        iter: ChunkIter,
        /// The chunk last handed to the host: it must stay alive (and
        /// unmoved) until the next `next` or `close`, so it is kept here.
        current: Vec<u8>,
        /// The iterator ended or failed (or a `next` panicked): `next` only
        /// reports the end from now on. The iterator itself lives until close.
        finished: bool,
    },
}

impl BodyState {
    /// Produce the next chunk. The returned bytes are borrowed from `self`
    /// and stay valid until `self` is used again.
    pub(crate) fn next(&mut self) -> Step<'_> {
        match self {
            BodyState::Single { chunk, sent } => {
                if std::mem::replace(sent, true) {
                    return Step::End;
                }
                Step::Last(match chunk {
                    Single::Static(bytes) => bytes,
                    Single::Owned(bytes) => bytes.as_slice(),
                })
            }
            BodyState::Iter {
                iter,
                current,
                finished,
            } => {
                if *finished {
                    return Step::End;
                }
                match iter.next() {
                    Some(Ok(chunk)) => {
                        *current = chunk;
                        Step::More(current)
                    }
                    Some(Err(e)) => {
                        *finished = true;
                        Step::Failed(e)
                    }
                    None => {
                        *finished = true;
                        Step::End
                    }
                }
            }
        }
    }

    /// After a panic in `next`: never call into the iterator again (it may be
    /// half-updated); it is still dropped on close.
    pub(crate) fn poison(&mut self) {
        match self {
            BodyState::Single { sent, .. } => *sent = true,
            BodyState::Iter { finished, .. } => *finished = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The boxed state of a body that has one.
    fn state(body: Body) -> BodyState {
        match body.into_handoff() {
            Handoff::State(state) => state,
            Handoff::Static(_) => panic!("a static body"),
            Handoff::None => panic!("no body"),
        }
    }

    #[test]
    fn empty_has_no_state() {
        assert!(matches!(Body::empty().into_handoff(), Handoff::None));
        assert!(Body::default().is_empty());
    }

    #[test]
    fn single_chunk_is_last() {
        let Handoff::Static(mut s) = Body::from("hi").into_handoff() else {
            panic!("static bytes stay static");
        };
        let mut boxed = s.into_state();
        assert_eq!(s.next(), Step::Last(b"hi"));
        assert_eq!(s.next(), Step::End);
        assert_eq!(s.next(), Step::End);
        assert_eq!(boxed.next(), Step::Last(b"hi"));
        assert_eq!(boxed.next(), Step::End);
        let mut s = state(Body::from(String::from("owned")));
        assert_eq!(s.next(), Step::Last(b"owned"));
        assert_eq!(s.next(), Step::End);
        let mut s = state(Body::from(vec![1, 2]));
        s.poison();
        assert_eq!(s.next(), Step::End, "poisoned before the chunk went out");
    }

    #[test]
    fn iterator_is_more_then_end_and_drop_is_close() {
        struct Counted(Arc<AtomicUsize>, std::vec::IntoIter<&'static str>);
        impl Iterator for Counted {
            type Item = &'static str;
            fn next(&mut self) -> Option<&'static str> {
                self.1.next()
            }
        }
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let closed = Arc::new(AtomicUsize::new(0));
        let it = Counted(closed.clone(), vec!["a", "", "b"].into_iter());
        let mut s = state(Body::from_iter(it));
        assert_eq!(s.next(), Step::More(b"a"));
        assert_eq!(s.next(), Step::More(b""));
        assert_eq!(s.next(), Step::More(b"b"));
        assert_eq!(s.next(), Step::End);
        assert_eq!(s.next(), Step::End);
        assert_eq!(closed.load(Ordering::SeqCst), 0, "not closed before close");
        drop(s);
        assert_eq!(closed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn fallible_iterator_fails_once() {
        let items: Vec<Result<&str, &str>> = vec![Ok("x"), Err("bad"), Ok("never")];
        let mut s = state(Body::from_fallible_iter(items));
        assert_eq!(s.next(), Step::More(b"x"));
        assert_eq!(s.next(), Step::Failed(Error::from("bad")));
        assert_eq!(s.next(), Step::End);
    }
}
