//! `--cipher-suites`, `--tls-min-version` and `--tls-max-version`: Go's names mapped onto what
//! rustls (with ring) implements. One [`TlsOptions`] serves the client and the peer listeners
//! and peer dialing, as in etcd.

use std::sync::Arc;

use rustls::crypto::ring as ring_provider;
use rustls::crypto::CryptoProvider;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// A TLS protocol version as etcd 3.5's flags name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLS1.2",
            TlsVersion::Tls13 => "TLS1.3",
        }
    }
}

/// A `--tls-min-version`/`--tls-max-version` value; empty means "no limit" (`None`). TLS 1.0
/// and 1.1 are names etcd knows, but rustls does not speak them.
pub fn parse_version(s: &str) -> Result<Option<TlsVersion>, String> {
    match s {
        "" => Ok(None),
        "TLS1.2" => Ok(Some(TlsVersion::Tls12)),
        "TLS1.3" => Ok(Some(TlsVersion::Tls13)),
        "TLS1.0" | "TLS1.1" => Err(format!(
            "TLS version {s} is not supported by oxcd (only TLS1.2 and TLS1.3 are)"
        )),
        _ => Err(format!(
            "unexpected TLS version {s:?} (must be one of: TLS1.2, TLS1.3)"
        )),
    }
}

/// The rustls suite for a Go TLS 1.2 suite name rustls implements (two legacy spellings
/// included).
fn supported(name: &str) -> Option<SupportedCipherSuite> {
    use ring_provider::cipher_suite::*;
    Some(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// TLS 1.3 suites: Go accepts their names in `--cipher-suites` but never lets the list restrict
/// TLS 1.3, and neither does oxcd.
const TLS13_NAMES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// Suites Go knows that rustls does not implement (RSA key exchange, CBC, RC4, 3DES): named
/// so an operator learns why a valid etcd flag is refused.
const UNSUPPORTED_NAMES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The protocol settings every TLS connection of the member uses.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `--cipher-suites` as given (for the start-up log line), in order.
    pub cipher_suite_names: Vec<String>,
    /// The TLS 1.2 suites allowed, in preference order; empty: rustls' defaults.
    tls12_suites: Vec<SupportedCipherSuite>,
    pub min_version: TlsVersion,
    pub max_version: Option<TlsVersion>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            cipher_suite_names: Vec::new(),
            tls12_suites: Vec::new(),
            min_version: TlsVersion::Tls12,
            max_version: None,
        }
    }
}

impl TlsOptions {
    /// Checks the three flags as etcd does (its texts where it has them).
    pub fn parse(cipher_suites: &[String], min: &str, max: &str) -> Result<TlsOptions, String> {
        let mut tls12_suites = Vec::new();
        for name in cipher_suites {
            if let Some(suite) = supported(name) {
                if !tls12_suites.contains(&suite) {
                    tls12_suites.push(suite);
                }
            } else if TLS13_NAMES.contains(&name.as_str()) {
                // Accepted and without effect, as in Go.
            } else if UNSUPPORTED_NAMES.contains(&name.as_str()) {
                return Err(format!(
                    "TLS cipher suite {name:?} is not supported by oxcd (only ECDHE suites with \
                     AES-GCM or ChaCha20-Poly1305 are)"
                ));
            } else {
                return Err(format!("unexpected TLS cipher suite {name:?}"));
            }
        }
        let min_version = parse_version(min)?.unwrap_or(TlsVersion::Tls12);
        let max_version = parse_version(max)?;
        if let Some(max_v) = max_version {
            if min_version > max_v {
                return Err(format!(
                    "min version ({min}) is greater than max version ({max})"
                ));
            }
        }
        if min_version == TlsVersion::Tls13 && !cipher_suites.is_empty() {
            return Err(
                "cipher suites cannot be configured when only TLS1.3 is enabled".to_string(),
            );
        }
        Ok(TlsOptions {
            cipher_suite_names: cipher_suites.to_vec(),
            tls12_suites,
            min_version,
            max_version,
        })
    }

    /// The ring provider restricted to the configured TLS 1.2 suites (TLS 1.3 suites are all
    /// kept, as Go keeps them).
    pub fn provider(&self) -> Arc<CryptoProvider> {
        let mut p = ring_provider::default_provider();
        if !self.tls12_suites.is_empty() {
            let tls13: Vec<SupportedCipherSuite> = p
                .cipher_suites
                .iter()
                .copied()
                .filter(|s| s.version() == &rustls::version::TLS13)
                .collect();
            p.cipher_suites = self.tls12_suites.clone();
            p.cipher_suites.extend(tls13);
        }
        Arc::new(p)
    }

    /// The protocol versions between `--tls-min-version` and `--tls-max-version`.
    pub fn versions(&self) -> Vec<&'static SupportedProtocolVersion> {
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        let mut v = Vec::new();
        if self.min_version <= TlsVersion::Tls13 && max >= TlsVersion::Tls13 {
            v.push(&rustls::version::TLS13);
        }
        if self.min_version <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
            v.push(&rustls::version::TLS12);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_suite_names() {
        let o = TlsOptions::parse(
            &names(&[
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                "TLS_AES_128_GCM_SHA256",
            ]),
            "",
            "",
        )
        .unwrap();
        let p = o.provider();
        let tls12 = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .count();
        assert_eq!(tls12, 2);
        assert!(p.cipher_suites.len() > 2, "TLS 1.3 suites stay");
        assert_eq!(
            TlsOptions::parse(&names(&["BOGUS"]), "", "").unwrap_err(),
            "unexpected TLS cipher suite \"BOGUS\""
        );
        let e = TlsOptions::parse(&names(&["TLS_RSA_WITH_AES_128_CBC_SHA"]), "", "").unwrap_err();
        assert!(e.contains("not supported by oxcd"), "{e}");
    }

    #[test]
    fn versions() {
        let o = TlsOptions::parse(&[], "TLS1.2", "").unwrap();
        assert_eq!(o.versions().len(), 2);
        let o = TlsOptions::parse(&[], "TLS1.3", "TLS1.3").unwrap();
        assert_eq!(o.versions(), vec![&rustls::version::TLS13]);
        let o = TlsOptions::parse(&[], "", "TLS1.2").unwrap();
        assert_eq!(o.versions(), vec![&rustls::version::TLS12]);
        assert_eq!(
            TlsOptions::parse(&[], "TLS1.3", "TLS1.2").unwrap_err(),
            "min version (TLS1.3) is greater than max version (TLS1.2)"
        );
        assert!(TlsOptions::parse(&[], "TLS1.0", "").is_err());
        assert!(TlsOptions::parse(&[], "SSL3", "").is_err());
        assert_eq!(
            TlsOptions::parse(
                &names(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]),
                "TLS1.3",
                ""
            )
            .unwrap_err(),
            "cipher suites cannot be configured when only TLS1.3 is enabled"
        );
    }
}
