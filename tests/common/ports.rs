//! Free loopback ports.
//!
//! The kernel hands out a free port for `127.0.0.1:0`; the listener is dropped right away so the
//! member can bind it. A process-wide set makes sure two tests of one binary never get the same
//! port; a member that still loses a race with another process is restarted on new ports by
//! [`crate::member::Member::start_opts`].

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port that was free a moment ago and was never returned before in this process.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found");
}

/// Whether `127.0.0.1:port` can be bound right now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|p| *p != 0));
    }
}
