//! Serial numbers: random ones for new certificates, and their hex spelling.

use crate::PkiError;
use rsa::rand_core::{OsRng, RngCore};

/// A random positive serial of 16 bytes (128 bits, more than the 64 that CA/B rules ask for), so
/// that certificates from different runs of the tool never share one, which a CRL relies on.
pub(crate) fn random() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    // Clear the top bit so the DER INTEGER stays 16 bytes long and positive; set the next one so
    // the number never starts with a zero byte (DER would then drop it, and the hex would change).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// Lowercase hex with no leading zeros and no separators: `3a0f...`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let hex: String = bytes[start..].iter().map(|b| format!("{b:02x}")).collect();
    let hex = hex.trim_start_matches('0');
    if hex.is_empty() {
        "0".to_string()
    } else {
        hex.to_string()
    }
}

/// Reads a serial as people paste it: `3A:0F:...`, `0x3a0f...`, `3a0f...` (openssl, Go and this
/// crate's spellings), into big-endian bytes without leading zeros.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, PkiError> {
    let bad = || PkiError::Invalid(format!("invalid serial number {s:?} (expected hex digits)"));
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let mut digits: Vec<u8> = Vec::with_capacity(t.len() + 1);
    for c in t.chars() {
        match c {
            ':' | ' ' => continue,
            _ => digits.push(c.to_digit(16).ok_or_else(bad)? as u8),
        }
    }
    if digits.is_empty() {
        return Err(bad());
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, 0);
    }
    let bytes: Vec<u8> = digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect();
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    if bytes.len() - start > 20 {
        // RFC 5280 caps serials at 20 octets; longer input is a paste error, not a serial.
        return Err(PkiError::Invalid(format!(
            "invalid serial number {s:?} (longer than 20 bytes)"
        )));
    }
    Ok(bytes[start..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_in_the_usual_spellings() {
        for s in ["4a:0F:01", "0x4a0f01", "4A0F01", "004a0f01"] {
            assert_eq!(parse_hex(s).unwrap(), vec![0x4a, 0x0f, 0x01], "{s}");
        }
        assert_eq!(to_hex(&[0x00, 0x4a, 0x0f, 0x01]), "4a0f01");
        assert_eq!(parse_hex("abc").unwrap(), vec![0x0a, 0xbc]);
        assert_eq!(to_hex(&[0x0a, 0xbc]), "abc");
        assert_eq!(to_hex(&[0]), "0");
        assert_eq!(parse_hex("0").unwrap(), vec![0]);
    }

    #[test]
    fn bad_serials_are_refused() {
        for s in ["", "0x", "xyz", "12-34", &"ab".repeat(21)] {
            assert!(parse_hex(s).is_err(), "{s}");
        }
    }

    #[test]
    fn random_serials_are_16_positive_bytes() {
        let a = random();
        assert_eq!(a.len(), 16);
        assert!(a.to_bytes()[0] & 0x80 == 0 && a.to_bytes()[0] != 0);
        assert_ne!(a, random());
    }
}
