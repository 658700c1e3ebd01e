//! `txn [-i]`: reads compares, success ops and failure ops from stdin, each
//! section ended by an empty line, in etcdctl's syntax:
//!
//! ```text
//! mod("key1") > "0"
//!
//! put key1 "overwrote-key1"
//!
//! put key1 "created-key1"
//! ```

use std::io::BufRead;

use clap::{Parser, Subcommand};
use oxcd_api::etcdserverpb::{compare, request_op, Compare, RequestOp, TxnRequest};

use crate::argify::argify;
use crate::cli::{DelArgs, GetArgs, GlobalArgs, PutArgs, TxnArgs};
use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::gostr::{parse_int, quote, scan_quoted};
use crate::print::outln;

pub async fn run(g: &GlobalArgs, a: &TxnArgs) -> Result<()> {
    if !a.args.is_empty() {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "txn command does not accept argument",
        ));
    }
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    // etcdctl builds the client before reading stdin.
    let (c, d) = super::client(g).await?;
    let prompt = |s: &str| {
        if a.interactive {
            outln(s);
        }
    };
    let mut req = TxnRequest::default();
    prompt("compares:");
    req.compare = read_compares(&mut reader)?;
    prompt("success requests (get, put, del):");
    req.success = read_ops(&mut reader)?;
    prompt("failure requests (get, put, del):");
    req.failure = read_ops(&mut reader)?;
    // etcdctl commits with a background context: no command timeout.
    let mut cfg_less = c;
    cfg_less.cfg.command_timeout = std::time::Duration::from_secs(365 * 24 * 3600);
    let resp = cfg_less
        .txn(req)
        .await
        .map_err(|e| e.with_code(EXIT_ERROR))?;
    d.txn(&resp)
}

/// One line, which must end in a newline (Go's ReadString('\n')).
fn read_line(r: &mut dyn BufRead) -> Result<String> {
    let mut buf = Vec::new();
    match r.read_until(b'\n', &mut buf) {
        Ok(_) if buf.last() == Some(&b'\n') => Ok(String::from_utf8_lossy(&buf).into_owned()),
        Ok(_) => Err(CtlError::new(EXIT_INVALID_INPUT, "EOF")),
        Err(e) => Err(CtlError::new(EXIT_INVALID_INPUT, e.to_string())),
    }
}

pub fn read_compares(r: &mut dyn BufRead) -> Result<Vec<Compare>> {
    let mut cmps = Vec::new();
    loop {
        let line = read_line(r)?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        cmps.push(parse_compare(line)?);
    }
    Ok(cmps)
}

pub fn read_ops<R: BufRead>(r: &mut R) -> Result<Vec<RequestOp>> {
    let mut ops = Vec::new();
    loop {
        let line = read_line(r)?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        ops.push(parse_request(line)?);
    }
    Ok(ops)
}

/// Results of a compare (Compare.CompareResult).
fn compare_result(op: &str) -> Result<i32> {
    match op {
        "=" => Ok(0),
        ">" => Ok(1),
        "<" => Ok(2),
        "!=" => Ok(3),
        // clientv3.Compare panics on anything else.
        _ => Err(CtlError::panic("Unknown result op")),
    }
}

/// `fmt.Sscanf(rest, "%q) %s %q", &key, &op, &val)`: how many values were
/// read, and the values.
fn scan_compare(rest: &str) -> (usize, String, String, String) {
    let (mut key, mut op, mut val) = (String::new(), String::new(), String::new());
    let Some((k, after)) = scan_quoted(rest) else {
        return (0, key, op, val);
    };
    key = k;
    let Some(after) = after.strip_prefix(')') else {
        return (1, key, op, val);
    };
    // A space in a Go scan format needs at least one space (or the end).
    let spaced = after.trim_start_matches([' ', '\t', '\r']);
    if spaced.len() == after.len() && !after.is_empty() {
        return (1, key, op, val);
    }
    let after = spaced;
    let end = after.find([' ', '\t', '\r', '\n']).unwrap_or(after.len());
    if end == 0 {
        return (1, key, op, val);
    }
    op = after[..end].to_string();
    match scan_quoted(&after[end..]) {
        Some((v, _)) => {
            val = v;
            (3, key, op, val)
        }
        None => (2, key, op, val),
    }
}

/// Parses `target("key") op "value"` (etcdctl's ParseCompare).
pub fn parse_compare(line: &str) -> Result<Compare> {
    let bad = |m: String| CtlError::new(EXIT_INVALID_INPUT, m);
    let Some((target, rest)) = line.split_once('(') else {
        return Err(bad(format!("malformed comparison: {line}")));
    };
    let (n, key, op, val) = scan_compare(rest);
    if n != 3 {
        return Err(bad(format!(
            "malformed comparison: {line}; got {target}({}) {op} {}",
            quote(key.as_bytes()),
            quote(val.as_bytes())
        )));
    }
    let invalid = || bad(format!("invalid txn compare request: {line}"));
    let mut cmp = Compare {
        key: key.into_bytes(),
        ..Default::default()
    };
    let union = match target {
        "ver" | "version" => {
            cmp.target = 0;
            compare::TargetUnion::Version(parse_int(&val, 10).map_err(|_| invalid())?)
        }
        "c" | "create" => {
            cmp.target = 1;
            compare::TargetUnion::CreateRevision(parse_int(&val, 10).map_err(|_| invalid())?)
        }
        "m" | "mod" => {
            cmp.target = 2;
            compare::TargetUnion::ModRevision(parse_int(&val, 10).map_err(|_| invalid())?)
        }
        "val" | "value" => {
            cmp.target = 3;
            compare::TargetUnion::Value(val.into_bytes())
        }
        "lease" => {
            // Lease IDs are hexadecimal, as everywhere in etcdctl.
            cmp.target = 4;
            compare::TargetUnion::Lease(parse_int(&val, 16).map_err(|_| invalid())?)
        }
        _ => {
            return Err(bad(format!(
                "malformed comparison: {line} (unknown target {target})"
            )))
        }
    };
    cmp.result = compare_result(&op)?;
    cmp.target_union = Some(union);
    Ok(cmp)
}

/// The get/put/del commands, parsed with their normal flags.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct OpLine {
    #[command(subcommand)]
    op: OpCmd,
}

#[derive(Subcommand, Debug)]
enum OpCmd {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// Parses one request line (etcdctl's parseRequestUnion). A put without a
/// value reads it from the rest of stdin, like the put command would.
fn parse_request(line: &str) -> Result<RequestOp> {
    let args = argify(line)?;
    if args.len() < 2 {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!("invalid txn compare request: {line}"),
        ));
    }
    let parsed = OpLine::try_parse_from(&args).map_err(|e| {
        // cobra shows the sub-command's usage on stderr for flag errors.
        if matches!(args[0].as_str(), "put" | "get" | "del")
            && !matches!(e.kind(), clap::error::ErrorKind::InvalidSubcommand)
        {
            let usage = crate::usage::cobra_usage(&args[0]);
            let _ = std::io::Write::write_all(&mut std::io::stderr(), usage.as_bytes());
        }
        CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn request: {line}"))
    })?;
    let req = match parsed.op {
        // etcdctl's put would read os.Stdin, which its line reader has already
        // drained: a missing value is always an error here.
        OpCmd::Put(a) => {
            request_op::Request::RequestPut(super::put::put_op(&a, &mut std::io::empty())?)
        }
        OpCmd::Get(a) => request_op::Request::RequestRange(super::get::get_op(&a)?),
        OpCmd::Del(a) => request_op::Request::RequestDeleteRange(super::del::del_op(&a)?),
    };
    Ok(RequestOp { request: Some(req) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        parse_compare(line).unwrap_err().msg
    }

    #[test]
    fn compare_parses() {
        let c = parse_compare("mod(\"k1\") > \"0\"").unwrap();
        assert_eq!((c.target, c.result, c.key.as_slice()), (2, 1, &b"k1"[..]));
        assert_eq!(c.target_union, Some(compare::TargetUnion::ModRevision(0)));
        let c = parse_compare("val(\"a b\") != \"c\\td\"").unwrap();
        assert_eq!(
            c.target_union,
            Some(compare::TargetUnion::Value(b"c\td".to_vec()))
        );
        assert_eq!(c.result, 3);
        let c = parse_compare("lease(\"k\") = \"1f\"").unwrap();
        assert_eq!(c.target_union, Some(compare::TargetUnion::Lease(31)));
    }

    /// Error texts captured from etcdctl 3.4.23.
    #[test]
    fn compare_errors_match_etcdctl() {
        assert_eq!(err("bad"), "malformed comparison: bad");
        assert_eq!(
            err("mod(k1) > 0"),
            "malformed comparison: mod(k1) > 0; got mod(\"\")  \"\""
        );
        assert_eq!(
            err("foo(\"k1\") > \"0\""),
            "malformed comparison: foo(\"k1\") > \"0\" (unknown target foo)"
        );
        assert_eq!(
            err("mod(\"k1\") > \"x\""),
            "invalid txn compare request: mod(\"k1\") > \"x\""
        );
        assert_eq!(
            err("create(\"k1\") = 3"),
            "malformed comparison: create(\"k1\") = 3; got create(\"k1\") = \"\""
        );
        assert_eq!(parse_compare("mod(\"k1\") >> \"0\"").unwrap_err().code, 2);
        assert_eq!(
            err("mod(\"k1\")>\"0\""),
            "malformed comparison: mod(\"k1\")>\"0\"; got mod(\"k1\")  \"\""
        );
    }

    #[test]
    fn ops_read_until_blank_line() {
        let input = b"put k1 \"v 1\"\nget k1 --prefix\ndel k2\n\nrest";
        let mut r = &input[..];
        let ops = read_ops(&mut r).unwrap();
        assert_eq!(ops.len(), 3);
        match &ops[0].request {
            Some(request_op::Request::RequestPut(p)) => assert_eq!(p.value, b"v 1"),
            other => panic!("{other:?}"),
        }
        match &ops[1].request {
            Some(request_op::Request::RequestRange(g)) => assert_eq!(g.range_end, b"k2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_errors_match_etcdctl() {
        assert_eq!(
            parse_request("put").unwrap_err().msg,
            "invalid txn compare request: put"
        );
        assert_eq!(
            parse_request("foo a b").unwrap_err().msg,
            "invalid txn request: foo a b"
        );
        let e = parse_request("put a").unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (
                128,
                "put command needs 1 argument and input from stdin or 2 arguments"
            )
        );
        let mut r = &b"\n"[..];
        assert_eq!(read_ops(&mut &b""[..]).unwrap_err().msg, "EOF");
        assert!(read_ops(&mut r).unwrap().is_empty());
    }
}
