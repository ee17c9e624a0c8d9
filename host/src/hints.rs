//! gunicorn flags `host` does not take, and what to do instead: a user who
//! types one from habit gets the equivalent, or why it does not apply,
//! rather than a bare "unexpected argument".

/// The hint for `flag` (as typed, `--name` or `--name=value` or `-x`), if
/// it is a gunicorn flag `host` does not take.
pub fn for_flag(flag: &str) -> Option<&'static str> {
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    GUNICORN
        .iter()
        .find(|(flags, _)| flags.split(' ').any(|f| f == name))
        .map(|(_, hint)| *hint)
}

/// (gunicorn's spellings, space-separated; the hint).
const GUNICORN: &[(&str, &str)] = &[
    ("-k --worker-class", "host has one worker model: an event loop that owns every connection, and --threads app threads per worker"),
    ("--worker-connections", "no per-worker connection cap: idle connections cost the event loop ~200 bytes each; unfinished heads are bounded by --limit-head-memory"),
    ("--preload", "the master never runs plugin code: each worker loads the plugin after fork, and a reload boots a canary first"),
    ("--reload-engine --reload-extra-file", "--reload watches the plugin file itself (its content, by SHA-256)"),
    ("-D --daemon", "host stays in the foreground: run it under systemd, a container runtime or another supervisor"),
    ("-e --env", "set the environment of the host process itself; --app-arg KEY=VALUE passes settings to the plugin's init"),
    ("--worker-tmp-dir", "workers report to the master through shared memory, not heartbeat files"),
    ("--tmp-upload-dir", "use --body-temp-dir (large request bodies are spooled to unlinked files there)"),
    ("--log-config --log-config-dict --log-config-json --log-syslog --log-syslog-to --log-syslog-prefix --log-syslog-facility --enable-stdio-inheritance --capture-output", "logs go to stderr or --error-logfile FILE (--log-level sets how much, --log-format json for log shippers); route them with your supervisor or journald"),
    ("--statsd-host --statsd-prefix --dogstatsd-tags", "no statsd output: --admin-bind ADDRESS serves Prometheus metrics at /metrics, and host top -p PIDFILE shows them live"),
    ("-n --name", "no process title setting: host status -p PIDFILE names each worker's build and generation"),
    ("--pythonpath --paste --paste-global --wsgi-app", "the app is a shared library: host serve ./libapp.so[:SYMBOL]"),
    ("--spew", "no tracing of every line: use --log-level debug, or a debugger on a worker"),
    ("--check-config", "use host check -c FILE (validates the config file, then loads its plugin without serving) or host check PLUGIN"),
    ("--ssl-version --ciphers", "TLS 1.2 and 1.3 only, with rustls's cipher suites: not configurable"),
    ("--do-handshake-on-connect --suppress-ragged-eofs", "not needed: the handshake runs in the event loop under --header-timeout"),
    ("--strip-header-spaces", "never: whitespace before a header's colon is refused with 400 (RFC 9112 section 5.1 requires it)"),
    ("--permit-unconventional-http-method --permit-unconventional-http-version --casefold-http-method", "host follows RFC 9110/9112 strictly: any token is a method, as received; HTTP/1.x only"),
    ("--secure-scheme-headers", "the scheme headers are gunicorn's defaults, fixed: X-Forwarded-Proto, X-Forwarded-Ssl, X-Forwarded-Protocol (and Forwarded proto=), from --forwarded-allow-ips peers"),
    ("--initgroups", "with --user, a worker always takes the user's supplementary groups (initgroups)"),
    ("--no-sendfile", "host does not use sendfile: responses come from the app's buffers"),
    ("--print-config", "use host config [-c FILE] [flags]: every setting in effect, and where it came from"),
    ("--disable-redirect-access-to-syslog", "not supported"),
    // gunicorn's config-file names where they differ from its flags (a key
    // of `host`'s file is the flag's name).
    ("--accesslog", "in a config file the key is access-logfile"),
    ("--pidfile", "in a config file the key is pid"),
    ("--errorlog", "in a config file the key is error-logfile"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flags_by_any_spelling_and_ignores_values() {
        assert!(for_flag("--worker-class").unwrap().contains("--threads"));
        assert!(for_flag("-k").unwrap().contains("--threads"));
        assert!(for_flag("--tmp-upload-dir=/x")
            .unwrap()
            .contains("--body-temp-dir"));
        assert_eq!(for_flag("--frobnicate"), None);
        assert_eq!(for_flag("--work"), None);
        assert!(for_flag("--pidfile").unwrap().contains("key is pid"));
    }
}
