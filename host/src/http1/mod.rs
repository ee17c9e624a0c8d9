//! HTTP/1.1 as bytes: parsing request heads (`parse`, with `memo` for a
//! head seen just before), request bodies (`body`, `chunked`), and encoding
//! responses (`response`, `date`). Pure functions over buffers: no sockets,
//! no threads, no plugin.
pub mod body;
pub mod chunked;
pub mod date;
pub mod error;
pub mod forwarded;
pub mod head;
pub mod memo;
pub mod parse;
pub mod response;
