//! etcdctl's Argify: splits an input line into arguments the way the txn
//! and interactive watch readers do (double-quoted strings are Go string
//! literals, single-quoted strings are taken verbatim).

use crate::error::{CtlError, Result, EXIT_INVALID_INPUT};

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'\x0b')
}

/// Leftmost-first matches of
/// `"(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?`, then unquoted.
pub fn argify(s: &str) -> Result<Vec<String>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                // find the closing unescaped quote
                let mut j = i + 1;
                let mut end = None;
                while j < b.len() {
                    match b[j] {
                        b'\\' if j + 1 < b.len() => j += 2,
                        b'"' => {
                            end = Some(j);
                            break;
                        }
                        _ => j += 1,
                    }
                }
                match end {
                    Some(e) => {
                        let lit = &s[i..=e];
                        match crate::gostr::unquote(lit) {
                            Some(v) => out.push(v),
                            None => {
                                return Err(CtlError::new(EXIT_INVALID_INPUT, "invalid syntax"))
                            }
                        }
                        i = e + 1;
                    }
                    None => i += 1,
                }
            }
            b'\'' => match s[i + 1..].find('\'') {
                Some(rel) => {
                    out.push(s[i + 1..i + 1 + rel].to_string());
                    i = i + 2 + rel;
                }
                None => i += 1,
            },
            c if is_space(c) => i += 1,
            _ => {
                let start = i;
                while i < b.len() && !is_space(b[i]) {
                    i += 1;
                }
                out.push(s[start..i].to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::argify;

    #[test]
    fn splits_like_etcdctl() {
        assert_eq!(argify("put k1 \"v 1\"").unwrap(), vec!["put", "k1", "v 1"]);
        assert_eq!(
            argify("put 'a b' \"c\\td\"").unwrap(),
            vec!["put", "a b", "c\td"]
        );
        assert_eq!(argify("  get   k  ").unwrap(), vec!["get", "k"]);
        assert_eq!(
            argify("put k1 v --prev-kv").unwrap(),
            vec!["put", "k1", "v", "--prev-kv"]
        );
        assert_eq!(argify("put k v\"x").unwrap(), vec!["put", "k", "v\"x"]);
    }
}
