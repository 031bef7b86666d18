//! Editions and tenancy: Consul Enterprise's namespaces and admin partitions, for plugins
//! built in two editions from one source.
//!
//! Consul builds its editions from `*_ce.go` and `*_ent.go` files; a plugin does the same
//! with a cargo feature that picks its [`Edition`]. Its records carry a [`Tenancy`] (Consul's
//! `EnterpriseMeta`): always empty in the OSS edition, so OSS records and keys are exactly
//! what they would be without it; in the enterprise edition every key starts with the
//! partition and the namespace ([`Tenancy::key`]), so tenants never see each other's
//! objects. HTTP routes read `?ns=` and `?partition=` with [`Tenancy::from_request`], which
//! in the OSS edition refuses them as Consul CE does.
//!
//! ```
//! use fsmhost_guest::http::Request;
//! use fsmhost_guest::{Edition, Key, Tenancy};
//!
//! let req = Request::new("GET", "/v1/kv/a").param("ns", "team-a");
//! let t = Tenancy::from_request(&req, Edition::Enterprise).unwrap();
//! assert_eq!((t.partition.as_str(), t.namespace.as_str()), ("default", "team-a"));
//! assert_eq!(t.key(Edition::Enterprise).string("a").build(), b"default\0team-a\0a\0");
//! // The OSS edition refuses the parameter, naming it.
//! let e = Tenancy::from_request(&req, Edition::Oss).unwrap_err();
//! assert!(e.message.contains("Namespaces are a Consul Enterprise feature"));
//! // and keys carry no tenancy at all.
//! assert_eq!(Tenancy::default().key(Edition::Oss).string("a").build(), b"a\0");
//! ```

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::http::Request;
use crate::key::Key;

/// The default namespace and partition (Consul's `default`).
pub const DEFAULT: &str = "default";

/// The edition a plugin is built as; it names the edition in the plugin's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edition {
    /// The open-source edition: no namespaces or partitions.
    Oss,
    /// The enterprise edition: every record in a namespace and a partition.
    Enterprise,
}

impl Edition {
    /// The edition's name in a plugin description: `oss` or `enterprise`.
    pub const fn name(self) -> &'static str {
        match self {
            Edition::Oss => "oss",
            Edition::Enterprise => "enterprise",
        }
    }
}

/// Where a record lives: its admin partition and namespace (Consul's `EnterpriseMeta`).
/// Empty in the OSS edition, and then not serialized, so OSS records are unchanged by it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenancy {
    /// The admin partition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub partition: String,
    /// The namespace (empty for partition-scoped records such as Consul's nodes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Tenancy {
    /// Whether both parts are empty (always so in the OSS edition).
    pub fn is_empty(&self) -> bool {
        self.partition.is_empty() && self.namespace.is_empty()
    }

    /// Checks a tenancy a request gave and fills in the defaults: the OSS edition refuses
    /// any but the default (as Consul CE does) and returns the empty tenancy; the enterprise
    /// edition fills in `default` for a missing partition or namespace and refuses a NUL
    /// byte (the key terminator).
    pub fn resolve(self, edition: Edition) -> Result<Tenancy, Error> {
        match edition {
            Edition::Oss => {
                if !matches!(self.namespace.as_str(), "" | DEFAULT) {
                    return Err(oss_refusal("ns", "Namespaces"));
                }
                if !matches!(self.partition.as_str(), "" | DEFAULT) {
                    return Err(oss_refusal("partition", "Partitions"));
                }
                Ok(Tenancy::default())
            }
            Edition::Enterprise => {
                let pick = |s: String, what: &str| -> Result<String, Error> {
                    if s.contains('\0') {
                        return Err(Error::bad_request(format!(
                            "{what} {s:?} contains a NUL byte"
                        )));
                    }
                    Ok(if s.is_empty() { DEFAULT.to_string() } else { s })
                };
                Ok(Tenancy {
                    partition: pick(self.partition, "partition")?,
                    namespace: pick(self.namespace, "namespace")?,
                })
            }
        }
    }

    /// The tenancy of a partition-scoped record (no namespace), resolved as
    /// [`Tenancy::resolve`] does.
    pub fn partition_only(self, edition: Edition) -> Result<Tenancy, Error> {
        let mut t = self.resolve(edition)?;
        t.namespace.clear();
        Ok(t)
    }

    /// Consul's `parseEntMeta`: the `?ns=` and `?partition=` parameters of a request,
    /// resolved for `edition`.
    pub fn from_request(req: &Request, edition: Edition) -> Result<Tenancy, Error> {
        Tenancy {
            partition: req.get("partition").unwrap_or_default().to_string(),
            namespace: req.get("ns").unwrap_or_default().to_string(),
        }
        .resolve(edition)
    }

    /// The start of every index key of a record in this tenancy: nothing in the OSS edition;
    /// the partition then the namespace in the enterprise edition. Callers append the rest.
    pub fn key(&self, edition: Edition) -> Key {
        match edition {
            Edition::Oss => Key::new(),
            Edition::Enterprise => Key::new().string(&self.partition).string(&self.namespace),
        }
    }
}

fn oss_refusal(param: &str, feature: &str) -> Error {
    Error::bad_request(format!(
        "Invalid query parameter: \"{param}\" - {feature} are a Consul Enterprise feature"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oss_accepts_only_the_default() {
        let t = Tenancy {
            partition: DEFAULT.into(),
            namespace: DEFAULT.into(),
        };
        assert_eq!(t.resolve(Edition::Oss).unwrap(), Tenancy::default());
        let e = Tenancy {
            partition: "p".into(),
            namespace: String::new(),
        }
        .resolve(Edition::Oss)
        .unwrap_err();
        assert!(e.message.contains("\"partition\" - Partitions"), "{e:?}");
    }

    #[test]
    fn enterprise_keys_keep_tenants_apart() {
        let a = Tenancy::default().resolve(Edition::Enterprise).unwrap();
        let b = Tenancy {
            partition: String::new(),
            namespace: "b".into(),
        }
        .resolve(Edition::Enterprise)
        .unwrap();
        let ka = a.key(Edition::Enterprise).string("k").build();
        let kb = b.key(Edition::Enterprise).string("k").build();
        assert_ne!(ka, kb);
        assert!(!ka.starts_with(&b.key(Edition::Enterprise).build()));
        let bad = Tenancy {
            partition: "a\0b".into(),
            namespace: String::new(),
        };
        assert!(bad.resolve(Edition::Enterprise).is_err());
        let node = Tenancy::default()
            .partition_only(Edition::Enterprise)
            .unwrap();
        assert_eq!(
            (node.partition.as_str(), node.namespace.as_str()),
            ("default", "")
        );
    }

    #[test]
    fn an_empty_tenancy_is_not_serialized() {
        #[derive(Serialize)]
        struct R {
            a: u8,
            #[serde(default, skip_serializing_if = "Tenancy::is_empty")]
            t: Tenancy,
        }
        let bytes = crate::to_cbor(&R {
            a: 1,
            t: Tenancy::default(),
        })
        .unwrap();
        #[derive(Serialize)]
        struct Plain {
            a: u8,
        }
        assert_eq!(bytes, crate::to_cbor(&Plain { a: 1 }).unwrap());
    }
}
