//! The settings of `host serve`, filled in one stated order: defaults <
//! config file (`-c FILE`) < environment (a flag's own variable such as
//! `$FORWARDED_ALLOW_IPS`, then `HOST_ARGS`; `$PORT` when nothing else
//! binds) < command line.
//!
//! Every source becomes arguments for the one clap parser of `ServeArgs`,
//! which stays the single declaration of every setting: a key of the file
//! is a long flag's name (`max-requests` or gunicorn's `max_requests`), so a
//! flag gets its key, its `HOST_ARGS` form and its line in `host config` the
//! moment it is declared in `cli.rs`, with no code here. Each source is
//! parsed on its own (so an error names its source: the file's line and
//! key, or `HOST_ARGS`), then each setting is taken whole from the highest
//! source that gives it: a list (`bind`, `app-arg`) given by a later source
//! replaces an earlier one's rather than adding to it. The winners are
//! parsed once more together, which checks pairs that conflict.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};

use crate::cli::{Cli, ServeArgs};
use crate::hints;
use host::gateway::mount::{self, MountSpec};

/// The environment variable of extra arguments (gunicorn's
/// `GUNICORN_CMD_ARGS`), split as a shell would split words.
pub const HOST_ARGS: &str = "HOST_ARGS";
/// The port a platform tells the app to listen on (Heroku and its kind):
/// `0.0.0.0:$PORT` when no source names a bind.
pub const PORT: &str = "PORT";

/// The settings that a HUP applies through a rolling reload; any other
/// that changed (binds, the pidfile, a flag this list does not know yet)
/// waits for a restart and is named as such.
pub const LIVE: &[&str] = &[
    "plugin",
    "workers",
    "threads",
    "timeout",
    "max-requests",
    "max-requests-jitter",
    "settle-period",
    "keep-alive",
    "graceful-timeout",
    "header-timeout",
    "body-timeout",
    "body-min-rate",
    "send-timeout",
    "send-min-rate",
    "body-buffer-size",
    "body-temp-dir",
    "no-request-buffering",
    "limit-head-memory",
    "access-logfile",
    "access-log-format",
    "log-format",
    "log-level",
    "app-arg",
    "mount",
    "mount-arg",
    "limit-request-line",
    "limit-request-fields",
    "limit-request-field-size",
    "header-map",
    "limit-request-body",
    "forwarded-allow-ips",
    "proxy-protocol",
    "proxy-allow-ips",
    // TLS: the next generation of workers serves the new files.
    "certfile",
    "keyfile",
    "ca-certs",
    "cert-reqs",
];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    /// The config file, at this line.
    File(PathBuf, usize),
    /// An environment variable: `HOST_ARGS`, `PORT` or a flag's own.
    Env(String),
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path, line) => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "${var}"),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// Why the settings cannot be used: either way the caller exits 2.
#[derive(Debug)]
pub enum Error {
    /// A command-line mistake, rendered as the other usage errors are.
    Usage(clap::Error),
    /// One line naming the source: `FILE:LINE: key 'k': why`, `HOST_ARGS: why`.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(e) => f.write_str(&clap_reason(e)),
            Error::Invalid(why) => f.write_str(why),
        }
    }
}

/// One setting as it is in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key in the file: the long flag's name, `-` between words.
    pub key: String,
    /// Its value as TOML (`4`, `"info"`, `["a=1"]`, `true`); None if unset.
    pub value: Option<String>,
    pub source: Source,
}

/// The effective settings of `host serve`.
pub struct Settings {
    pub args: ServeArgs,
    /// The config file they were read from, if any (`-c`).
    pub file: Option<PathBuf>,
    /// Every setting, in the order `host serve --help` lists them.
    pub entries: Vec<Entry>,
}

/// One setting given by one source: the arguments that say it.
struct Given {
    source: Source,
    tokens: Vec<OsString>,
}

impl Settings {
    /// The settings from `cli` (the arguments after `serve`), the
    /// environment and the config file the command line or `HOST_ARGS`
    /// names.
    pub fn load(cli: &[OsString]) -> Result<Settings, Error> {
        let command = Cli::command();
        let serve = serve_command(&command);
        let cli = parse(&command, cli.iter().cloned()).map_err(Error::Usage)?;
        let host_args = match std::env::var(HOST_ARGS) {
            Ok(text) => {
                let words = split_words(&text)
                    .map_err(|why| Error::Invalid(format!("${HOST_ARGS}: {why}")))?;
                let matches = parse(&command, words.into_iter().map(OsString::from))
                    .map_err(|e| Error::Invalid(format!("${HOST_ARGS}: {}", clap_reason(&e))))?;
                Some(matches)
            }
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::Invalid(format!("${HOST_ARGS} is not UTF-8")))
            }
        };
        let file = [Some(&cli), host_args.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|m| m.get_one::<PathBuf>("config").cloned());

        // Lowest first: each source replaces what the ones below it set.
        let mut given: BTreeMap<String, Given> = BTreeMap::new();
        if let Some(path) = &file {
            for (id, line, tokens) in read_file(&command, &serve, path)? {
                let source = Source::File(path.clone(), line);
                given.insert(id, Given { source, tokens });
            }
        }
        for arg in serve.get_arguments() {
            let Some(var) = arg.get_env() else { continue };
            if let Some(value) = std::env::var_os(var) {
                let source = Source::Env(var.to_string_lossy().into_owned());
                let tokens = flag_tokens(arg, [value]);
                given.insert(arg.get_id().to_string(), Given { source, tokens });
            }
        }
        if let Some(matches) = &host_args {
            for (id, tokens) in from_matches(&serve, matches) {
                let source = Source::Env(HOST_ARGS.into());
                given.insert(id, Given { source, tokens });
            }
        }
        for (id, tokens) in from_matches(&serve, &cli) {
            let source = Source::CommandLine;
            given.insert(id, Given { source, tokens });
        }
        if !given.contains_key("bind") {
            if let Ok(port) = std::env::var(PORT) {
                let source = Source::Env(PORT.into());
                let tokens = vec![format!("--bind=0.0.0.0:{port}").into()];
                given.insert("bind".into(), Given { source, tokens });
            }
        }

        let mut options = Vec::new();
        let mut positional = Vec::new();
        for (id, g) in &given {
            let is_positional = serve
                .get_arguments()
                .any(|a| a.get_id() == id.as_str() && a.is_positional());
            if is_positional {
                positional.extend(g.tokens.iter().cloned());
            } else {
                options.extend(g.tokens.iter().cloned());
            }
        }
        options.push("--".into());
        options.extend(positional);
        let matches =
            parse(&command, options).map_err(|e| Error::Invalid(combined(&e, &serve, &given)))?;
        let args = ServeArgs::from_arg_matches(&matches).map_err(Error::Usage)?;
        let entries = serve
            .get_arguments()
            .filter(|a| shown(a))
            .map(|a| Entry {
                key: key_of(a),
                value: toml_value(a, &matches),
                source: given
                    .get(a.get_id().as_str())
                    .map_or(Source::Default, |g| g.source.clone()),
            })
            .collect();
        Ok(Settings {
            args,
            file,
            entries,
        })
    }

    /// The plugin to serve: from the command line or the file.
    pub fn plugin(&self) -> Result<&str, Error> {
        self.args.plugin.as_deref().ok_or_else(|| {
            Error::Invalid(match &self.file {
                Some(path) => format!(
                    "no plugin: name one (host serve PATH[:SYMBOL], or --mount PREFIX=PLUGIN) or set `plugin` in {}",
                    path.display()
                ),
                None => "no plugin: name one (host serve PATH[:SYMBOL], or --mount PREFIX=PLUGIN) or set `plugin` in a config file (-c FILE)".into(),
            })
        })
    }

    /// The apps to serve: the plugin (at "/") and the `mount` ones, each
    /// with its own `mount-arg` pairs.
    pub fn apps(&self) -> Result<Vec<MountSpec>, Error> {
        let args = &self.args;
        let apps = mount::plan(args.plugin.as_deref(), &args.mount, &args.mount_arg)
            .map_err(Error::Invalid)?;
        if apps.is_empty() {
            self.plugin()?;
        }
        Ok(apps)
    }

    /// Every setting, one a line, as TOML a config file can take again:
    /// `key = value  # source`; an unset one is commented out.
    pub fn render(&self) -> String {
        let lines: Vec<(String, &Source)> = self
            .entries
            .iter()
            .map(|e| match &e.value {
                Some(v) => (format!("{} = {v}", e.key), &e.source),
                None => (format!("# {} (unset)", e.key), &e.source),
            })
            .collect();
        let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut text = String::new();
        if let Some(path) = &self.file {
            text.push_str(&format!("# config file: {}\n", path.display()));
        }
        for (line, source) in lines {
            text.push_str(&format!("{line:width$}  # {source}\n"));
        }
        text
    }
}

/// What a HUP's new settings change: (live, fixed), by key. Live ones take
/// effect through the rolling reload; fixed ones wait for a restart.
pub fn changes(before: &[Entry], after: &[Entry]) -> (Vec<String>, Vec<String>) {
    let mut live = Vec::new();
    let mut fixed = Vec::new();
    for a in after {
        let old = before.iter().find(|b| b.key == a.key).map(|b| &b.value);
        if old == Some(&a.value) {
            continue;
        }
        if LIVE.contains(&a.key.as_str()) {
            live.push(a.key.clone());
        } else {
            fixed.push(a.key.clone());
        }
    }
    (live, fixed)
}

/// `host serve`'s own command, where the arguments are declared.
fn serve_command(cli: &clap::Command) -> clap::Command {
    cli.find_subcommand("serve")
        .expect("`serve` is a subcommand")
        .clone()
}

/// Parses `args` as the arguments after `host serve`.
fn parse(
    command: &clap::Command,
    args: impl IntoIterator<Item = OsString>,
) -> Result<ArgMatches, clap::Error> {
    let argv = [OsString::from("host"), OsString::from("serve")]
        .into_iter()
        .chain(args);
    let matches = command.clone().try_get_matches_from(argv)?;
    Ok(matches
        .subcommand_matches("serve")
        .expect("parsed as serve")
        .clone())
}

/// A setting `host config` shows: every argument but help and `-c`.
fn shown(arg: &Arg) -> bool {
    !matches!(arg.get_id().as_str(), "help" | "version" | "config")
}

/// Its key: the long flag's name (`-` between words), or a positional
/// argument's id.
fn key_of(arg: &Arg) -> String {
    arg.get_long()
        .map_or_else(|| arg.get_id().to_string(), normalize)
}

/// gunicorn's config names use `_`; flags use `-`: both are one key.
fn normalize(key: &str) -> String {
    key.replace('_', "-")
}

/// The argument `key` names (by its long name or an alias), if any.
fn find_arg<'a>(serve: &'a clap::Command, key: &str) -> Option<&'a Arg> {
    let key = normalize(key);
    serve.get_arguments().find(|a| {
        key_of(a) == key
            || a.get_all_aliases()
                .into_iter()
                .flatten()
                .any(|alias| normalize(alias) == key)
    })
}

/// What a value of an argument is written as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
}

fn kind_of(arg: &Arg) -> Kind {
    let id = arg.get_value_parser().type_id();
    let integers: [ValueParser; 8] = [
        clap::value_parser!(u8).into(),
        clap::value_parser!(u16).into(),
        clap::value_parser!(u32).into(),
        clap::value_parser!(u64).into(),
        clap::value_parser!(i8).into(),
        clap::value_parser!(i16).into(),
        clap::value_parser!(i32).into(),
        clap::value_parser!(i64).into(),
    ];
    if integers.iter().any(|p| p.type_id() == id) {
        Kind::Integer
    } else {
        Kind::Text
    }
}

/// A switch (`--reload`): true or false in the file.
fn is_switch(arg: &Arg) -> bool {
    !arg.get_action().takes_values()
}

/// Repeatable (`-b`, `--app-arg`): an array in the file.
fn is_list(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// `--name=value` for each value (or the values alone, for a positional
/// argument, which the caller puts after `--`).
fn flag_tokens(arg: &Arg, values: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let long = arg.get_long();
    values
        .into_iter()
        .map(|v| match long {
            Some(long) => {
                let mut t = OsString::from(format!("--{long}="));
                t.push(v);
                t
            }
            None => v,
        })
        .collect()
}

/// Each setting `matches` got from its own arguments (not a default nor
/// the environment), as the arguments that say it again.
fn from_matches(serve: &clap::Command, matches: &ArgMatches) -> Vec<(String, Vec<OsString>)> {
    let mut out = Vec::new();
    for arg in serve.get_arguments() {
        let id = arg.get_id().as_str();
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let tokens = if is_switch(arg) {
            let long = arg.get_long().expect("a switch has a long name");
            vec![OsString::from(format!("--{long}"))]
        } else {
            let values = matches
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|v| v.to_owned());
            flag_tokens(arg, values)
        };
        out.push((id.to_string(), tokens));
    }
    out
}

/// The value in effect, as TOML.
fn toml_value(arg: &Arg, matches: &ArgMatches) -> Option<String> {
    let raw: Vec<String> = matches
        .get_raw(arg.get_id().as_str())?
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let one = |v: &str| match kind_of(arg) {
        Kind::Integer if v.parse::<i64>().is_ok() => v.to_string(),
        _ if is_switch(arg) && (v == "true" || v == "false") => v.to_string(),
        _ => quoted(v),
    };
    if is_list(arg) {
        let items: Vec<String> = raw.iter().map(|v| one(v)).collect();
        return Some(format!("[{}]", items.join(", ")));
    }
    raw.first().map(|v| one(v))
}

/// `v` as a TOML basic string.
pub fn quoted(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The settings of the config file at `path`: (id, line, arguments) per
/// key, each checked on its own so that an error names its line and key.
fn read_file(
    command: &clap::Command,
    serve: &clap::Command,
    path: &Path,
) -> Result<Vec<(String, usize, Vec<OsString>)>, Error> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read config file {file}: {e}")))?;
    let table = DeTable::parse(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(&text, s.start));
        let why = e.message().lines().next().unwrap_or("syntax error").trim();
        // The key of that line, when it has one (`workers = `).
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with(['[', '#']));
        match key {
            Some(key) => Error::Invalid(format!("{file}:{line}: key '{key}': not TOML: {why}")),
            None => Error::Invalid(format!("{file}:{line}: not TOML: {why}")),
        }
    })?;
    let mut out = Vec::new();
    for (key, value) in table.get_ref() {
        let name: &str = key.get_ref();
        let line = line_of(&text, key.span().start);
        let at = format!("{file}:{line}: key '{name}'");
        let Some(arg) = find_arg(serve, name).filter(|a| shown(a)) else {
            return Err(Error::Invalid(format!(
                "{at}: {}",
                unknown_key(serve, name)
            )));
        };
        let values = file_values(arg, value.get_ref()).map_err(|e| match e {
            // An entry of a table (`[app-arg]`): its own line and key.
            Bad::Entry(offset, inner, why) => Error::Invalid(format!(
                "{file}:{}: key '{name}.{inner}': {why}",
                line_of(&text, offset)
            )),
            Bad::Value(why) => Error::Invalid(format!("{at}: {why}")),
        })?;
        let tokens = match values {
            Values::Switch(true) => vec![OsString::from(format!(
                "--{}",
                arg.get_long().expect("a switch has a long name")
            ))],
            Values::Switch(false) => Vec::new(),
            Values::Some(values) => flag_tokens(arg, values.into_iter().map(OsString::from)),
        };
        let mut alone = tokens.clone();
        if arg.is_positional() {
            alone.insert(0, "--".into());
        }
        parse(command, alone).map_err(|e| Error::Invalid(format!("{at}: {}", clap_reason(&e))))?;
        out.push((arg.get_id().to_string(), line, tokens));
    }
    Ok(out)
}

/// What a key of the file says, checked against its TOML type.
enum Values {
    Switch(bool),
    Some(Vec<String>),
}

/// Why a key's value is refused.
enum Bad {
    Value(String),
    /// An entry of its table: (its offset in the file, its key, why).
    Entry(usize, String, String),
}

impl From<String> for Bad {
    fn from(why: String) -> Bad {
        Bad::Value(why)
    }
}

fn file_values(arg: &Arg, value: &DeValue<'_>) -> Result<Values, Bad> {
    if is_switch(arg) {
        return value
            .as_bool()
            .map(Values::Switch)
            .ok_or_else(|| Bad::Value(format!("expected true or false, found {}", a_type(value))));
    }
    let kind = kind_of(arg);
    if is_list(arg) {
        if let Some(items) = value.as_array() {
            return items
                .iter()
                .map(|item| scalar(kind, item.get_ref()))
                .collect::<Result<_, _>>()
                .map(Values::Some)
                .map_err(Bad::Value);
        }
        let pairs = arg
            .get_value_names()
            .is_some_and(|names| names.iter().any(|n| n.as_str().contains('=')));
        if let (true, Some(table)) = (pairs, value.as_table()) {
            return table
                .iter()
                .map(|(k, v)| {
                    let name: &str = k.get_ref();
                    scalar_text(v.get_ref())
                        .map(|v| format!("{name}={v}"))
                        .ok_or_else(|| {
                            let why = format!("expected a string, found {}", a_type(v.get_ref()));
                            Bad::Entry(k.span().start, name.to_string(), why)
                        })
                })
                .collect::<Result<_, _>>()
                .map(Values::Some);
        }
        let what = if pairs {
            ", an array of them or a table"
        } else {
            " or an array of them"
        };
        let why = || {
            format!(
                "expected {}{what}, found {}",
                kind_name(kind),
                a_type(value)
            )
        };
        return scalar(kind, value)
            .map(|v| Values::Some(vec![v]))
            .map_err(|_| Bad::Value(why()));
    }
    Ok(Values::Some(vec![scalar(kind, value)?]))
}

/// One value of the given kind, as the flag's text.
fn scalar(kind: Kind, value: &DeValue<'_>) -> Result<String, String> {
    let found = || format!("expected {}, found {}", kind_name(kind), a_type(value));
    match (kind, value) {
        (Kind::Integer, DeValue::Integer(i)) => {
            let digits = i.as_str().replace('_', "");
            i64::from_str_radix(&digits, i.radix())
                .map(|n| n.to_string())
                .map_err(|_| format!("integer {} out of range", i.as_str()))
        }
        (Kind::Text, DeValue::String(s)) => Ok(s.to_string()),
        _ => Err(found()),
    }
}

/// A table entry's value (`app-arg.port = 8080`): any scalar, as text.
fn scalar_text(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(_) => scalar(Kind::Integer, value).ok(),
        DeValue::Float(f) => Some(f.as_str().to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Integer => "an integer",
        Kind::Text => "a string",
    }
}

fn a_type(value: &DeValue<'_>) -> String {
    let t = value.type_str();
    let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {t}")
}

/// Why `name` is not a key: the closest key if one is near, or what to
/// do instead if it is a gunicorn setting `host` does not take.
fn unknown_key(serve: &clap::Command, name: &str) -> String {
    if normalize(name) == "config" {
        return "a config file cannot name another (-c is for the command line and $HOST_ARGS)"
            .into();
    }
    if let Some(hint) = hints::for_flag(&format!("--{}", normalize(name))) {
        return format!("not a setting: a gunicorn setting; {hint}");
    }
    let squash = |s: &str| s.replace(['-', '_'], "");
    let wanted = squash(name);
    let best = serve
        .get_arguments()
        .filter(|a| shown(a))
        .map(key_of)
        .map(|k| (distance(&squash(&k), &wanted), k))
        .min();
    match best {
        Some((d, key)) if d <= 2.max(wanted.len() / 4) => {
            format!("not a setting (did you mean '{key}'?)")
        }
        _ => "not a setting (see 'host serve --help': a key is a flag's long name)".into(),
    }
}

/// Levenshtein distance: the fewest one-character edits from `a` to `b`.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The line (from 1) of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// clap's reason, one line, without its `error: ` prefix.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The reason the settings of every source together do not parse: for a
/// pair that conflicts, both keys and where each was set (the file's line
/// first).
fn combined(e: &clap::Error, serve: &clap::Command, given: &BTreeMap<String, Given>) -> String {
    if e.kind() != ErrorKind::ArgumentConflict {
        return clap_reason(e);
    }
    let names = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let mut keys: Vec<(String, Source)> = names(ContextKind::InvalidArg)
        .into_iter()
        .chain(names(ContextKind::PriorArg))
        .filter_map(|shown| {
            let long = shown.trim_start_matches('-');
            let long = long.split([' ', '=']).next().unwrap_or(long);
            let arg = serve.get_arguments().find(|a| a.get_long() == Some(long))?;
            let source = given.get(arg.get_id().as_str())?.source.clone();
            Some((key_of(arg), source))
        })
        .collect();
    keys.sort_by_key(|(_, s)| !matches!(s, Source::File(..)));
    match keys.as_slice() {
        [(a, sa), (b, sb), ..] => {
            format!("{sa}: key '{a}' conflicts with key '{b}' (set by {sb}): give one or the other")
        }
        _ => clap_reason(e),
    }
}

/// Splits `text` into words as a POSIX shell does: blanks separate them,
/// single quotes keep everything, double quotes keep all but `\"` and
/// `\\`, a backslash outside quotes keeps the next character.
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("a ' is not closed".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err("a \" is not closed".into()),
                        },
                        Some(c) => w.push(c),
                        None => return Err("a \" is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => word.get_or_insert_with(String::new).push(c),
                None => return Err("a trailing \\ escapes nothing".into()),
            },
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_a_shell_splits_them() {
        assert_eq!(
            split_words(r#" -w 3  --app-arg 'a=b c' "--x=\"y\"" e\ f ''"#).unwrap(),
            ["-w", "3", "--app-arg", "a=b c", "--x=\"y\"", "e f", ""]
        );
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn every_setting_has_a_key_and_both_spellings_find_it() {
        let serve = serve_command(&Cli::command());
        for arg in serve.get_arguments().filter(|a| shown(a)) {
            let key = key_of(arg);
            assert!(find_arg(&serve, &key).is_some(), "{key}");
            assert!(find_arg(&serve, &key.replace('-', "_")).is_some(), "{key}");
        }
        assert!(find_arg(&serve, "frobnicate").is_none());
    }

    #[test]
    fn kinds_follow_the_value_parser() {
        let serve = serve_command(&Cli::command());
        let arg = |key| find_arg(&serve, key).unwrap();
        assert_eq!(kind_of(arg("workers")), Kind::Integer);
        assert_eq!(kind_of(arg("backlog")), Kind::Integer);
        assert_eq!(kind_of(arg("limit-request-line")), Kind::Integer);
        assert_eq!(kind_of(arg("log-level")), Kind::Text);
        assert_eq!(kind_of(arg("bind")), Kind::Text);
        assert!(is_switch(arg("reload")));
        assert!(is_list(arg("app-arg")));
    }

    #[test]
    fn did_you_mean() {
        let serve = serve_command(&Cli::command());
        assert!(unknown_key(&serve, "wrokers").contains("'workers'"));
        assert!(unknown_key(&serve, "keepalive").contains("'keep-alive'"));
        assert!(unknown_key(&serve, "worker_class").contains("--threads"));
        assert!(!unknown_key(&serve, "zzzzzzzz").contains("did you mean"));
    }

    #[test]
    fn changes_split_live_from_fixed() {
        let entry = |key: &str, value: &str| Entry {
            key: key.into(),
            value: Some(value.into()),
            source: Source::Default,
        };
        let before = [
            entry("workers", "1"),
            entry("bind", "[\"a\"]"),
            entry("timeout", "3"),
        ];
        let after = [
            entry("workers", "2"),
            entry("bind", "[\"b\"]"),
            entry("timeout", "3"),
        ];
        assert_eq!(
            changes(&before, &after),
            (vec!["workers".to_string()], vec!["bind".to_string()])
        );
    }
}
