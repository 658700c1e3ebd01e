//! Standard base64, as etcdctl's json output uses for keys and values.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes with padding.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes (padding optional); `None` on a character outside the alphabet.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Decodes to a (lossy) string; panics on invalid base64.
pub fn decode_str(text: &str) -> String {
    String::from_utf8_lossy(&decode(text).unwrap_or_else(|| panic!("bad base64 {text:?}")))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_like_etcdctl() {
        for (plain, coded) in [
            ("foo", "Zm9v"),
            ("bar", "YmFy"),
            ("lk", "bGs="),
            ("x", "eA=="),
            ("", ""),
            ("fence-10", "ZmVuY2UtMTA="),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode_str(coded), plain);
        }
        assert_eq!(decode("!!"), None);
    }
}
