//! Exit codes and error texts, as etcdctl prints them: `Error: <msg>` on
//! stderr, then exit with one of cobrautl's codes.

use tonic::{Code, Status};

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
pub const EXIT_BAD_ARGS: i32 = 128;

/// A failure that ends the command: printed as `Error: {msg}`, exit `code`.
#[derive(Debug, Clone, PartialEq)]
pub struct CtlError {
    pub code: i32,
    pub msg: String,
    /// Text printed to stderr before the `Error:` line (cobra prints some
    /// errors twice, Go panics print their own banner).
    pub raw_stderr: Option<String>,
    /// Print nothing but exit with `code` (e.g. endpoint status after it
    /// already reported each failure).
    pub silent: bool,
}

impl CtlError {
    pub fn new(code: i32, msg: impl Into<String>) -> Self {
        CtlError {
            code,
            msg: msg.into(),
            raw_stderr: None,
            silent: false,
        }
    }
    pub fn silent(code: i32) -> Self {
        CtlError {
            code,
            msg: String::new(),
            raw_stderr: None,
            silent: true,
        }
    }
    /// Go's `panic(...)`: message on stderr and exit status 2.
    pub fn panic(msg: &str) -> Self {
        CtlError {
            code: 2,
            msg: String::new(),
            raw_stderr: Some(format!("panic: {msg}\n\ngoroutine 1 [running]:\n")),
            silent: true,
        }
    }
    pub fn with_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
}

pub type Result<T> = std::result::Result<T, CtlError>;

/// etcdctl's context deadline text, used for dial and command timeouts.
pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// The text clientv3 gives a gRPC error: etcd's own errors (which all begin
/// with "etcdserver: ") are shown bare, anything else as grpc-go formats it.
pub fn status_text(s: &Status) -> String {
    match s.code() {
        Code::DeadlineExceeded => DEADLINE_EXCEEDED.into(),
        Code::Cancelled if s.message().is_empty() || s.message() == "Timeout expired" => {
            "context canceled".into()
        }
        _ if s.message().starts_with("etcdserver: ") => s.message().into(),
        _ => format!(
            "rpc error: code = {} desc = {}",
            code_name(s.code()),
            s.message()
        ),
    }
}

/// grpc-go's names for status codes (the server's table).
pub use oxcd_server::error::go_code_name as code_name;

impl From<Status> for CtlError {
    fn from(s: Status) -> Self {
        CtlError::new(EXIT_ERROR, status_text(&s))
    }
}
