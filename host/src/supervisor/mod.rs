//! The process model: the master (`master`) forks and supervises worker
//! processes (`worker`), each serving one staged plugin build (`staging`).
pub mod master;
pub mod staging;
pub mod worker;
