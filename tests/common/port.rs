//! Ports for the servers a test starts on 127.0.0.1.

use std::net::TcpListener as StdListener;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
