//! `version`: etcdctl prints its own version and the API version. We print
//! oxctl's version in the same two-line shape; the API line names the etcd
//! API level oxctl speaks.

use crate::print::outln;

pub const API_VERSION: &str = "3.5";

pub fn run() {
    outln(&format!("oxctl version: {}", env!("CARGO_PKG_VERSION")));
    outln(&format!("API version: {API_VERSION}"));
}
