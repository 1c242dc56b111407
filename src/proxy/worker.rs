//! Thread per core: the listeners are served by worker threads, each with its own
//! single-threaded runtime and its own socket on every address (`SO_REUSEPORT`: the
//! kernel spreads new connections over them), as nginx workers and HAProxy threads do.
//! A request is read, forwarded and answered on one thread: no task moves between cores,
//! no thread wakes another, and each keeps its own upstream connections.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::net::TcpSocket;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker this thread is (0 on threads that are none).
pub(crate) fn index() -> usize {
    INDEX.with(Cell::get)
}

/// `n` sockets listening on `addr` together, their `listen(2)` queues `backlog` deep.
/// Fails as a single listener would when another socket has the address already: the
/// kernel would let a second process that sets `SO_REUSEPORT` too share it silently.
pub(crate) fn listen(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> io::Result<Vec<std::net::TcpListener>> {
    drop(std::net::TcpListener::bind(addr)?);
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // A restarted process can listen at once, beside the connections of its
        // predecessor still in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        let listener = socket.listen(backlog)?;
        // Port 0: the others join the port the first was given.
        addr = listener.local_addr()?;
        sockets.push(listener.into_std()?);
    }
    Ok(sockets)
}

/// Starts a thread `ceryx-proxy-<i>` per item of `each`, running `serve(item)` to its
/// end on its own single-threaded runtime.
pub(crate) fn spawn<T, F, Fut>(each: Vec<T>, serve: F) -> io::Result<Vec<JoinHandle<()>>>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    let serve = Arc::new(serve);
    let mut threads = Vec::with_capacity(each.len());
    for (i, item) in each.into_iter().enumerate() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let serve = serve.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ceryx-proxy-{i}"))
            .spawn(move || {
                INDEX.with(|index| index.set(i));
                runtime.block_on(serve(item));
            })?;
        threads.push(thread);
    }
    Ok(threads)
}
