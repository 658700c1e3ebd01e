//! Round trips through the public API: make, then inspect what was made.

use crate::*;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);

fn req(cn: &str, hosts: &[&str], algo: KeyAlgo, usage: Usage) -> CertRequest {
    CertRequest {
        common_name: cn.into(),
        organization: Some("oxcd".into()),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        algo,
        valid_for: 30 * DAY,
        usage,
    }
}

fn only(pem: &str) -> CertInfo {
    let mut v = inspect_pem(pem).unwrap();
    assert_eq!(v.len(), 1);
    v.remove(0)
}

/// The leaf's signature verifies with the CA's public key.
fn assert_signed_by(leaf: &str, ca: &str) {
    let leaf = x509_parser::pem::parse_x509_pem(leaf.as_bytes()).unwrap().1;
    let ca = x509_parser::pem::parse_x509_pem(ca.as_bytes()).unwrap().1;
    let (leaf, ca) = (leaf.parse_x509().unwrap(), ca.parse_x509().unwrap());
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    // AKI of the leaf is the SKI of the CA, which is how verifiers pick the issuer.
    let aki = leaf
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.clone()
            }
            _ => None,
        })
        .unwrap();
    let ski = ca
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki.0, ski.0);
}

fn round_trip(algo: KeyAlgo, key_name: &str) {
    let ca = new_ca("test-ca", algo, 365 * DAY).unwrap();
    assert!(ca.key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let ca_info = only(&ca.cert);
    assert!(ca_info.is_ca);
    assert_eq!(ca_info.subject, "CN=test-ca");
    assert_eq!(ca_info.issuer, "CN=test-ca");
    assert_eq!(ca_info.key_algorithm, key_name);
    assert!(ca_info.key_usage.contains(&"keyCertSign".to_string()));
    assert!(ca_info.key_usage.contains(&"cRLSign".to_string()));

    let r = req(
        "node1",
        &[
            "127.0.0.1",
            "localhost",
            "node1.example",
            "::1",
            "localhost",
        ],
        algo,
        Usage::Server,
    );
    let leaf = issue(&ca, &r).unwrap();
    let info = only(&leaf.cert);
    assert!(!info.is_ca);
    assert_eq!(info.common_name.as_deref(), Some("node1"));
    assert_eq!(info.subject, "O=oxcd, CN=node1");
    assert_eq!(info.issuer, "CN=test-ca");
    assert_eq!(info.dns_names, ["localhost", "node1.example"]);
    assert_eq!(
        info.ip_addresses,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert_eq!(info.ext_key_usage, ["serverAuth", "clientAuth"]);
    assert!(info.key_usage.contains(&"digitalSignature".to_string()));
    assert_eq!(info.key_algorithm, key_name);
    assert_eq!(info.serial_hex.len(), 32);
    assert_ne!(info.serial_hex, ca_info.serial_hex);
    // Validity: starts a little in the past, ends 30 days out.
    let now = SystemTime::now();
    assert!(info.not_before < now);
    let left = info.not_after.duration_since(now).unwrap();
    assert!(left > 30 * DAY - Duration::from_secs(60) && left <= 30 * DAY);
    assert!(!info.expires_within(29 * DAY));
    assert!(info.expires_within(31 * DAY));
    assert_signed_by(&leaf.cert, &ca.cert);

    let peer = issue(&ca, &req("node1", &["10.0.0.1"], algo, Usage::Peer)).unwrap();
    assert_eq!(only(&peer.cert).ext_key_usage, ["serverAuth", "clientAuth"]);
    let strict = issue(&ca, &req("n", &["n1"], algo, Usage::ServerOnly)).unwrap();
    assert_eq!(only(&strict.cert).ext_key_usage, ["serverAuth"]);
    let client = issue(&ca, &req("root", &[], algo, Usage::Client)).unwrap();
    let client = only(&client.cert);
    assert_eq!(client.ext_key_usage, ["clientAuth"]);
    assert!(client.dns_names.is_empty() && client.ip_addresses.is_empty());
}

#[test]
fn ecdsa_issue_and_inspect() {
    round_trip(KeyAlgo::EcdsaP256, "ECDSA P-256");
}

#[test]
fn ecdsa_p384_issue_and_inspect() {
    round_trip(KeyAlgo::EcdsaP384, "ECDSA P-384");
}

#[test]
fn rsa_issue_and_inspect() {
    round_trip(KeyAlgo::Rsa2048, "RSA 2048");
}

#[test]
fn rsa_leaf_can_be_signed_by_an_ecdsa_ca() {
    let ca = new_ca("ca", KeyAlgo::EcdsaP256, DAY).unwrap();
    let leaf = issue(&ca, &req("n", &["n1"], KeyAlgo::Rsa2048, Usage::Server)).unwrap();
    let info = only(&leaf.cert);
    assert_eq!(info.key_algorithm, "RSA 2048");
    assert!(info.key_usage.contains(&"keyEncipherment".to_string()));
    assert_signed_by(&leaf.cert, &ca.cert);
}

#[test]
fn signatures_tell_apart_cas_with_the_same_name() {
    let a = new_ca("oxcd-ca", KeyAlgo::EcdsaP256, DAY).unwrap();
    let b = new_ca("oxcd-ca", KeyAlgo::Rsa2048, DAY).unwrap();
    let leaf = issue(&a, &req("c", &[], KeyAlgo::EcdsaP256, Usage::Client)).unwrap();
    assert!(is_signed_by(&leaf.cert, &a.cert).unwrap());
    assert!(!is_signed_by(&leaf.cert, &b.cert).unwrap());
    let list = crl(&b, &[], DAY).unwrap();
    assert!(crl_is_signed_by(&list, &b.cert).unwrap());
    assert!(!crl_is_signed_by(&list, &a.cert).unwrap());
    assert!(is_signed_by(&leaf.key, &a.cert).is_err());
}

#[test]
fn a_pkcs1_rsa_ca_key_is_accepted() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    let ca = new_ca("ca", KeyAlgo::Rsa2048, DAY).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&ca.key).unwrap();
    let pkcs1 = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let ca1 = Pem {
        cert: ca.cert.clone(),
        key: pkcs1.to_string(),
    };
    let leaf = issue(&ca1, &req("n", &["n1"], KeyAlgo::EcdsaP256, Usage::Server)).unwrap();
    assert_signed_by(&leaf.cert, &ca.cert);
}

/// `der` as a PEM block of `label`, 64 characters a line.
fn pem_wrap(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// A PKCS#8 EC key rewritten as SEC1 the way openssl writes it: curve inside, public key kept
/// (or dropped, to see the error).
fn to_sec1_pem(pkcs8_pem: &str, keep_public: bool) -> String {
    use rsa::pkcs8::der::{Decode, Encode};
    let block = x509_parser::pem::parse_x509_pem(pkcs8_pem.as_bytes())
        .unwrap()
        .1;
    let info = rsa::pkcs8::PrivateKeyInfo::from_der(&block.contents).unwrap();
    let curve = info.algorithm.parameters_oid().unwrap();
    let mut key = sec1::EcPrivateKey::from_der(info.private_key).unwrap();
    key.parameters = Some(sec1::EcParameters::NamedCurve(curve));
    if !keep_public {
        key.public_key = None;
    }
    pem_wrap("EC PRIVATE KEY", &key.to_der().unwrap())
}

#[test]
fn a_sec1_ec_ca_key_is_accepted() {
    for algo in [KeyAlgo::EcdsaP256, KeyAlgo::EcdsaP384] {
        let ca = new_ca("ca", algo, DAY).unwrap();
        let sec1_ca = Pem {
            cert: ca.cert.clone(),
            key: to_sec1_pem(&ca.key, true),
        };
        assert!(sec1_ca.key.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let leaf = issue(&sec1_ca, &req("n", &["n1"], algo, Usage::Server)).unwrap();
        assert!(is_signed_by(&leaf.cert, &ca.cert).unwrap());
        assert!(crl(&sec1_ca, &[], DAY).is_ok());
        let no_public = Pem {
            cert: ca.cert.clone(),
            key: to_sec1_pem(&ca.key, false),
        };
        let err = issue(&no_public, &req("n", &[], algo, Usage::Client)).unwrap_err();
        assert!(err.to_string().contains("lacks its public key"), "{err}");
    }
}

#[test]
fn self_signed_names_itself_as_issuer() {
    let r = req("auto", &["127.0.0.1"], KeyAlgo::EcdsaP256, Usage::Peer);
    let pem = self_signed(&r).unwrap();
    let info = only(&pem.cert);
    assert_eq!(info.subject, info.issuer);
    assert!(info.covers_host("127.0.0.1"));
    assert_signed_by(&pem.cert, &pem.cert);
}

#[test]
fn covers_host_matches_ips_names_and_wildcards() {
    let ca = new_ca("ca", KeyAlgo::EcdsaP256, DAY).unwrap();
    let hosts = ["127.0.0.1", "::1", "Node1.Example.", "*.pods.example"];
    let leaf = issue(&ca, &req("n", &hosts, KeyAlgo::EcdsaP256, Usage::Server)).unwrap();
    let info = only(&leaf.cert);
    for yes in [
        "127.0.0.1",
        "::1",
        "[::1]",
        "node1.example",
        "NODE1.example.",
        "a.pods.example",
    ] {
        assert!(info.covers_host(yes), "{yes}");
    }
    for no in [
        "127.0.0.2",
        "10.0.0.1",
        "::2",
        "node2.example",
        "example",
        "pods.example",
        "a.b.pods.example",
        "n", // the CN is not a name the certificate covers
        "",
    ] {
        assert!(!info.covers_host(no), "{no}");
    }
}

#[test]
fn bad_requests_are_refused() {
    let ca = new_ca("ca", KeyAlgo::EcdsaP256, DAY).unwrap();
    for bad in ["https://node1:2379", "node1,node2", "[nope]", "a..b", "*"] {
        let r = req("n", &[bad], KeyAlgo::EcdsaP256, Usage::Server);
        let err = issue(&ca, &r).unwrap_err();
        assert!(matches!(err, PkiError::Invalid(_)), "{bad}: {err}");
    }
    let mut r = req("n", &[], KeyAlgo::EcdsaP256, Usage::Client);
    r.valid_for = Duration::ZERO;
    assert!(issue(&ca, &r).is_err());
    r.valid_for = DAY;
    r.common_name = " ".into();
    assert!(issue(&ca, &r).is_err());
    assert!(new_ca("ca", KeyAlgo::EcdsaP256, Duration::from_secs(u64::MAX)).is_err());
    let not_a_ca = Pem {
        cert: "garbage".into(),
        key: ca.key.clone(),
    };
    assert!(issue(&not_a_ca, &req("n", &[], KeyAlgo::EcdsaP256, Usage::Client)).is_err());
}

#[test]
fn key_algo_names() {
    for (s, a) in [
        ("rsa", KeyAlgo::Rsa2048),
        ("RSA2048", KeyAlgo::Rsa2048),
        ("rsa4096", KeyAlgo::Rsa4096),
        ("ecdsa", KeyAlgo::EcdsaP256),
        ("ecdsa-p256", KeyAlgo::EcdsaP256),
        ("ecdsa-p384", KeyAlgo::EcdsaP384),
    ] {
        assert_eq!(s.parse::<KeyAlgo>().unwrap(), a);
        assert_eq!(a.to_string().parse::<KeyAlgo>().unwrap(), a);
    }
    assert!("dsa".parse::<KeyAlgo>().is_err());
    assert_eq!("Peer".parse::<Usage>().unwrap(), Usage::Peer);
    assert_eq!("server-only".parse::<Usage>().unwrap(), Usage::ServerOnly);
    assert!("both".parse::<Usage>().is_err());
}

#[test]
fn inspect_reads_bundles_and_refuses_non_certificates() {
    let a = new_ca("a", KeyAlgo::EcdsaP256, DAY).unwrap();
    let b = new_ca("b", KeyAlgo::EcdsaP256, DAY).unwrap();
    let bundle = format!("{}\n{}{}", a.cert, a.key, b.cert);
    let infos = inspect_pem(&bundle).unwrap();
    let names: Vec<_> = infos.iter().map(|i| i.subject.as_str()).collect();
    assert_eq!(names, ["CN=a", "CN=b"]);
    assert!(inspect_pem(&a.key).is_err());
    let der = x509_parser::pem::parse_x509_pem(b.cert.as_bytes())
        .unwrap()
        .1
        .contents;
    assert_eq!(inspect_der(&der).unwrap(), infos[1]);
    assert!(inspect_der(&der[1..]).is_err());
    assert!(inspect_pem("").is_err());
    assert!(inspect_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
}

#[test]
fn crl_lists_the_revoked_serials() {
    for algo in [KeyAlgo::EcdsaP256, KeyAlgo::Rsa2048] {
        let ca = new_ca("ca", algo, DAY).unwrap();
        let leaf = issue(&ca, &req("c", &[], algo, Usage::Client)).unwrap();
        let serial = only(&leaf.cert).serial_hex;
        // The same serial spelled as openssl prints it is the same serial.
        let colons = serial
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        let text = crl(&ca, &[serial.clone(), colons, "0x1f".into()], DAY).unwrap();
        assert!(text.starts_with("-----BEGIN X509 CRL-----"), "{text}");

        let block = x509_parser::pem::parse_x509_pem(text.as_bytes()).unwrap().1;
        let (_, parsed) = x509_parser::parse_x509_crl(&block.contents).unwrap();
        assert_eq!(parsed.issuer().to_string(), "CN=ca");
        let listed: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| r.serial().to_str_radix(16))
            .collect();
        assert_eq!(listed, [serial.clone(), "1f".to_string()]);
        let info = inspect_crl_pem(&text).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].issuer, "CN=ca");
        assert_eq!(info[0].revoked_serials_hex, [serial, "1f".to_string()]);
        assert!(info[0].number_hex.is_some() && info[0].next_update.is_some());
        let next = parsed.next_update().unwrap().timestamp();
        let this = parsed.last_update().timestamp();
        assert!((next - this - 86_400).abs() <= 1);
        let ca_cert = x509_parser::pem::parse_x509_pem(ca.cert.as_bytes())
            .unwrap()
            .1;
        parsed
            .verify_signature(ca_cert.parse_x509().unwrap().public_key())
            .unwrap();
    }
    let ca = new_ca("ca", KeyAlgo::EcdsaP256, DAY).unwrap();
    assert!(crl(&ca, &["zz".into()], DAY).is_err());
    assert!(crl(&ca, &[], Duration::ZERO).is_err());
    let empty = crl(&ca, &[], DAY).unwrap();
    assert!(inspect_crl_pem(&empty).unwrap()[0]
        .revoked_serials_hex
        .is_empty());
    assert!(inspect_crl_pem(&ca.cert).is_err());
}

#[cfg(unix)]
#[test]
fn pem_files_are_written_with_a_private_key_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("ca", KeyAlgo::EcdsaP256, DAY).unwrap();
    let sub = dir.path().join("pki");
    let (crt, key) = write_pem_files(&sub, "ca", &ca).unwrap();
    assert_eq!(crt, sub.join("ca.crt"));
    assert_eq!(key, sub.join("ca.key"));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(Pem::read_files(&crt, &key).unwrap(), ca);
    // Overwriting replaces both files.
    let ca2 = new_ca("ca2", KeyAlgo::EcdsaP256, DAY).unwrap();
    write_pem_files(&sub, "ca", &ca2).unwrap();
    assert_eq!(Pem::read_files(&crt, &key).unwrap(), ca2);
    let leftovers = std::fs::read_dir(&sub).unwrap().count();
    assert_eq!(leftovers, 2);
}
