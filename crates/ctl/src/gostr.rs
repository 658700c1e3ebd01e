//! Go-compatible parsing and formatting.
//!
//! etcdctl is a Go program; its error texts and outputs are produced by Go's
//! `strconv`, `fmt`, `time` and go-humanize. Scripts match on those exact
//! strings, so we reproduce the relevant corners here.

use std::time::Duration;

/// `strconv.ParseInt(s, base, 64)`, returning Go's error text on failure.
/// `base == 0` means "infer from prefix" (0x, 0o, 0b, leading 0), and then
/// underscores are allowed between digits, as in Go.
pub fn parse_int(s: &str, base: u32) -> Result<i64, String> {
    let syntax = || {
        format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            quote(s.as_bytes())
        )
    };
    let range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            quote(s.as_bytes())
        )
    };
    if s.is_empty() {
        return Err(syntax());
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let (mag, overflow) = parse_uint_body(body, base).ok_or_else(syntax)?;
    if overflow {
        return Err(range());
    }
    if neg {
        if mag > (i64::MAX as u64) + 1 {
            return Err(range());
        }
        Ok((mag as i64).wrapping_neg())
    } else {
        if mag > i64::MAX as u64 {
            return Err(range());
        }
        Ok(mag as i64)
    }
}

/// Digits of an unsigned number; `None` on bad syntax, `Some((v, overflowed))`.
fn parse_uint_body(s: &str, base: u32) -> Option<(u64, bool)> {
    if s.is_empty() {
        return None;
    }
    let mut base = base;
    let mut s = s;
    let mut underscores_ok = false;
    if base == 0 {
        underscores_ok = true;
        let b = s.as_bytes();
        base = 10;
        if b[0] == b'0' {
            if b.len() >= 3 && (b[1] | 0x20) == b'x' {
                base = 16;
                s = &s[2..];
            } else if b.len() >= 3 && (b[1] | 0x20) == b'o' {
                base = 8;
                s = &s[2..];
            } else if b.len() >= 3 && (b[1] | 0x20) == b'b' {
                base = 2;
                s = &s[2..];
            } else {
                base = 8;
                s = &s[1..];
                if s.is_empty() {
                    return Some((0, false));
                }
            }
        }
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    let mut saw_digit = false;
    let mut last_underscore = false;
    for c in s.chars() {
        if c == '_' && underscores_ok {
            if last_underscore {
                return None;
            }
            last_underscore = true;
            continue;
        }
        last_underscore = false;
        let d = c.to_digit(36)?;
        if d >= base {
            return None;
        }
        saw_digit = true;
        match v
            .checked_mul(base as u64)
            .and_then(|x| x.checked_add(d as u64))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if !saw_digit || last_underscore {
        return None;
    }
    Some((v, overflow))
}

/// `strconv.ParseBool`: the spellings pflag accepts for boolean flags.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            quote(s.as_bytes())
        )),
    }
}

/// `time.ParseDuration`.
pub fn parse_duration(orig: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {}", quote(orig.as_bytes()));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(err());
        }
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &s[..i];
        let mut frac_part = "";
        if i < b.len() && b[i] == b'.' {
            let start = i + 1;
            i += 1;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &s[start..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let num: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .map_err(|_| err())?;
        s = &s[i..];
        let b = s.as_bytes();
        let mut j = 0;
        while j < b.len() && !(b[j] == b'.' || b[j].is_ascii_digit()) {
            j += 1;
        }
        let unit = &s[..j];
        if unit.is_empty() {
            return Err(format!(
                "time: missing unit in duration {}",
                quote(orig.as_bytes())
            ));
        }
        let mult: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(unit.as_bytes()),
                    quote(orig.as_bytes())
                ))
            }
        };
        total += num * mult;
        s = &s[j..];
    }
    if neg {
        // Negative timeouts behave like zero: the context is already expired.
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Go's `time.Duration.String()`, e.g. "2.650351ms", "994.154µs", "1m30s".
pub fn duration_string(d: Duration) -> String {
    let mut u = d.as_nanos() as u64;
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            return format!("{u}ns");
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let mut out = fmt_frac(u, prec);
        out.push_str(unit);
        return out;
    }
    let mut out = String::new();
    // seconds with fractional part
    let secs_frac = fmt_frac(u % 60_000_000_000, 9);
    u /= 60_000_000_000; // whole minutes
    if u > 0 {
        let mins = u % 60;
        let hours = u / 60;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        out.push_str(&format!("{mins}m"));
    }
    out.push_str(&secs_frac);
    out.push('s');
    out
}

/// `v / 10^prec` printed with trailing fractional zeros removed.
fn fmt_frac(v: u64, prec: u32) -> String {
    let div = 10u64.pow(prec);
    let int = v / div;
    let frac = v % div;
    if frac == 0 {
        return int.to_string();
    }
    let mut f = format!("{:0width$}", frac, width = prec as usize);
    while f.ends_with('0') {
        f.pop();
    }
    format!("{int}.{f}")
}

/// go-humanize `Bytes`: SI units, e.g. "20 kB", "1.2 MB".
pub fn humanize_bytes(s: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let suffix = SIZES[e as usize];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{} {}", go_float(val, 1), suffix)
    } else {
        format!("{} {}", go_float(val, 0), suffix)
    }
}

/// `%.Nf` with round-half-even on the exact binary value, as Go does.
fn go_float(v: f64, prec: usize) -> String {
    // Rust's formatting also rounds the exact binary value half-to-even.
    format!("{v:.prec$}")
}

/// `strconv.Quote` / `%q` of a byte string: Go escapes, `\x` for bad UTF-8.
pub fn quote(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() + 2);
    out.push('"');
    let mut rest = b;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                quote_str_into(&mut out, s);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                quote_str_into(&mut out, std::str::from_utf8(&rest[..good]).unwrap());
                // Go decodes a bad sequence one byte at a time.
                out.push_str(&format!("\\x{:02x}", rest[good]));
                rest = &rest[good + 1..];
            }
        }
    }
    out.push('"');
    out
}

fn quote_str_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
}

/// Approximation of Go's `strconv.IsPrint` (letters, marks, numbers,
/// punctuation, symbols and the ASCII space).
fn is_go_printable(c: char) -> bool {
    let u = c as u32;
    if u < 0x20 || u == 0x7f {
        return false;
    }
    if (0x80..0xa0).contains(&u) || u == 0xad {
        return false;
    }
    // Other separators and format characters Go treats as non-printable.
    if matches!(u, 0xa0 | 0x1680 | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000 | 0xfeff | 0xfff9..=0xfffb)
    {
        return false;
    }
    if (0xd800..0xe000).contains(&u) || (0xe000..0xf900).contains(&u) {
        return false;
    }
    if u >= 0xf0000 {
        return false;
    }
    !c.is_control()
}

/// `fmt.Printf(s)` with no arguments: etcdctl's protobuf printer passes the
/// marshalled bytes as a format string, so `%` sequences are rewritten the way
/// Go does ("%%" -> "%", other verbs -> "%!v(MISSING)").
pub fn printf_no_args(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        // flags
        while i < b.len() && matches!(b[i], b'+' | b'-' | b'#' | b' ' | b'0') {
            i += 1;
        }
        // width
        if i < b.len() && b[i] == b'*' {
            out.extend_from_slice(b"%!(BADWIDTH)");
            i += 1;
        } else {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
        // precision
        if i < b.len() && b[i] == b'.' {
            i += 1;
            if i < b.len() && b[i] == b'*' {
                out.extend_from_slice(b"%!(BADPREC)");
                i += 1;
            } else {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
        }
        if i >= b.len() {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        }
        // the verb is one UTF-8 rune (invalid byte -> U+FFFD)
        let (verb, len) = decode_rune(&b[i..]);
        i += len;
        if verb == '%' {
            out.push(b'%');
        } else {
            out.extend_from_slice(b"%!");
            let mut tmp = [0u8; 4];
            out.extend_from_slice(verb.encode_utf8(&mut tmp).as_bytes());
            out.extend_from_slice(b"(MISSING)");
        }
    }
    out
}

fn decode_rune(b: &[u8]) -> (char, usize) {
    let max = b.len().min(4);
    for n in 1..=max {
        if let Ok(s) = std::str::from_utf8(&b[..n]) {
            if let Some(c) = s.chars().next() {
                return (c, n);
            }
        }
    }
    ('\u{fffd}', 1)
}

/// Go's `%v` of a `[]string`: "[a b c]".
pub fn string_slice(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// `fmt.Sscanf(input, "%q", &s)`-style reading of one quoted Go string
/// starting at `s` (after optional spaces). Returns the value and the rest.
pub fn scan_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start_matches([' ', '\t', '\r']);
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    if b[0] == b'`' {
        let end = s[1..].find('`')?;
        return Some((s[1..1 + end].to_string(), &s[end + 2..]));
    }
    if b[0] != b'"' {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => {
                let lit = &s[..=i];
                return unquote(lit).map(|v| (v, &s[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

/// `strconv.Unquote` of a double-quoted literal.
pub fn unquote(lit: &str) -> Option<String> {
    let inner = lit.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\n' {
            return None;
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let e = *b.get(i)?;
        i += 1;
        match e {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'x' => {
                let h = inner.get(i..i + 2)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let o = inner.get(i - 1..i + 2)?;
                let v = u32::from_str_radix(o, 8).ok()?;
                if v > 255 {
                    return None;
                }
                out.push(v as u8);
                i += 2;
            }
            b'u' | b'U' => {
                let n = if e == b'u' { 4 } else { 8 };
                let h = inner.get(i..i + n)?;
                let v = u32::from_str_radix(h, 16).ok()?;
                let ch = char::from_u32(v)?;
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                i += n;
            }
            _ => return None,
        }
    }
    // Go strings may hold any bytes; keep them losslessly where possible.
    Some(
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_errors_match_go() {
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(
            parse_int("zz", 16),
            Err("strconv.ParseInt: parsing \"zz\": invalid syntax".into())
        );
        assert_eq!(
            parse_int("fffffffffffffffff", 16),
            Err("strconv.ParseInt: parsing \"fffffffffffffffff\": value out of range".into())
        );
        assert_eq!(parse_int("0x10", 0), Ok(16));
        assert_eq!(parse_int("-1", 0), Ok(-1));
        assert_eq!(parse_int("010", 0), Ok(8));
        assert_eq!(parse_int("0", 0), Ok(0));
        assert!(parse_int("", 10).is_err());
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(
            duration_string(Duration::from_nanos(2_650_351)),
            "2.650351ms"
        );
        assert_eq!(duration_string(Duration::from_nanos(994_154)), "994.154µs");
        assert_eq!(duration_string(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration_string(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(duration_string(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_string(Duration::from_nanos(12)), "12ns");
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(
            parse_duration("abc"),
            Err("time: invalid duration \"abc\"".into())
        );
    }

    #[test]
    fn humanize_like_go() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(25 * 1024), "26 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
    }

    #[test]
    fn quote_like_go() {
        assert_eq!(quote(b"foo"), "\"foo\"");
        assert_eq!(quote(b"a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(quote(b"\xff"), "\"\\xff\"");
        assert_eq!(quote(b"\x00"), "\"\\x00\"");
        assert_eq!(quote("é".as_bytes()), "\"é\"");
    }

    #[test]
    fn printf_mangles_percent() {
        assert_eq!(printf_no_args(b"a%%b"), b"a%b");
        assert_eq!(printf_no_args(b"a%db"), b"a%!d(MISSING)b");
        assert_eq!(printf_no_args(b"a%"), b"a%!(NOVERB)");
    }

    #[test]
    fn scan_quoted_reads_go_literals() {
        assert_eq!(scan_quoted(" \"a\\tb\") x"), Some(("a\tb".into(), ") x")));
        assert_eq!(scan_quoted("k1"), None);
    }
}
