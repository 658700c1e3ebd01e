//! The JSON gateway (`POST /v3/...` on the client port): the same curl-like requests against real
//! etcd and oxcd must give the same HTTP status and the same JSON, errors included, with ids,
//! tokens, remaining TTLs and sizes normalised. Covers kv (range, put, deleterange, txn,
//! compaction), a watch stream with events, leases (grant, keepalive, timetolive, leases,
//! revoke), cluster member list, maintenance (alarm, status, hash), auth (enable, authenticate,
//! requests with and without the token in `Authorization`, disable), malformed bodies and
//! unknown paths, and the 400 for a client certificate's common name over TLS.

use std::io::{Read, Write};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use oxcd_process_tests::cluster::Cluster;
use oxcd_process_tests::http;
use oxcd_process_tests::member::{Kind, Member};
use oxcd_process_tests::normalize::{diff, Norm};
use oxcd_process_tests::tls::{self, MtlsSet};
use regex::Regex;

/// One step of a transcript: what was sent and what came back, before normalisation.
struct Transcript {
    lines: Vec<String>,
}

impl Transcript {
    fn new() -> Transcript {
        Transcript { lines: Vec::new() }
    }

    /// `POST path body`, recording the status and body; returns the body.
    fn post(&mut self, m: &Member, path: &str, body: &str) -> String {
        self.post_auth(m, path, body, None)
    }

    fn post_auth(&mut self, m: &Member, path: &str, body: &str, token: Option<&str>) -> String {
        let resp = post(m.client_port, path, body, token);
        let shown_token = token.map(|_| " [token]").unwrap_or("");
        self.lines.push(format!(
            "POST {path}{shown_token} {body}\n-> {} {}\n",
            resp.status,
            resp.body.trim_end()
        ));
        resp.body
    }

    fn note(&mut self, line: String) {
        self.lines.push(line);
    }

    fn text(&self) -> String {
        self.lines.concat()
    }
}

/// A POST with an optional `Authorization` header.
fn post(port: u16, path: &str, body: &str, token: Option<&str>) -> http::Response {
    let mut stream = http::connect(port).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    http::parse(&raw).expect("an HTTP response")
}

/// A streaming POST (watch, keepalive): the JSON lines of the answer, read until `want` lines
/// came or `deadline` passed; `during` runs once the stream is open.
fn post_stream(
    port: u16,
    path: &str,
    body: &str,
    want: usize,
    during: impl FnOnce(),
) -> Vec<String> {
    let mut stream = http::connect(port).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut during = Some(during);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = stream_lines(&raw);
        if !lines.is_empty() {
            if let Some(f) = during.take() {
                f();
            }
        }
        if lines.len() >= want || Instant::now() > deadline {
            return lines;
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => return stream_lines(&raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
}

/// The JSON objects of a (chunked) streaming body, one per line.
fn stream_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return Vec::new();
    };
    body.split("\r\n")
        .flat_map(|piece| piece.split('\n'))
        .filter(|l| l.starts_with('{') && l.ends_with('}'))
        .map(str::to_string)
        .collect()
}

fn json_field(body: &str, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    match &v[field] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Values that legitimately differ between servers, in the gateway's JSON forms.
fn normalise(norm: &Norm, text: &str) -> String {
    static RULES: LazyLock<Vec<(Regex, &str)>> = LazyLock::new(|| {
        [
            (
                r#""(dbSize|dbSizeInUse|raftIndex|raftAppliedIndex)":"\d+""#,
                r#""$1":"<N>""#,
            ),
            (r#""raftTerm":"\d+""#, r#""raftTerm":"<TERM>""#),
            (r#""hash":\d+"#, r#""hash":<HASH>"#),
            (
                r#""TTL":"\d+","grantedTTL""#,
                r#""TTL":"<TTL>","grantedTTL""#,
            ),
            (r#""token":"[^"]+""#, r#""token":"<TOKEN>""#),
            (r#""leader":"\d+""#, r#""leader":"<MEMBER_ID>""#),
        ]
        .into_iter()
        .map(|(re, with)| (Regex::new(re).unwrap(), with))
        .collect()
    });
    // The generic rules hide `"version":"..."` (server versions); a key's version is a number
    // and must match, so it is kept out of their way.
    static KV_VERSION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""version":"(\d+)""#).unwrap());
    let text = KV_VERSION.replace_all(text, r#""kv-version":"$1""#);
    let mut text = norm
        .apply(&text)
        .replace(r#""kv-version":"#, r#""version":"#);
    for (re, with) in RULES.iter() {
        text = re.replace_all(&text, *with).into_owned();
    }
    text
}

fn run(kind: Kind, steps: fn(&Member, &mut Transcript, &mut Norm)) -> String {
    let m = Member::start(kind);
    let mut norm = m.norm();
    let mut t = Transcript::new();
    steps(&m, &mut t, &mut norm);
    normalise(&norm, &t.text())
}

fn compare(steps: fn(&Member, &mut Transcript, &mut Norm)) {
    let want = run(Kind::Etcd, steps);
    let got = run(Kind::Oxcd, steps);
    // Shown with --nocapture: what etcd answered.
    println!("{want}");
    assert!(
        want == got,
        "oxcd differs from etcd:\n{}",
        diff(&want, &got)
    );
}

/// Unary kv requests in order: (path, body).
const KV_REQUESTS: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
    ),
    ("/v3/kv/put", r#"{"key":"Zm9vMg==","value":"","lease":"0"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","range_end":"Zm9w"}"#),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","rangeEnd":"Zm9w","countOnly":true}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":"DESCEND","sort_target":"KEY","limit":1}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"Zm9v","range_end":"Zm9w","sort_order":2,"keys_only":true}"#,
    ),
    ("/v3/kv/range", r#"{"key":"bm9uZQ=="}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"100"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","unknown_field":1}"#),
    ("/v3beta/kv/range", r#"{"key":"Zm9v"}"#),
    ("/v3/kv/range", ""),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"VALUE","result":"EQUAL","value":"YmF6"}],
            "success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"YQ==","value":"Yg=="}}],
            "failure":[{"request_delete_range":{"key":"YQ=="}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"CREATE","result":"LESS","create_revision":"1"}],
            "failure":[{"request_delete_range":{"key":"YQ==","prev_kv":true}},
                       {"request_txn":{"success":[{"request_range":{"key":"YQ=="}}]}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"success":[{"request_put":{"key":"","value":"Yg=="}}]}"#,
    ),
    ("/v3/kv/deleterange", r#"{"key":"Zm9vMg==","prev_kv":true}"#),
    ("/v3/kv/deleterange", r#"{"key":"bm9uZQ=="}"#),
    ("/v3/kv/compaction", r#"{"revision":"3","physical":true}"#),
    ("/v3/kv/compaction", r#"{"revision":"3"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":"2"}"#),
];

fn kv_steps(m: &Member, t: &mut Transcript, _: &mut Norm) {
    for (path, body) in KV_REQUESTS {
        t.post(m, path, body);
    }
    // Malformed bodies: the JSON decoder's message is Go's on etcd, so only status and code.
    for body in [r#"{"key":1}"#, "{bad", "[]"] {
        let resp = post(m.client_port, "/v3/kv/range", body, None);
        t.note(format!(
            "POST /v3/kv/range {body}\n-> {} code {}\n",
            resp.status,
            json_field(&resp.body, "code")
        ));
    }
    for path in ["/v3/nope", "/v3/kv/nope", "/v3beta/nope"] {
        t.post(m, path, "{}");
    }
}

fn lease_steps(m: &Member, t: &mut Transcript, norm: &mut Norm) {
    let body = t.post(m, "/v3/lease/grant", r#"{"TTL":"60"}"#);
    let id = json_field(&body, "ID");
    norm.lease(id.parse().expect("granted lease id"));
    t.post(
        m,
        "/v3/kv/put",
        &format!(r#"{{"key":"bA==","value":"dg==","lease":"{id}"}}"#),
    );
    let lines = post_stream(
        m.client_port,
        "/v3/lease/keepalive",
        &format!(r#"{{"ID":"{id}"}}"#),
        1,
        || {},
    );
    t.note(format!("keepalive {id}\n-> {}\n", lines.join("\n")));
    let lines = post_stream(
        m.client_port,
        "/v3/lease/keepalive",
        r#"{"ID":"1"}"#,
        1,
        || {},
    );
    t.note(format!("keepalive 1\n-> {}\n", lines.join("\n")));
    t.post(
        m,
        "/v3/lease/timetolive",
        &format!(r#"{{"ID":"{id}","keys":true}}"#),
    );
    t.post(m, "/v3/kv/lease/timetolive", r#"{"ID":"1"}"#);
    t.post(m, "/v3/lease/leases", "");
    t.post(m, "/v3/kv/lease/leases", "{}");
    t.post(m, "/v3/lease/grant", r#"{"TTL":"60","ID":"12345"}"#);
    t.post(m, "/v3/lease/grant", r#"{"TTL":"60","ID":"12345"}"#);
    t.post(m, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#));
    t.post(m, "/v3/kv/lease/revoke", r#"{"ID":"12345"}"#);
    t.post(m, "/v3/lease/revoke", r#"{"ID":"12345"}"#);
    t.post(m, "/v3/kv/range", r#"{"key":"bA=="}"#);
}

fn watch_steps(m: &Member, t: &mut Transcript, _: &mut Norm) {
    let port = m.client_port;
    t.post(m, "/v3/kv/put", r#"{"key":"dzA=","value":"MA=="}"#);
    let lines = post_stream(
        port,
        "/v3/watch",
        r#"{"create_request":{"key":"dw==","range_end":"eA==","prev_kv":true}}"#,
        4,
        || {
            post(port, "/v3/kv/put", r#"{"key":"dzE=","value":"MQ=="}"#, None);
            post(port, "/v3/kv/put", r#"{"key":"dzE=","value":"Mg=="}"#, None);
            post(port, "/v3/kv/deleterange", r#"{"key":"dzE="}"#, None);
        },
    );
    t.note(format!("watch w..x\n-> {}\n", lines.join("\n-> ")));
    // Two watches on one stream, one from an old revision.
    let lines = post_stream(
        port,
        "/v3/watch",
        r#"{"create_request":{"key":"dzA="}} {"create_request":{"key":"dzE=","start_revision":"1"}}"#,
        3,
        || {},
    );
    t.note(format!("watch two\n-> {}\n", lines.join("\n-> ")));
    t.post(m, "/v3/kv/compaction", r#"{"revision":"3"}"#);
    let lines = post_stream(
        port,
        "/v3/watch",
        r#"{"create_request":{"key":"dzE=","start_revision":"2"}}"#,
        2,
        || {},
    );
    t.note(format!("watch compacted\n-> {}\n", lines.join("\n-> ")));
    // A malformed first message is an Unknown error instead of a stream (Go's message on etcd,
    // so status and code only); an empty keep-alive body is an empty stream.
    for body in ["{bad", r#"{"create_request":{"key":1}}"#] {
        let resp = post(port, "/v3/watch", body, None);
        t.note(format!(
            "POST /v3/watch {body}\n-> {} code {}\n",
            resp.status,
            json_field(&resp.body, "code")
        ));
    }
    let lines = post_stream(port, "/v3/lease/keepalive", "", 1, || {});
    t.note(format!("keepalive with no message\n-> {lines:?}\n"));
    let resp = http::get(port, "/v3/kv/range").expect("GET");
    t.note(format!(
        "GET /v3/kv/range\n-> {} {}\n",
        resp.status, resp.body
    ));
}

fn cluster_maintenance_steps(m: &Member, t: &mut Transcript, norm: &mut Norm) {
    norm.literal(&format!("127.0.0.1:{}", m.peer_port), "<PEER>");
    t.post(m, "/v3/cluster/member/list", "{}");
    t.post(m, "/v3/cluster/member/promote", r#"{"ID":"1"}"#);
    t.post(m, "/v3/cluster/member/remove", r#"{"ID":"1"}"#);
    t.post(
        m,
        "/v3/cluster/member/update",
        r#"{"ID":"1","peerURLs":["http://127.0.0.1:1"]}"#,
    );
    t.post(m, "/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    t.post(m, "/v3/maintenance/status", "{}");
    t.post(m, "/v3/maintenance/hash", "{}");
    t.post(m, "/v3/maintenance/defragment", "{}");
    t.post(
        m,
        "/v3/maintenance/transfer-leadership",
        r#"{"targetID":"1"}"#,
    );
    let lines = post_stream(m.client_port, "/v3/maintenance/snapshot", "{}", 1, || {});
    let first: serde_json::Value =
        serde_json::from_str(lines.first().map_or("", |l| l)).unwrap_or_default();
    t.note(format!(
        "snapshot: first chunk has a blob: {}\n",
        first["result"]["blob"].is_string()
    ));
}

/// Auth requests in order: (whose token goes in `Authorization`, "" for none; path; body). A
/// successful authenticate makes the token of that user.
const AUTH_REQUESTS: &[(&str, &str, &str)] = &[
    (
        "",
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"pw"}"#,
    ),
    (
        "",
        "/v3/auth/user/add",
        r#"{"name":"root","password":"pw"}"#,
    ),
    (
        "",
        "/v3/auth/user/add",
        r#"{"name":"root","password":"pw"}"#,
    ),
    ("", "/v3/auth/enable", "{}"),
    ("", "/v3/auth/role/add", r#"{"name":"root"}"#),
    (
        "",
        "/v3/auth/user/grant",
        r#"{"user":"root","role":"root"}"#,
    ),
    ("", "/v3/auth/role/add", r#"{"name":"r"}"#),
    (
        "",
        "/v3/auth/role/grant",
        r#"{"name":"r","perm":{"permType":"READWRITE","key":"YQ==","range_end":"Yg=="}}"#,
    ),
    ("", "/v3/auth/role/get", r#"{"role":"r"}"#),
    (
        "",
        "/v3/auth/user/add",
        r#"{"name":"alice","password":"pa"}"#,
    ),
    ("", "/v3/auth/user/grant", r#"{"user":"alice","role":"r"}"#),
    ("", "/v3/auth/user/get", r#"{"name":"alice"}"#),
    ("", "/v3/auth/user/list", "{}"),
    ("", "/v3/auth/role/list", "{}"),
    ("", "/v3/auth/enable", "{}"),
    ("", "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
    (
        "",
        "/v3/auth/authenticate",
        r#"{"name":"alice","password":"wrong"}"#,
    ),
    (
        "",
        "/v3/auth/authenticate",
        r#"{"name":"alice","password":"pa"}"#,
    ),
    ("alice", "/v3/kv/put", r#"{"key":"YQ==","value":"MQ=="}"#),
    ("alice", "/v3/kv/range", r#"{"key":"YQ=="}"#),
    ("alice", "/v3/kv/put", r#"{"key":"Yg==","value":"MQ=="}"#),
    ("alice", "/v3/auth/user/list", "{}"),
    ("bogus", "/v3/kv/range", r#"{"key":"YQ=="}"#),
    ("alice", "/v3/maintenance/defragment", "{}"),
    (
        "",
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"pw"}"#,
    ),
    ("root", "/v3/auth/user/delete", r#"{"name":"alice"}"#),
    (
        "root",
        "/v3/auth/role/revoke",
        r#"{"role":"r","key":"YQ==","range_end":"Yg=="}"#,
    ),
    ("root", "/v3/auth/disable", "{}"),
    ("", "/v3/kv/range", r#"{"key":"YQ=="}"#),
];

fn auth_steps(m: &Member, t: &mut Transcript, _: &mut Norm) {
    let mut tokens = std::collections::HashMap::from([("bogus".to_string(), "bogus".to_string())]);
    for (who, path, body) in AUTH_REQUESTS {
        let token = tokens.get(*who).cloned();
        let answer = t.post_auth(m, path, body, token.as_deref());
        let token = json_field(&answer, "token");
        if path.ends_with("/authenticate") && !token.is_empty() && token != "null" {
            tokens.insert(json_field(body, "name"), token);
        }
    }
}

/// Election and lock through the gateway, with fixed lease ids so keys are the same on both.
fn election_lock_steps(m: &Member, t: &mut Transcript, _: &mut Norm) {
    t.post(m, "/v3/lease/grant", r#"{"TTL":"60","ID":"12345"}"#);
    t.post(m, "/v3/lease/grant", r#"{"TTL":"60","ID":"12346"}"#);
    t.post(m, "/v3/election/leader", r#"{"name":"ZQ=="}"#);
    let body = t.post(
        m,
        "/v3/election/campaign",
        r#"{"name":"ZQ==","lease":"12345","value":"djE="}"#,
    );
    let v: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    let leader = v["leader"].to_string();
    t.post(m, "/v3/election/leader", r#"{"name":"ZQ=="}"#);
    t.post(
        m,
        "/v3/election/proclaim",
        &format!(r#"{{"leader":{leader},"value":"djI="}}"#),
    );
    let lines = post_stream(
        m.client_port,
        "/v3/election/observe",
        r#"{"name":"ZQ=="}"#,
        1,
        || {},
    );
    t.note(format!("observe\n-> {}\n", lines.join("\n")));
    t.post(
        m,
        "/v3/election/proclaim",
        r#"{"leader":{"name":"ZQ==","key":"ZS94","rev":"1","lease":"12345"},"value":"eA=="}"#,
    );
    t.post(
        m,
        "/v3/election/resign",
        &format!(r#"{{"leader":{leader}}}"#),
    );
    t.post(m, "/v3/election/leader", r#"{"name":"ZQ=="}"#);
    let body = t.post(m, "/v3/lock/lock", r#"{"name":"bA==","lease":"12346"}"#);
    let key = json_field(&body, "key");
    t.post(m, "/v3/kv/range", r#"{"key":"bA==","range_end":"bQ=="}"#);
    t.post(m, "/v3/lock/unlock", &format!(r#"{{"key":"{key}"}}"#));
    t.post(m, "/v3/kv/range", r#"{"key":"bA==","range_end":"bQ=="}"#);
}

#[test]
fn election_and_lock_like_etcd() {
    compare(election_lock_steps);
}

#[test]
fn kv_like_etcd() {
    compare(kv_steps);
}

#[test]
fn lease_like_etcd() {
    compare(lease_steps);
}

#[test]
fn watch_like_etcd() {
    compare(watch_steps);
}

#[test]
fn cluster_and_maintenance_like_etcd() {
    compare(cluster_maintenance_steps);
}

#[test]
fn auth_like_etcd() {
    compare(auth_steps);
}

/// A POST over TLS presenting the client certificate of `cfg`.
fn tls_post(cfg: &Arc<rustls::ClientConfig>, port: u16, path: &str, body: &str) -> String {
    let mut stream = tls::connect(cfg, port).expect("TLS connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    // A peer closing without close_notify: what arrived is the answer.
    let _ = stream.read_to_end(&mut raw);
    let resp = http::parse(&raw).expect("an HTTP response");
    format!(
        "POST {path} -> {} {} {}\n",
        resp.status,
        resp.header("content-type").unwrap_or(""),
        resp.body.trim_end()
    )
}

/// Over TLS with client certificate auth, once auth is enabled, etcd's gateway refuses every
/// request from a certificate with a common name with HTTP 400 (the CN cannot stand for the
/// caller behind the gateway); before that, and for the plain endpoints, it answers.
#[test]
fn client_certificate_with_common_name_refused_like_etcd() {
    let mut answers = Vec::new();
    for kind in [Kind::Etcd, Kind::Oxcd] {
        let dir = tempfile::tempdir().expect("temp dir");
        let set = MtlsSet::new(dir.path());
        let c = Cluster::start_secure(kind, 1, set.secure(&[]));
        let port = c.nodes[0].client_port;
        let cfg = tls::client_config(Some(&set.pki.ca_file()), Some(&set.client));
        let mut text = String::new();
        for (path, body) in [
            ("/v3/kv/range", r#"{"key":"YQ=="}"#),
            ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
            ("/v3/auth/role/add", r#"{"name":"root"}"#),
            ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
            ("/v3/auth/enable", "{}"),
            ("/v3/kv/range", r#"{"key":"YQ=="}"#),
            ("/v3beta/kv/range", r#"{"key":"YQ=="}"#),
            (
                "/v3/auth/authenticate",
                r#"{"name":"root","password":"pw"}"#,
            ),
            ("/v3/watch", r#"{"create_request":{"key":"YQ=="}}"#),
            ("/v3/nope", "{}"),
        ] {
            text.push_str(&tls_post(&cfg, port, path, body));
        }
        let health = http::get_on(
            tls::connect(&cfg, port).expect("TLS connect"),
            port,
            "/version",
        )
        .expect("GET /version");
        text.push_str(&format!("GET /version -> {}\n", health.status));
        static IDS: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r#""(cluster_id|member_id)":"\d+""#).unwrap());
        answers.push(IDS.replace_all(&text, r#""$1":"<ID>""#).into_owned());
    }
    assert!(
        answers[0] == answers[1],
        "oxcd differs from etcd:\n{}",
        diff(&answers[0], &answers[1])
    );
}
