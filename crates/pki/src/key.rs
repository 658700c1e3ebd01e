//! Key types: generating a key pair and reading one back from PEM.

use crate::PkiError;
use rcgen::KeyPair;
use std::fmt;
use std::str::FromStr;

/// The kind of key a certificate is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgo {
    Rsa2048,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgo {
    /// The names [`FromStr`] accepts, for help texts and error messages.
    pub const NAMES: &'static [&'static str] = &[
        "rsa",
        "rsa2048",
        "rsa4096",
        "ecdsa",
        "ecdsa-p256",
        "ecdsa-p384",
    ];
}

impl FromStr for KeyAlgo {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<KeyAlgo, PkiError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" | "rsa2048" | "rsa-2048" => Ok(KeyAlgo::Rsa2048),
            "rsa4096" | "rsa-4096" => Ok(KeyAlgo::Rsa4096),
            "ecdsa" | "ecdsa-p256" | "ecdsa256" | "p256" | "p-256" => Ok(KeyAlgo::EcdsaP256),
            "ecdsa-p384" | "ecdsa384" | "p384" | "p-384" => Ok(KeyAlgo::EcdsaP384),
            _ => Err(PkiError::Invalid(format!(
                "unknown key type {s:?} (expected one of: {})",
                KeyAlgo::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for KeyAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgo::Rsa2048 => "rsa2048",
            KeyAlgo::Rsa4096 => "rsa4096",
            KeyAlgo::EcdsaP256 => "ecdsa-p256",
            KeyAlgo::EcdsaP384 => "ecdsa-p384",
        })
    }
}

/// A fresh key pair of the given kind.
pub(crate) fn generate(algo: KeyAlgo) -> Result<KeyPair, PkiError> {
    match algo {
        KeyAlgo::Rsa2048 => generate_rsa(2048),
        KeyAlgo::Rsa4096 => generate_rsa(4096),
        KeyAlgo::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
        KeyAlgo::EcdsaP384 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?),
    }
}

/// ring signs with RSA keys but cannot make them, so the `rsa` crate does and hands over PKCS#8.
fn generate_rsa(bits: usize) -> Result<KeyPair, PkiError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
        .map_err(|e| PkiError::Key(format!("generating an RSA key: {e}")))?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| PkiError::Key(format!("encoding an RSA key: {e}")))?;
    rsa_key_pair(der.as_bytes())
}

fn rsa_key_pair(pkcs8: &[u8]) -> Result<KeyPair, PkiError> {
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8.into(),
        &rcgen::PKCS_RSA_SHA256,
    )?)
}

/// Reads the first private key in a PEM text: PKCS#8 (`PRIVATE KEY`) as this crate writes,
/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) as openssl and cfssl write them, so a CA
/// made by those tools can go on issuing with this one.
pub(crate) fn load(pem: &str) -> Result<KeyPair, PkiError> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| PkiError::Key(format!("bad PEM: {e}")))?;
        match block.label.as_str() {
            "PRIVATE KEY" => {
                return KeyPair::try_from(block.contents.as_slice())
                    .map_err(|e| PkiError::Key(format!("unsupported PKCS#8 key: {e}")))
            }
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::from_pkcs1_der(&block.contents)
                    .map_err(|e| PkiError::Key(format!("bad PKCS#1 RSA key: {e}")))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| PkiError::Key(format!("encoding an RSA key: {e}")))?;
                return rsa_key_pair(der.as_bytes());
            }
            "EC PRIVATE KEY" => {
                return KeyPair::try_from(sec1_to_pkcs8(&block.contents)?)
                    .map_err(|e| PkiError::Key(format!("unsupported EC key: {e}")))
            }
            _ => continue,
        }
    }
    Err(PkiError::Key("no PRIVATE KEY block in the PEM text".into()))
}

/// Wraps a SEC1 EC key in PKCS#8, the only form ring reads: the curve moves to the outer
/// algorithm identifier (ring wants it there and not repeated inside), and the public key,
/// which ring requires, must already be in the SEC1 key (openssl and cfssl write it).
fn sec1_to_pkcs8(sec1_der: &[u8]) -> Result<Vec<u8>, PkiError> {
    use rsa::pkcs8::der::asn1::{AnyRef, ObjectIdentifier};
    use rsa::pkcs8::der::{Decode, Encode};
    use rsa::pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
    const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    let bad = |e: &dyn fmt::Display| PkiError::Key(format!("bad SEC1 EC key: {e}"));
    let mut key = sec1::EcPrivateKey::from_der(sec1_der).map_err(|e| bad(&e))?;
    let curve = key
        .parameters
        .and_then(|p| p.named_curve())
        .ok_or_else(|| bad(&"it does not name its curve"))?;
    if key.public_key.is_none() {
        return Err(bad(&"it lacks its public key"));
    }
    key.parameters = None;
    let inner = key.to_der().map_err(|e| bad(&e))?;
    let info = PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: EC_PUBLIC_KEY,
            parameters: Some(AnyRef::from(&curve)),
        },
        private_key: &inner,
        public_key: None,
    };
    info.to_der().map_err(|e| bad(&e))
}
