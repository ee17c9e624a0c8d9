//! Several apps in one server: `--mount PREFIX=PLUGIN`, the prefix rules,
//! and the routing of a request to the app mounted at the longest prefix
//! of its path (PEP 3333's SCRIPT_NAME / PATH_INFO split).
//!
//! Prefixes are matched on whole segments of the percent-decoded path, as
//! the app sees PATH_INFO: `/api` takes `/api` and `/api/x`, never `/apix`.
//! A server with one app at `/` (the positional plugin, the common case)
//! has no router at all: its requests do no routing work.
use std::fmt;

use crate::gateway::plugin::PluginSpec;

/// A mount prefix as checked: starts with '/', no trailing '/' (but "/"
/// itself), no empty, `.` or `..` segment, no '?', '#' or '%'.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prefix(String);

impl Prefix {
    pub const ROOT: &'static str = "/";

    /// Checks `text`; the error says what is wrong with it (the caller
    /// names the value).
    pub fn parse(text: &str) -> Result<Prefix, String> {
        if !text.starts_with('/') {
            return Err("a mount prefix starts with '/'".into());
        }
        if let Some(c) = text.chars().find(|c| matches!(c, '?' | '#' | '%')) {
            return Err(format!(
                "a mount prefix is a decoded path: no '{c}' (write the characters themselves)"
            ));
        }
        if text.chars().any(|c| c.is_control()) {
            return Err("a mount prefix has no control characters".into());
        }
        if text == Self::ROOT {
            return Ok(Prefix(text.into()));
        }
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        for segment in trimmed[1..].split('/') {
            match segment {
                "" => return Err("a mount prefix has no empty segment ('//')".into()),
                "." | ".." => {
                    return Err(format!("a mount prefix has no '{segment}' segment"));
                }
                _ => {}
            }
        }
        Ok(Prefix(trimmed.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == Self::ROOT
    }

    /// What the app sees as SCRIPT_NAME: "" at the root, else the prefix.
    pub fn script_name(&self) -> &str {
        if self.is_root() {
            ""
        } else {
            &self.0
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `--mount PREFIX=PLUGIN` split at its first '=' (a prefix has none to
/// spare: '=' in a prefix would be unusual, and the plugin path may hold
/// one).
pub fn parse_mount(text: &str) -> Result<(Prefix, String), String> {
    let Some((prefix, plugin)) = text.split_once('=') else {
        return Err(format!("'{text}' is not PREFIX=PLUGIN"));
    };
    if plugin.is_empty() {
        return Err(format!("'{text}': no plugin after '='"));
    }
    let prefix = Prefix::parse(prefix).map_err(|why| format!("'{prefix}': {why}"))?;
    Ok((prefix, plugin.to_string()))
}

/// `--mount-arg PREFIX:KEY=VALUE` against the declared prefixes: the
/// longest declared prefix followed by ':' (so a prefix may itself hold a
/// ':'). Returns the mount's index and the pair.
pub fn parse_mount_arg(
    text: &str,
    prefixes: &[Prefix],
) -> Result<(usize, (String, String)), String> {
    let found = prefixes
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            // As `--mount` takes it: "/api/" is "/api".
            text.strip_prefix(p.as_str()).is_some_and(|rest| {
                rest.starts_with(':') || (!p.is_root() && rest.starts_with("/:"))
            })
        })
        .max_by_key(|(_, p)| p.as_str().len());
    let Some((index, prefix)) = found else {
        return Err(format!(
            "--mount-arg '{text}': no mount is PREFIX in PREFIX:KEY=VALUE (mounted: {})",
            prefixes
                .iter()
                .map(Prefix::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let rest = &text[prefix.as_str().len()..];
    let pair = rest.strip_prefix('/').unwrap_or(rest);
    let pair = &pair[1..];
    match pair.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((index, (k.to_string(), v.to_string()))),
        _ => Err(format!(
            "--mount-arg '{text}': '{pair}' after the prefix is not KEY=VALUE"
        )),
    }
}

/// One app to serve: where, which plugin, and its own init pairs (after
/// the `--app-arg` ones every app gets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub prefix: Prefix,
    /// `PATH[:SYMBOL]` as typed.
    pub plugin: String,
    pub args: Vec<(String, String)>,
}

impl MountSpec {
    pub fn spec(&self) -> PluginSpec {
        PluginSpec::parse(&self.plugin)
    }

    /// The plugin file as typed.
    pub fn plugin_path(&self) -> &str {
        PluginSpec::split(&self.plugin).0
    }

    pub fn symbol(&self) -> &str {
        PluginSpec::split(&self.plugin).1
    }
}

/// The apps to serve, from the positional plugin (mounted at "/"), the
/// `--mount` values (prefixes already checked one by one) and the
/// `--mount-arg` values. Err: a one-line reason naming the bad value;
/// Ok(empty): nothing names a plugin.
pub fn plan(
    positional: Option<&str>,
    mounts: &[(String, String)],
    mount_args: &[String],
) -> Result<Vec<MountSpec>, String> {
    let mut apps: Vec<MountSpec> = Vec::new();
    if let Some(plugin) = positional {
        apps.push(MountSpec {
            prefix: Prefix(Prefix::ROOT.into()),
            plugin: plugin.to_string(),
            args: Vec::new(),
        });
    }
    for (prefix, plugin) in mounts {
        let prefix = Prefix::parse(prefix).map_err(|why| format!("--mount '{prefix}': {why}"))?;
        if apps.iter().any(|a| a.prefix == prefix) {
            return Err(if positional.is_some() && prefix.is_root() {
                format!(
                    "--mount '{prefix}={plugin}': the plugin named without --mount is already mounted at '/'"
                )
            } else {
                format!("--mount '{prefix}={plugin}': '{prefix}' is mounted twice")
            });
        }
        apps.push(MountSpec {
            prefix,
            plugin: plugin.clone(),
            args: Vec::new(),
        });
    }
    let prefixes: Vec<Prefix> = apps.iter().map(|a| a.prefix.clone()).collect();
    for text in mount_args {
        let (index, pair) = parse_mount_arg(text, &prefixes)?;
        apps[index].args.push(pair);
    }
    Ok(apps)
}

/// Which app serves a path: prefixes longest first, each with its app's
/// index.
#[derive(Debug, Clone)]
pub struct Router {
    routes: Box<[(Box<[u8]>, usize)]>,
}

/// A routed request: the app, and where the path splits (SCRIPT_NAME is
/// `path[..split]`, PATH_INFO `path[split..]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub app: usize,
    pub split: usize,
}

impl Router {
    /// None when routing has nothing to decide (one app, at "/").
    pub fn new(prefixes: &[Prefix]) -> Option<Router> {
        if prefixes.len() == 1 && prefixes[0].is_root() {
            return None;
        }
        let mut routes: Vec<(Box<[u8]>, usize)> = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| (p.script_name().as_bytes().into(), i))
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        Some(Router {
            routes: routes.into(),
        })
    }

    /// The app for a decoded `path`; None: no mount takes it (404).
    #[inline]
    pub fn route(&self, path: &[u8]) -> Option<Route> {
        self.routes.iter().find_map(|(prefix, app)| {
            // The root ("") takes whatever is left, `*` included.
            let whole = prefix.is_empty()
                || (path.starts_with(prefix)
                    && (path.len() == prefix.len() || path[prefix.len()] == b'/'));
            whole.then_some(Route {
                app: *app,
                split: prefix.len(),
            })
        })
    }
}

/// Where the raw (undecoded) path splits so that its first part decodes
/// to the first `decoded` bytes of the decoded path: the same decoding
/// as `environ::percent_decode` (a valid `%XX` is one byte, anything
/// else itself).
pub fn raw_split(raw: &[u8], decoded: usize) -> usize {
    let (mut i, mut n) = (0, 0);
    while n < decoded && i < raw.len() {
        let escape = raw[i] == b'%'
            && i + 2 < raw.len()
            && raw[i + 1].is_ascii_hexdigit()
            && raw[i + 2].is_ascii_hexdigit();
        i += if escape { 3 } else { 1 };
        n += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    #[test]
    fn prefixes_are_checked_and_trimmed() {
        assert_eq!(p("/").as_str(), "/");
        assert_eq!(p("/api/").as_str(), "/api");
        assert_eq!(p("/a/b").script_name(), "/a/b");
        assert_eq!(p("/").script_name(), "");
        for bad in [
            "", "api", "/a//b", "//", "/a/./b", "/..", "/a?b", "/a#", "/a%20", "/a\n",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mounts_and_mount_args_parse() {
        let (prefix, plugin) = parse_mount("/api=./lib.so:other").unwrap();
        assert_eq!(
            (prefix.as_str(), plugin.as_str()),
            ("/api", "./lib.so:other")
        );
        assert!(parse_mount("/api").is_err());
        assert!(parse_mount("/api=").is_err());
        assert!(parse_mount("api=x").unwrap_err().contains("'api'"));
        let prefixes = [p("/"), p("/a"), p("/a:b")];
        assert_eq!(
            parse_mount_arg("/a:b:k=v", &prefixes).unwrap(),
            (2, ("k".into(), "v".into()))
        );
        assert_eq!(
            parse_mount_arg("/a:k=v=w", &prefixes).unwrap(),
            (1, ("k".into(), "v=w".into()))
        );
        assert_eq!(parse_mount_arg("/:k=", &prefixes).unwrap().0, 0);
        assert_eq!(
            parse_mount_arg("/a/:k=v", &prefixes).unwrap(),
            (1, ("k".into(), "v".into()))
        );
        assert!(parse_mount_arg("/zz:k=v", &prefixes).is_err());
        assert!(parse_mount_arg("/a:novalue", &prefixes).is_err());
    }

    #[test]
    fn plans_refuse_a_root_twice_and_duplicates() {
        let m = |a: &str, b: &str| (a.to_string(), b.to_string());
        let apps = plan(
            Some("./web.so"),
            &[m("/api", "./api.so")],
            &["/api:k=v".into()],
        )
        .unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[1].args, [("k".to_string(), "v".to_string())]);
        let e = plan(Some("./web.so"), &[m("/", "./x.so")], &[]).unwrap_err();
        assert!(e.contains("already mounted at '/'"), "{e}");
        let e = plan(None, &[m("/a", "x"), m("/a", "y")], &[]).unwrap_err();
        assert!(e.contains("mounted twice"), "{e}");
        assert!(plan(None, &[], &[]).unwrap().is_empty());
    }

    #[test]
    fn longest_prefix_on_whole_segments() {
        assert!(Router::new(&[p("/")]).is_none());
        let r = Router::new(&[p("/"), p("/api"), p("/api/v2")]).unwrap();
        let at = |path: &str| r.route(path.as_bytes()).map(|x| (x.app, x.split));
        assert_eq!(at("/api"), Some((1, 4)));
        assert_eq!(at("/api/"), Some((1, 4)));
        assert_eq!(at("/api/x"), Some((1, 4)));
        assert_eq!(at("/apix"), Some((0, 0)));
        assert_eq!(at("/api/v2/t"), Some((2, 7)));
        assert_eq!(at("/api/v22"), Some((1, 4)));
        assert_eq!(at("/"), Some((0, 0)));
        assert_eq!(at("*"), Some((0, 0)));
        let r = Router::new(&[p("/api")]).unwrap();
        assert_eq!(r.route(b"/other"), None);
        assert_eq!(r.route(b"/apix"), None);
    }

    #[test]
    fn raw_split_follows_the_decoding() {
        assert_eq!(raw_split(b"/api/x", 4), 4);
        assert_eq!(raw_split(b"/%61pi/x", 4), 6);
        assert_eq!(raw_split(b"/a%zzb", 3), 3);
        assert_eq!(raw_split(b"/a%2", 3), 3);
        assert_eq!(raw_split(b"/", 0), 0);
    }
}
