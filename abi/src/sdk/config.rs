//! The application's configuration: the host's `--app-arg key=value` pairs.

/// The `--app-arg key=value` pairs handed to [`App::init`](crate::App::init),
/// copied out of the host's memory (which is only borrowed during init), in
/// the order given. Bytes that are not UTF-8 are replaced with U+FFFD.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A configuration from pairs, e.g. for an application's unit tests.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Config
    where
        K: Into<String>,
        V: Into<String>,
    {
        Config {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `key`; if it was given several times, the last one
    /// (a later `--app-arg` overrides an earlier one).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in the order the host gave them (repeats included).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_wins_and_order_kept() {
        let c = Config::from_pairs([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(c.get("a"), Some("3"));
        assert_eq!(c.get("c"), None);
        let all: Vec<_> = c.iter().collect();
        assert_eq!(all, [("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(c.len(), 3);
    }
}
