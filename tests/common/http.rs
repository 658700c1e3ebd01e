//! A tiny HTTP/1.1 client over `std::net::TcpStream`, enough for `/health`, `/version`,
//! `/metrics` and the JSON gateway.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `127.0.0.1:port`.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    request(port, "GET", path, None)
}

/// `POST path` with a JSON body on `127.0.0.1:port`.
pub fn post_json(port: u16, path: &str, body: &str) -> std::io::Result<Response> {
    request(port, "POST", path, Some(body))
}

/// A TCP connection to `127.0.0.1:port` with the client's timeouts.
pub fn connect(port: u16) -> std::io::Result<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

fn request(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<Response> {
    exchange(connect(port)?, port, method, path, body)
}

/// `GET path` over an established connection (e.g. a TLS stream) to `127.0.0.1:port`.
pub fn get_on<S: Read + Write>(stream: S, port: u16, path: &str) -> std::io::Result<Response> {
    exchange(stream, port, "GET", path, None)
}

fn exchange<S: Read + Write>(
    mut stream: S,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<Response> {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(body) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(body) = body {
        req.push_str(body);
    }
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify: what arrived is the whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse(&raw)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string())
}

/// Parses a complete HTTP/1.1 response (Content-Length, chunked, or read-to-close bodies).
pub fn parse(raw: &[u8]) -> std::io::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut resp = Response {
        status,
        headers,
        body: String::new(),
    };
    let body = if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(len) = resp.header("content-length").and_then(|v| v.parse().ok()) {
        rest[..rest.len().min(len)].to_vec()
    } else {
        rest.to_vec()
    };
    resp.body = String::from_utf8_lossy(&body).to_string();
    Ok(resp)
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("bad chunk size line"))?;
        let size_text = String::from_utf8_lossy(&data[..eol]).to_string();
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        if data.starts_with(b"\r\n") {
            data = &data[2..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length() {
        let r =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\nX: y\r\n\r\n{\"health\":\"true\"}")
                .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "{\"health\":\"true\"}");
        assert_eq!(r.header("x"), Some("y"));
    }

    #[test]
    fn parses_chunked() {
        let r = parse(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=1\r\nefg\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "abcdefg");
    }

    #[test]
    fn parses_read_to_close() {
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.body, "nope");
    }
}
