//! The process model: the master (`master`) forks and supervises worker
//! processes (`worker`), each serving one staged plugin build (`staging`);
//! `health` judges crashes (backoff per slot, a new build's probation) and
//! `control` is how `host reload`/`stop`/`status` reach a running master,
//! `notify` how the master tells systemd its state, and `process` the
//! process's surroundings (umask), and `upgrade` how a master re-executes
//! the binary and hands its sockets over (USR2).
pub mod admin;
pub mod control;
pub mod health;
pub mod master;
pub mod notify;
pub mod process;
pub mod report;
pub mod staging;
pub mod upgrade;
pub mod worker;
