//! The bridge's `--app-arg` pairs:
//!
//! * `app=MODULE:CALLABLE` (required): what to import and call; CALLABLE may
//!   be dotted (`app=main:api.wsgi_app`) and defaults to `application`, as
//!   in gunicorn (`app=mysite.wsgi`, Django's);
//! * `path=DIR` (repeatable): import paths put first on `sys.path`, in
//!   order; without any, the current directory;
//! * `venv=DIR`: a virtualenv whose site-packages is added; without it,
//!   `$VIRTUAL_ENV` if set.

use std::path::PathBuf;

use abi::ffi::nwsgi_header;

pub struct Config {
    pub module: String,
    pub callable: String,
    pub paths: Vec<PathBuf>,
    pub venv: Option<PathBuf>,
}

impl Config {
    /// Reads the pairs, or says in one line what is wrong with them.
    ///
    /// # Safety
    /// Every string of `pairs` points to its length of readable bytes.
    pub unsafe fn from_pairs(pairs: &[nwsgi_header]) -> Result<Config, String> {
        let mut spec = None;
        let mut paths = Vec::new();
        let mut venv = None;
        for pair in pairs {
            // SAFETY: the caller's promise.
            let (key, value) = unsafe { (pair.name.as_bytes(), pair.value.as_bytes()) };
            let key = String::from_utf8_lossy(key);
            let value = std::str::from_utf8(value)
                .map_err(|_| format!("--app-arg {key}: the value is not UTF-8"))?;
            match &*key {
                "app" => spec = Some(value.to_owned()),
                "path" => paths.push(PathBuf::from(value)),
                "venv" => venv = Some(PathBuf::from(value)),
                other => {
                    return Err(format!(
                        "unknown --app-arg {other:?} (the wsgi bridge takes app=MODULE:CALLABLE, path=DIR, venv=DIR)"
                    ))
                }
            }
        }
        let spec = spec.ok_or("missing --app-arg app=MODULE:CALLABLE (e.g. app=myapp:app)")?;
        let (module, callable) = split_spec(&spec)?;
        if paths.is_empty() {
            paths.push(PathBuf::from("."));
        }
        let venv = venv.or_else(|| {
            std::env::var_os("VIRTUAL_ENV")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        Ok(Config {
            module,
            callable,
            paths,
            venv,
        })
    }
}

/// `MODULE:CALLABLE` into its two halves, each a dotted Python name.
fn split_spec(spec: &str) -> Result<(String, String), String> {
    let bad = || format!("--app-arg app={spec}: expected MODULE:CALLABLE, e.g. app=myapp:app");
    let (module, callable) = spec.split_once(':').unwrap_or((spec, "application"));
    let dotted = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
                    && chars.all(|c| c.is_alphanumeric() || c == '_')
            })
    };
    if !dotted(module) || !dotted(callable) {
        return Err(bad());
    }
    Ok((module.to_owned(), callable.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::split_spec;

    #[test]
    fn spec_halves() {
        assert_eq!(
            split_spec("proj.wsgi:application").unwrap(),
            ("proj.wsgi".to_owned(), "application".to_owned())
        );
        assert_eq!(
            split_spec("main:api.wsgi_app").unwrap(),
            ("main".to_owned(), "api.wsgi_app".to_owned())
        );
        assert_eq!(
            split_spec("mysite.wsgi").unwrap(),
            ("mysite.wsgi".to_owned(), "application".to_owned())
        );
        for bad in [":app", "app:", "a b:c", "a:c()", "a..b:c", "1a:b", "a:b:c"] {
            assert!(split_spec(bad).is_err(), "{bad}");
        }
    }
}
