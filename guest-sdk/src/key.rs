//! Index key encoding, in the style of Consul's `indexBuilder`.
//!
//! Keys are byte strings compared lexicographically by the host. [`Key`] builds them from
//! parts so that compound keys sort and prefix-match the way a plugin author expects:
//! a string part ends with a `0x00` terminator (so `"a"` + `"b"` never equals `"ab"`), an
//! integer part is fixed-width big-endian (so numeric order is byte order).

/// A key under construction. Chain parts, then call [`Key::build`].
///
/// ```
/// use fsmhost_guest::Key;
/// // A compound key: node name, then service id (Consul's node + service index).
/// let k = Key::new().string("node-1").string("web").build();
/// assert_eq!(k, b"node-1\0web\0");
/// // A prefix of that index: every service of node-1.
/// assert!(k.starts_with(&Key::new().string("node-1").build()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// An empty key.
    pub fn new() -> Self {
        Key(Vec::new())
    }

    /// Appends a string followed by a `0x00` terminator. As with Consul's `indexBuilder`,
    /// parts stay apart only if the strings hold no NUL byte themselves: refuse such input
    /// (kv does) or use [`Key::raw`] for the last part.
    pub fn string(mut self, s: &str) -> Self {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }

    /// Appends a string lowercased, followed by a `0x00` terminator (case-insensitive keys).
    pub fn string_lower(self, s: &str) -> Self {
        self.string(&s.to_lowercase())
    }

    /// Appends raw bytes with no terminator. Use it for the last part of a key, or for a
    /// prefix: `Key::new().raw(b"foo/")` matches every key starting with `foo/`.
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// Appends an integer as 8 big-endian bytes, so byte order is numeric order.
    pub fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    /// Appends a boolean as one byte (0 or 1).
    pub fn bool(mut self, b: bool) -> Self {
        self.0.push(u8::from(b));
        self
    }

    /// The key bytes.
    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

impl From<Key> for Vec<u8> {
    fn from(k: Key) -> Vec<u8> {
        k.0
    }
}

/// Shows a key in messages: as quoted text when it is printable UTF-8 (without the final
/// terminator [`Key::string`] adds), else as hex.
pub struct DisplayKey<'a>(pub &'a [u8]);

impl std::fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.strip_suffix(&[0]).unwrap_or(self.0);
        match std::str::from_utf8(text) {
            Ok(s) if !s.chars().any(char::is_control) => write!(f, "{s:?}"),
            _ => {
                f.write_str("0x")?;
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// The smallest key strictly greater than every key starting with `prefix`, or `None` when
/// no such key exists (the prefix is empty or all `0xff`). Used to turn a prefix into a range.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_sort_numerically() {
        let a = Key::new().u64(9).build();
        let b = Key::new().u64(10).build();
        assert!(a < b);
    }

    #[test]
    fn string_parts_do_not_run_together() {
        assert_ne!(
            Key::new().string("a").string("bc").build(),
            Key::new().string("ab").string("c").build()
        );
    }

    #[test]
    fn keys_display_as_text_or_hex() {
        assert_eq!(
            DisplayKey(&Key::new().string("web").build()).to_string(),
            "\"web\""
        );
        assert_eq!(DisplayKey(&[0xff, 0x01]).to_string(), "0xff01");
        assert_eq!(
            DisplayKey(&Key::new().u64(1).build()).to_string(),
            "0x0000000000000001"
        );
    }

    #[test]
    fn successor_of_prefix() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
