//! Ports for the servers a test starts on 127.0.0.1.

use std::collections::HashSet;
use std::net::TcpListener as StdListener;
use std::sync::Mutex;

/// Ports handed out in this test binary so far.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port nothing listens on right now, and never handed out before in this binary:
/// between this call and the server's bind, the kernel may give the same free port to
/// a parallel test's `free_port`, whose server would then answer for both.
pub fn free_port() -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
}
