//! How `host reload`, `host stop` and `host status` reach a running master,
//! and what the master keeps for them.
//!
//! - **The pidfile** (`-p FILE`) holds the master's pid, and the master
//!   holds a lock on it (a POSIX record lock, which forked workers do not
//!   inherit) for as long as it runs: a second master given the same file
//!   is refused, and a control command asks the lock who holds it rather
//!   than trusting a number left in a file by a master that died (and
//!   perhaps reused by another process since).
//! - **A run identity**: the master's pid, its start time and the boot id,
//!   read from `/proc`, so a control command can work it out for the pid it
//!   found without reading any file. Each control file starts with it, and
//!   a file from another run (a master that died, a copy) is ignored.
//! - **The control board**: a small memory file (memfd) the master keeps
//!   open, holding what the status and reload files say. A control command
//!   finds it through `/proc/PID/fd` and reads it: no disk involved, so a
//!   full disk or a clobbered file can neither hang `host reload` nor make
//!   `host status` stale. The files next to the pidfile (`FILE.status`,
//!   `FILE.reload`) are written too, for people and tools, as best effort;
//!   one that cannot be written is removed rather than left stale.
//!
//! The board is a seqlock, as the scoreboard's request lines: the master
//! makes the sequence odd, writes, makes it even; a reader that copies the
//! bytes between two equal even readings has a consistent copy.
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

/// The memfd's name, as `/proc/PID/fd` shows it (`/memfd:NAME (deleted)`).
const BOARD_NAME: &str = "nwsgi-control";
/// Marks a mapping as a control board of this layout.
const BOARD_MAGIC: u64 = 0x6e77_7367_6963_7431; // "nwsgict1"
/// Bytes of status text kept (a line per worker: 256 workers fit).
const STATUS_MAX: usize = 32 * 1024;
/// Bytes of a reload outcome kept.
const RELOAD_MAX: usize = 4 * 1024;
/// The status JSON's memfd (`host status --json`, `host top`): a board of
/// its own, so that the text board's layout, which a master of an older
/// binary may be reading during an upgrade, stays as it was.
const JSON_NAME: &str = "nwsgi-status-json";
const JSON_MAGIC: u64 = 0x6e77_7367_6a73_6e31; // "nwsgjsn1"
/// Bytes of status JSON kept (the master lists only busy threads, so this
/// holds hundreds of workers).
pub const JSON_MAX: usize = 1 << 20;
/// How often a mirror file that could not be written is tried again.
const MIRROR_RETRY: Duration = Duration::from_secs(1);

/// The file next to the pidfile that lists the workers (`host status`).
pub fn status_path(pidfile: &Path) -> PathBuf {
    sibling(pidfile, ".status")
}

/// The file next to the pidfile where reload outcomes are written.
pub fn reload_status_path(pidfile: &Path) -> PathBuf {
    sibling(pidfile, ".reload")
}

/// The file next to the pidfile where `host reload --mount PREFIX` names
/// the one mount the HUP it sends is for (taken, and removed, by the
/// master at that HUP).
pub fn reload_mount_path(pidfile: &Path) -> PathBuf {
    sibling(pidfile, ".reload-mount")
}

fn sibling(pidfile: &Path, suffix: &str) -> PathBuf {
    let mut name = pidfile.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

// --- identity ---------------------------------------------------------------

/// The identity of the run of process `pid`: `PID.STARTTIME.BOOT`, from
/// `/proc` (its start time in clock ticks since boot, and the first eight
/// digits of the boot id). A pid reused later, or after a reboot, gives
/// another identity. None if there is no such process.
pub fn identity(pid: i32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold anything, so count the
    // fields after its closing parenthesis; the start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot: String = boot
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    Some(format!("{pid}.{start}.{boot}"))
}

/// Is `pid` a live process? A zombie (exited, not yet reaped by its
/// parent) has stopped, though `kill(pid, 0)` alone would still say yes.
pub fn running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // /proc/PID/stat: "pid (comm) S ...": the state follows the last ')'.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

// --- the pidfile ------------------------------------------------------------

/// The master's pidfile, locked for the master's whole run and removed when
/// it ends (dropped).
///
/// A POSIX record lock (`F_SETLK`), not `flock`: it belongs to the process,
/// so the workers, which inherit the descriptor through fork, do not hold
/// it, and a master that dies leaves the file unlocked even while its
/// orphaned workers finish. Such a lock is also released when the process
/// closes *any* descriptor of the file, so the master never opens the
/// pidfile a second time: it writes through this one.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    file: File,
    /// Handed over to a new master (an upgrade): left in place when
    /// dropped, for the new master to lock and write.
    keep: bool,
}

impl Pidfile {
    /// Opens (creating it if needed, without truncating: a running master's
    /// pid stays until we know it is not running) and locks `path`. The
    /// error is the one-line reason another master holds it.
    pub fn lock(path: &Path) -> Result<Pidfile, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| format!("cannot open pidfile {}: {e}", path.display()))?;
        let mut lock = whole_file_lock(libc::F_WRLCK);
        // SAFETY: fcntl on our own open descriptor with a valid flock
        // struct that lives for the call.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &mut lock) } != 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EACCES) => {
                    let holder = lock_holder_of(&file)
                        .map(|pid| format!("master {pid}"))
                        .unwrap_or_else(|| "another process".into());
                    return Err(format!(
                        "pidfile {} is locked by {holder}, which is running: stop it first, or give this server another -p",
                        path.display()
                    ));
                }
                // A filesystem without locks (some network mounts): serve
                // anyway; the control commands then trust the pid in it.
                Some(libc::ENOLCK | libc::EOPNOTSUPP) => {
                    tracing::warn!("cannot lock pidfile {}: {e}", path.display());
                }
                _ => return Err(format!("cannot lock pidfile {}: {e}", path.display())),
            }
        }
        Ok(Pidfile {
            path: path.to_path_buf(),
            file,
            keep: false,
        })
    }

    /// Locks `path` once the master holding it lets go, waiting at most
    /// `wait`: the new master of an upgrade takes the pidfile over from
    /// the old one, which releases it when told the new one is ready.
    pub fn lock_when_free(path: &Path, wait: Duration) -> Result<Pidfile, String> {
        let deadline = Instant::now() + wait;
        loop {
            match Pidfile::lock(path) {
                Ok(pidfile) => return Ok(pidfile),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Releases the lock and leaves the file (and the pid in it) for the
    /// new master of an upgrade.
    pub fn hand_over(mut self) {
        self.keep = true;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes our pid over whatever the file held.
    pub fn write_pid(&mut self) -> Result<(), String> {
        let text = format!("{}\n", std::process::id());
        self.file
            .set_len(0)
            .and_then(|()| (&self.file).write_all(text.as_bytes()))
            .and_then(|()| {
                use std::io::Seek;
                // The cursor would otherwise stay past the text: a later
                // rewrite starts again at 0 (set_len does not move it).
                (&self.file).seek(io::SeekFrom::Start(0)).map(|_| ())
            })
            .map_err(|e| format!("cannot write pidfile {}: {e}", self.path.display()))
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Removed while still locked: a new master that opens the path
        // after this creates a new file, which it can lock.
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A lock description covering the whole file.
fn whole_file_lock(kind: i32) -> libc::flock {
    // SAFETY: flock is plain data; all-zero is a valid value (whole file,
    // from offset 0), and the fields that matter are set below.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// Which process holds the lock on the pidfile at `path`, if any.
pub fn lock_holder(path: &Path) -> Option<i32> {
    lock_holder_of(&File::open(path).ok()?)
}

fn lock_holder_of(file: &File) -> Option<i32> {
    let mut lock = whole_file_lock(libc::F_WRLCK);
    // SAFETY: fcntl on an open descriptor with a valid flock struct that
    // lives for the call; F_GETLK only fills it in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return None;
    }
    (lock.l_type != libc::F_UNLCK as libc::c_short && lock.l_pid > 0).then_some(lock.l_pid)
}

// --- the board --------------------------------------------------------------

/// The board's layout, in the memfd.
#[repr(C)]
struct Region {
    magic: AtomicU64,
    /// Odd while the master writes.
    seq: AtomicU64,
    status_len: AtomicU32,
    reload_len: AtomicU32,
    status: [AtomicU8; STATUS_MAX],
    reload: [AtomicU8; RELOAD_MAX],
}

/// The JSON board's layout: one text under its own seqlock.
#[repr(C)]
struct JsonRegion {
    magic: AtomicU64,
    seq: AtomicU64,
    len: AtomicU32,
    bytes: [AtomicU8; JSON_MAX],
}

/// A new memfd called `name`, as long as a `T`, mapped shared and
/// writable for the life of the process (so the board is 'static), with
/// `magic` stored in it; and its descriptor, which `/proc/PID/fd` shows.
fn create_board<T: Layout>(name: &str, magic: u64) -> io::Result<(&'static T, File)> {
    let len = std::mem::size_of::<T>();
    let name = CString::new(name).expect("no NUL in the name");
    // SAFETY: a valid NUL-terminated name and flags; the new descriptor
    // is owned by the File below and nowhere else.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(len as u64)?;
    // SAFETY: maps the whole file, which is `len` bytes long, shared and
    // writable; no existing memory is touched.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is `len` bytes, page-aligned, zero-filled (a new
    // memfd) and never unmapped, so 'static; all-zero bytes are a valid
    // `T` (`Layout`: atomics only).
    let board = unsafe { &*(base as *const T) };
    board.magic().store(magic, Ordering::Release);
    Ok((board, file))
}

/// The master's side of the JSON board.
struct JsonBoard {
    region: &'static JsonRegion,
    _file: File,
}

impl JsonBoard {
    fn create() -> io::Result<JsonBoard> {
        let (region, file) = create_board::<JsonRegion>(JSON_NAME, JSON_MAGIC)?;
        Ok(JsonBoard {
            region,
            _file: file,
        })
    }

    fn write(&self, text: &str) {
        let r = self.region;
        let seq = r.seq.load(Ordering::Relaxed);
        r.seq.store(seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        store_text(&r.bytes, &r.len, text);
        r.seq.store(seq + 2, Ordering::Release);
    }
}

/// The master's side of the board: a shared writable mapping of the memfd,
/// kept (with the descriptor, which `/proc/PID/fd` shows) for the life of
/// the process.
struct Board {
    region: &'static Region,
    _file: File,
}

impl Board {
    fn create() -> io::Result<Board> {
        let (region, file) = create_board::<Region>(BOARD_NAME, BOARD_MAGIC)?;
        Ok(Board {
            region,
            _file: file,
        })
    }

    /// Replaces the status text, the reload text, or both.
    fn write(&self, status: Option<&str>, reload: Option<&str>) {
        let r = self.region;
        let seq = r.seq.load(Ordering::Relaxed);
        r.seq.store(seq + 1, Ordering::Relaxed);
        // The bytes' stores stay after the odd sequence (the write side of
        // a seqlock).
        fence(Ordering::Release);
        if let Some(text) = status {
            store_text(&r.status, &r.status_len, text);
        }
        if let Some(text) = reload {
            store_text(&r.reload, &r.reload_len, text);
        }
        r.seq.store(seq + 2, Ordering::Release);
    }
}

fn store_text(bytes: &[AtomicU8], len: &AtomicU32, text: &str) {
    let text = cut(text, bytes.len());
    for (slot, &b) in bytes.iter().zip(text.as_bytes()) {
        slot.store(b, Ordering::Relaxed);
    }
    len.store(text.len() as u32, Ordering::Relaxed);
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

// --- the master's side ------------------------------------------------------

/// What the master keeps for the control commands: the locked pidfile, the
/// board, and the files beside the pidfile.
pub struct Control {
    /// None once handed over to a new master (an upgrade): this master
    /// keeps only its board, where `host upgrade` reads the outcome.
    pidfile: Option<Pidfile>,
    board: Option<Board>,
    /// The status JSON (None: no memfd; `host status --json` says so).
    json: Option<JsonBoard>,
    /// This run's identity, the first line of every control file.
    run: String,
    status: Mirror,
    reload: Mirror,
    /// Reload outcomes so far (each `host reload` waits for a new one).
    reload_seq: u64,
    /// See `reload_mount_path`.
    reload_mount: PathBuf,
}

/// A control file beside the pidfile: rewritten (write a temporary file,
/// rename it over) when its text changes, retried when that failed.
struct Mirror {
    path: PathBuf,
    /// The text the file should hold, and whether it does.
    text: String,
    written: bool,
    retry_at: Instant,
    /// A failure was logged (once, until a write works again).
    warned: bool,
}

impl Mirror {
    fn new(path: PathBuf) -> Mirror {
        Mirror {
            path,
            text: String::new(),
            written: true,
            retry_at: Instant::now(),
            warned: false,
        }
    }

    fn set(&mut self, text: String) {
        if text != self.text {
            self.text = text;
            self.written = false;
            self.retry_at = Instant::now();
        }
    }

    fn flush(&mut self) {
        if self.written || Instant::now() < self.retry_at {
            return;
        }
        let tmp = sibling(&self.path, ".tmp");
        match fs::write(&tmp, &self.text).and_then(|()| fs::rename(&tmp, &self.path)) {
            Ok(()) => {
                self.written = true;
                self.warned = false;
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                // Better no file than one that says something no longer
                // true (the commands read the board; people read files).
                let _ = fs::remove_file(&self.path);
                self.retry_at = Instant::now() + MIRROR_RETRY;
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        "cannot write {}: {e}; `host status` and `host reload` read the master's memory instead",
                        self.path.display()
                    );
                }
            }
        }
    }
}

impl Control {
    /// Sets up the board for the master holding `pidfile`. Without a board
    /// (no memfd) the control commands fall back on the files.
    pub fn new(pidfile: Pidfile) -> Control {
        let board = Board::create()
            .map_err(|e| tracing::warn!("cannot create the control board: {e}"))
            .ok();
        let run = identity(std::process::id() as i32).unwrap_or_default();
        // Whatever is beside the pidfile is an earlier run's (we hold the
        // lock): gone, rather than read by someone as ours.
        let _ = fs::remove_file(status_path(pidfile.path()));
        let _ = fs::remove_file(reload_status_path(pidfile.path()));
        let reload_mount = reload_mount_path(pidfile.path());
        let _ = fs::remove_file(&reload_mount);
        Control {
            reload_mount,
            status: Mirror::new(status_path(pidfile.path())),
            reload: Mirror::new(reload_status_path(pidfile.path())),
            pidfile: Some(pidfile),
            board,
            json: JsonBoard::create()
                .map_err(|e| tracing::warn!("cannot create the status JSON board: {e}"))
                .ok(),
            run,
            reload_seq: 0,
        }
    }

    /// Writes the pid into the pidfile (the server is serving from now on).
    pub fn publish_pid(&mut self) -> Result<(), String> {
        match &mut self.pidfile {
            Some(pidfile) => pidfile.write_pid(),
            None => Ok(()),
        }
    }

    /// An upgrade's new master serves now: the pidfile's lock is
    /// released for it, and the files beside the pidfile are its to
    /// write; this master's words stay on its board alone.
    pub fn hand_over(&mut self) {
        if let Some(pidfile) = self.pidfile.take() {
            pidfile.hand_over();
        }
    }

    fn handed_over(&self) -> bool {
        self.pidfile.is_none()
    }

    /// What `host status` prints now: the master's line, then a line per
    /// worker.
    pub fn set_status(&mut self, text: &str) {
        let full = format!("run {}\n{text}", self.run);
        if let Some(board) = &self.board {
            board.write(Some(&full), None);
        }
        if !self.handed_over() {
            self.status.set(full);
            self.status.flush();
        }
    }

    /// What `host status --json` and `host top` read now (the master
    /// refreshes it about once a second).
    pub fn set_status_json(&mut self, text: &str) {
        if let Some(json) = &self.json {
            json.write(text);
        }
    }

    /// The mount a `host reload --mount` asked for with the HUP being
    /// handled (None: every mount); the request is used up.
    pub fn take_reload_mount(&self) -> Option<String> {
        let text = fs::read_to_string(&self.reload_mount).ok()?;
        let _ = fs::remove_file(&self.reload_mount);
        Some(text.trim_end_matches('\n').to_string()).filter(|t| !t.is_empty())
    }

    /// A reload's outcome, for the `host reload` waiting on it.
    pub fn report_reload(&mut self, ok: bool, text: &str) {
        self.reload_seq += 1;
        let outcome = Outcome {
            seq: self.reload_seq,
            ok,
            detail: text.replace('\n', " "),
        };
        let full = format!("run {}\n{}\n", self.run, outcome.line());
        if let Some(board) = &self.board {
            board.write(None, Some(&full));
        }
        if !self.handed_over() {
            self.reload.set(full);
            self.reload.flush();
        }
    }

    /// Tries again the files that could not be written.
    pub fn retry(&mut self) {
        if !self.handed_over() {
            self.status.flush();
            self.reload.flush();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        // The pidfile goes last (dropped after this), still locked. Once
        // handed over, the files are the new master's.
        if !self.handed_over() {
            let _ = fs::remove_file(&self.status.path);
            let _ = fs::remove_file(&self.reload.path);
        }
    }
}

// --- the commands' side ------------------------------------------------------

/// A reload's outcome: `SEQ ok|error DETAIL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Counts the outcomes of one run: a `host reload` waits for one
    /// numbered above what it saw before signalling.
    pub seq: u64,
    pub ok: bool,
    pub detail: String,
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "{} {} {}",
            self.seq,
            if self.ok { "ok" } else { "error" },
            self.detail
        )
    }

    fn parse(line: &str) -> Option<Outcome> {
        let mut parts = line.trim_end().splitn(3, ' ');
        let seq = parts.next()?.parse().ok()?;
        let ok = match parts.next()? {
            "ok" => true,
            "error" => false,
            _ => return None,
        };
        Some(Outcome {
            seq,
            ok,
            detail: parts.next().unwrap_or("").to_string(),
        })
    }
}

/// A running master, as a control command found it from a pidfile.
#[derive(Debug)]
pub struct Remote {
    pub pid: i32,
    /// Its run identity (see [`identity`]).
    pub run: String,
    pidfile: PathBuf,
}

/// What the master said last, read from the board or a file of its run.
struct Said {
    status: Option<String>,
    reload: Option<String>,
}

impl Remote {
    /// The master that holds `pidfile`. The lock says who holds it, whatever
    /// the file says; a file nobody holds is trusted only if the pid in it
    /// is a live host master (it has a board), never a process that merely
    /// reuses a dead master's pid.
    /// Names the one mount the next HUP reloads (`host reload --mount`):
    /// written whole (a temporary file renamed) before the signal.
    pub fn ask_reload_mount(&self, prefix: &str) -> Result<(), String> {
        let path = reload_mount_path(&self.pidfile);
        let tmp = sibling(&self.pidfile, ".reload-mount.tmp");
        fs::write(&tmp, format!("{prefix}\n"))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn find(pidfile: &Path) -> Result<Remote, String> {
        let text = fs::read_to_string(pidfile)
            .map_err(|e| format!("cannot read pidfile {}: {e}", pidfile.display()))?;
        let named = text.trim().parse::<i32>().ok().filter(|p| *p > 0);
        let holder = lock_holder(pidfile);
        let pid = match (holder, named) {
            (Some(pid), _) => pid,
            (None, Some(pid)) => pid,
            (None, None) => {
                return Err(format!("pidfile {} does not hold a pid", pidfile.display()))
            }
        };
        if !running(pid) {
            return Err(format!(
                "no running host with pid {pid} (from {})",
                pidfile.display()
            ));
        }
        if holder.is_none() && !has_board(pid) {
            return Err(format!(
                "no running host with pid {pid} (from {}): the pidfile is stale (no master holds its lock, and process {pid} is not a host master)",
                pidfile.display()
            ));
        }
        let run = identity(pid).ok_or_else(|| {
            format!(
                "no running host with pid {pid} (from {})",
                pidfile.display()
            )
        })?;
        Ok(Remote {
            pid,
            run,
            pidfile: pidfile.to_path_buf(),
        })
    }

    /// The status lines the master last published.
    pub fn status(&self) -> Result<String, String> {
        self.said()
            .status
            .ok_or_else(|| format!("master {} has published no status yet", self.pid))
    }

    /// The status JSON the master last published.
    pub fn status_json(&self) -> Result<String, String> {
        read_json_board(self.pid)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("master {} has published no status JSON yet", self.pid))
    }

    /// The last reload outcome this run reported, if any.
    pub fn reload_outcome(&self) -> Option<Outcome> {
        Outcome::parse(&self.said().reload?)
    }

    /// The board if it can be read, else the files, each only if it is
    /// this run's.
    fn said(&self) -> Said {
        let (status, reload) = match read_board(self.pid) {
            Some((status, reload)) => (Some(status), Some(reload)),
            None => (
                fs::read_to_string(status_path(&self.pidfile)).ok(),
                fs::read_to_string(reload_status_path(&self.pidfile)).ok(),
            ),
        };
        Said {
            status: status.and_then(|t| self.strip_run(&t)),
            reload: reload.and_then(|t| self.strip_run(&t)),
        }
    }

    /// The text after the `run ID` line, if ID is this run's.
    fn strip_run(&self, text: &str) -> Option<String> {
        let (first, rest) = text.split_once('\n')?;
        (first.strip_prefix("run ")? == self.run && !rest.is_empty()).then(|| rest.to_string())
    }

    /// Sends `sig` to the master.
    pub fn signal(&self, sig: i32) -> Result<(), String> {
        // SAFETY: kill has no memory effects.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            return Err(format!(
                "cannot signal master {} (from {}): {}",
                self.pid,
                self.pidfile.display(),
                io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

/// The board's descriptor in process `pid`: `/proc/PID/fd/N`.
fn find_board(pid: i32) -> Option<PathBuf> {
    find_memfd(pid, BOARD_NAME)
}

/// The descriptor of memfd `name` in process `pid`.
fn find_memfd(pid: i32, name: &str) -> Option<PathBuf> {
    let wanted = format!("/memfd:{name} (deleted)");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| fs::read_link(path).is_ok_and(|target| target.as_os_str() == wanted.as_str()))
}

fn has_board(pid: i32) -> bool {
    find_board(pid).is_some()
}

/// The status and reload texts on process `pid`'s board; None if it has
/// none or it cannot be read (another user's process).
fn read_board(pid: i32) -> Option<(String, String)> {
    map_read::<Region, _>(&find_board(pid)?, read_region)
}

/// The status JSON on process `pid`'s JSON board; None if it has none or
/// it cannot be read.
fn read_json_board(pid: i32) -> Option<String> {
    map_read::<JsonRegion, _>(&find_memfd(pid, JSON_NAME)?, read_json)
}

/// A board layout: nothing but atomics, so every bit pattern (all zeros
/// of a new memfd included) is a valid value, and a read-only mapping of it
/// may be loaded from. Each starts with a magic number, stored once it is
/// made, that tells a board from another memfd of the same name.
///
/// # Safety
/// The type must be `repr(C)` and made only of atomics (and arrays of
/// them).
unsafe trait Layout {
    fn magic(&self) -> &AtomicU64;
}
// SAFETY: repr(C), atomics only.
unsafe impl Layout for Region {
    fn magic(&self) -> &AtomicU64 {
        &self.magic
    }
}
// SAFETY: repr(C), atomics only.
unsafe impl Layout for JsonRegion {
    fn magic(&self) -> &AtomicU64 {
        &self.magic
    }
}

/// Maps another process's board (the memfd at `path`) read-only, and
/// hands it to `read`; None if the file is too short or cannot be mapped.
fn map_read<T: Layout, R>(path: &Path, read: impl FnOnce(&T) -> Option<R>) -> Option<R> {
    let len = std::mem::size_of::<T>();
    let file = File::open(path).ok()?;
    if file.metadata().ok()?.len() < len as u64 {
        return None;
    }
    // SAFETY: maps `len` bytes of a file at least that long, shared and
    // read-only; unmapped below, after the last use of `board`.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is `len` bytes and page-aligned, and every bit
    // pattern is a valid `T` (`Layout`). It is read-only: only `load`s of at
    // most 8 bytes are done through it, which Rust allows on read-only
    // memory (no read-modify-write).
    let board = unsafe { &*(base as *const T) };
    let out = read(board);
    // SAFETY: unmaps exactly the mapping made above; `board` is not used
    // after this.
    unsafe { libc::munmap(base, len) };
    out
}

/// A consistent copy of the JSON board's text (the read side of its
/// seqlock).
fn read_json(r: &JsonRegion) -> Option<String> {
    if r.magic.load(Ordering::Acquire) != JSON_MAGIC {
        return None;
    }
    for _ in 0..1000 {
        let seq = r.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            std::thread::yield_now();
            continue;
        }
        let copy = load_text(&r.bytes, &r.len);
        // The bytes' loads stay before the second look.
        fence(Ordering::Acquire);
        if r.seq.load(Ordering::Relaxed) == seq {
            return Some(copy);
        }
    }
    None
}

/// A consistent copy of the board's texts (the read side of the seqlock).
fn read_region(r: &Region) -> Option<(String, String)> {
    if r.magic.load(Ordering::Acquire) != BOARD_MAGIC {
        return None;
    }
    for _ in 0..1000 {
        let seq = r.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            std::thread::yield_now();
            continue;
        }
        let status = load_text(&r.status, &r.status_len);
        let reload = load_text(&r.reload, &r.reload_len);
        // The bytes' loads stay before the second look.
        fence(Ordering::Acquire);
        if r.seq.load(Ordering::Relaxed) == seq {
            return Some((status, reload));
        }
    }
    None
}

fn load_text(bytes: &[AtomicU8], len: &AtomicU32) -> String {
    let n = (len.load(Ordering::Relaxed) as usize).min(bytes.len());
    let copy: Vec<u8> = bytes[..n]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    String::from_utf8_lossy(&copy).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("control-{label}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn identity_is_per_run() {
        let me = std::process::id() as i32;
        let id = identity(me).unwrap();
        assert!(id.starts_with(&format!("{me}.")), "{id}");
        assert_eq!(identity(me), Some(id), "stable for one run");
        assert_eq!(identity(i32::MAX), None, "no such process");
    }

    #[test]
    fn outcomes_round_trip() {
        let o = Outcome {
            seq: 7,
            ok: false,
            detail: "plugin x: no such file".into(),
        };
        assert_eq!(Outcome::parse(&o.line()), Some(o));
        assert_eq!(
            Outcome::parse("3 ok build abc\n").unwrap().detail,
            "build abc"
        );
        assert_eq!(Outcome::parse("garbage"), None);
        assert_eq!(Outcome::parse("3 maybe x"), None);
    }

    #[test]
    fn the_board_is_read_back_from_proc() {
        let board = Board::create().unwrap();
        board.write(Some("run x\nmaster 1\n"), Some("run x\n1 ok build y\n"));
        let me = std::process::id() as i32;
        assert!(has_board(me));
        let (status, reload) = read_board(me).unwrap();
        assert_eq!(status, "run x\nmaster 1\n");
        assert_eq!(reload, "run x\n1 ok build y\n");
        board.write(Some("run x\nmaster 2\n"), None);
        assert_eq!(read_board(me).unwrap().0, "run x\nmaster 2\n");
        assert_eq!(read_board(me).unwrap().1, "run x\n1 ok build y\n");
        // Cut at the limit, on a character boundary.
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn a_locked_pidfile_names_its_holder() {
        let dir = scratch("lock");
        let path = dir.join("host.pid");
        fs::write(&path, "999999\n").unwrap();
        let mut pidfile = Pidfile::lock(&path).unwrap();
        pidfile.write_pid().unwrap();
        pidfile.write_pid().unwrap();
        // A lock is per process: F_GETLK in the holder reports no conflict,
        // so ask from a child, as another process would.
        let parent = std::process::id() as i32;
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: the child only calls open, fcntl and _exit, which are
        // async-signal-safe (all that is safe after forking the test
        // harness, a multithreaded process); nothing is allocated in it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: a valid NUL-terminated path; a stack flock struct.
            let holder = unsafe {
                let fd = libc::open(c_path.as_ptr(), libc::O_RDONLY);
                let mut lock = whole_file_lock(libc::F_WRLCK);
                libc::fcntl(fd, libc::F_GETLK, &mut lock);
                lock.l_pid
            };
            // SAFETY: _exit ends the child at once.
            unsafe { libc::_exit(if holder == parent { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "another process does not see us holding the lock"
        );
        // (Only now: opening the file again in this process, as reading it
        // does, releases a POSIX lock, which is why the master never does.)
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id()),
            "the pid is written over the stale one, whole"
        );
        drop(pidfile);
        assert!(!path.exists(), "the pidfile is removed with the master");
        fs::remove_dir_all(&dir).unwrap();
    }
}
