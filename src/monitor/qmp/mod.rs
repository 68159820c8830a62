//! QMP, QEMU's JSON machine protocol, on a Unix or TCP socket (`-qmp`).
//!
//! [`QmpServer::start`] binds the socket and starts an accept thread; every connection gets its
//! own thread that sends the greeting, reads a stream of JSON requests (no framing needed, as
//! QEMU), answers each through a [`dispatch::Dispatcher`], and, once the client negotiated
//! capabilities, writes the machine's events ([`crate::machine::handle::MachineEvent`]) as they
//! happen. Replies and events go out one per line (`\r\n`, as QEMU) under one lock, so they
//! never interleave.

pub mod dispatch;

use std::io::{self, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use self::dispatch::{After, Dispatcher};
use crate::machine::handle::MachineHandle;
use crate::machine::{QmpAddress, QmpConfig};

/// Why the QMP server could not start, or its `-qmp` value is wrong.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The `-qmp` value is not understood.
    #[error("-qmp {spec}: {why}")]
    Spec {
        /// The value given.
        spec: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The socket could not be opened.
    #[error("QMP socket {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The accept thread could not start.
    #[error("cannot start the QMP thread: {0}")]
    Thread(io::Error),
}

/// Parse `-qmp unix:PATH,server[=on],wait=off` or `tcp:HOST:PORT,server,nowait`.
pub fn parse_spec(spec: &str) -> Result<QmpConfig, QmpError> {
    let bad = |why| QmpError::Spec {
        spec: spec.to_string(),
        why,
    };
    let mut parts = spec.split(',');
    let target = parts.next().unwrap_or_default();
    let address = if let Some(p) = target.strip_prefix("unix:") {
        if p.is_empty() {
            return Err(bad("unix: needs a path"));
        }
        QmpAddress::Unix(PathBuf::from(p))
    } else if let Some(t) = target.strip_prefix("tcp:") {
        let (host, port) = t.rsplit_once(':').ok_or(bad("expected tcp:HOST:PORT"))?;
        port.parse::<u16>().map_err(|_| bad("bad TCP port"))?;
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        QmpAddress::Tcp(format!("{host}:{port}"))
    } else {
        return Err(bad("expected unix:PATH or tcp:HOST:PORT"));
    };
    let (mut server, mut wait) = (false, true);
    for opt in parts {
        match opt {
            "server" | "server=on" => server = true,
            "server=off" => server = false,
            "nowait" | "wait=off" => wait = false,
            "wait" | "wait=on" => wait = true,
            _ => return Err(bad("unknown option (known: server, wait=on|off, nowait)")),
        }
    }
    if !server {
        return Err(bad("kemu's QMP only listens: add ,server=on"));
    }
    Ok(QmpConfig { address, wait })
}

/// A listening QMP socket; a Unix socket file is removed when this is dropped.
pub struct QmpServer {
    unix_path: Option<PathBuf>,
    first_client: Option<mpsc::Receiver<()>>,
    local: String,
}

/// A stream a connection reads from; writes go through a clone of it.
trait Stream: Read + Write + Send {
    fn clone_writer(&self) -> io::Result<Box<dyn Write + Send>>;
}

impl Stream for std::os::unix::net::UnixStream {
    fn clone_writer(&self) -> io::Result<Box<dyn Write + Send>> {
        self.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Box::new(self.try_clone()?))
    }
}

impl Stream for std::net::TcpStream {
    fn clone_writer(&self) -> io::Result<Box<dyn Write + Send>> {
        self.set_write_timeout(Some(WRITE_TIMEOUT))?;
        self.set_nodelay(true)?;
        Ok(Box::new(self.try_clone()?))
    }
}

/// A client that stops reading does not stall the machine's event senders for longer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

impl QmpServer {
    /// Listen where `config` says and serve QMP for `handle`'s machine.
    pub fn start(config: &QmpConfig, handle: Arc<MachineHandle>) -> Result<Self, QmpError> {
        let (tx, rx) = mpsc::channel();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map(|_| ())
                .map_err(QmpError::Thread)
        };
        match &config.address {
            QmpAddress::Unix(path) => {
                let bind_err = |source| QmpError::Bind {
                    addr: path.display().to_string(),
                    source,
                };
                // A socket file left by an earlier run would make bind fail.
                if std::fs::symlink_metadata(path)
                    .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                    .unwrap_or(false)
                {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path).map_err(bind_err)?;
                spawn(
                    "qmp-accept",
                    Box::new(move || {
                        for s in listener.incoming() {
                            match s {
                                Ok(s) => connection(s, handle.clone(), &tx),
                                Err(e) => log::warn!("qmp: accept: {e}"),
                            }
                        }
                    }),
                )?;
                Ok(QmpServer {
                    unix_path: Some(path.clone()),
                    first_client: config.wait.then_some(rx),
                    local: format!("unix:{}", path.display()),
                })
            }
            QmpAddress::Tcp(addr) => {
                let bind_err = |source| QmpError::Bind {
                    addr: addr.clone(),
                    source,
                };
                let listener = TcpListener::bind(addr).map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                spawn(
                    "qmp-accept",
                    Box::new(move || {
                        for s in listener.incoming() {
                            match s {
                                Ok(s) => connection(s, handle.clone(), &tx),
                                Err(e) => log::warn!("qmp: accept: {e}"),
                            }
                        }
                    }),
                )?;
                Ok(QmpServer {
                    unix_path: None,
                    first_client: config.wait.then_some(rx),
                    local: format!("tcp:{local}"),
                })
            }
        }
    }

    /// Where it listens (`unix:PATH` or `tcp:HOST:PORT`).
    pub fn local_addr(&self) -> &str {
        &self.local
    }

    /// With `wait=on`: block until the first client connected (QEMU starts the guest then).
    pub fn wait_for_client(&mut self) {
        if let Some(rx) = self.first_client.take() {
            eprintln!("kemu: QMP: waiting for a connection on {}", self.local);
            let _ = rx.recv();
        }
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Start a thread serving one connection; tell `connected` it came.
fn connection<S: Stream + 'static>(s: S, handle: Arc<MachineHandle>, connected: &mpsc::Sender<()>) {
    let _ = connected.send(());
    let spawned = std::thread::Builder::new()
        .name("qmp".into())
        .spawn(move || {
            if let Err(e) = serve(s, handle) {
                log::info!("qmp: connection ended: {e}");
            }
        });
    if let Err(e) = spawned {
        log::warn!("qmp: cannot start a connection thread: {e}");
    }
}

type Writer = Arc<Mutex<Box<dyn Write + Send>>>;

fn send(w: &Writer, v: &Value) -> io::Result<()> {
    let mut line = v.to_string();
    line.push_str("\r\n");
    let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
    w.write_all(line.as_bytes())?;
    w.flush()
}

/// Serve one client until it hangs up.
fn serve<S: Stream>(stream: S, handle: Arc<MachineHandle>) -> io::Result<()> {
    let writer: Writer = Arc::new(Mutex::new(stream.clone_writer()?));
    send(&writer, &dispatch::greeting())?;
    let mut dispatcher = Dispatcher::new(handle.clone());
    let mut subscription = None;
    let requests =
        serde_json::Deserializer::from_reader(BufReader::new(stream)).into_iter::<Value>();
    let mut result = Ok(());
    for request in requests {
        let request = match request {
            Ok(r) => r,
            Err(e) if e.is_eof() || e.is_io() => break,
            Err(e) => {
                // The stream cannot be resynchronised after bad JSON: answer and hang up.
                let _ = send(
                    &writer,
                    &serde_json::json!({"error": {"class": "GenericError",
                        "desc": format!("JSON parse error, {e}")}}),
                );
                break;
            }
        };
        let (reply, after) = dispatcher.handle(&request);
        if let Err(e) = send(&writer, &reply) {
            result = Err(e);
            break;
        }
        match after {
            After::Nothing => {}
            After::Negotiated => {
                let w = writer.clone();
                subscription = Some(handle.subscribe(move |e| {
                    let _ = send(&w, &dispatch::event_message(e));
                }));
            }
            After::Quit => handle.quit(),
        }
    }
    if let Some(id) = subscription {
        handle.unsubscribe(id);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn specs() {
        let c = parse_spec("unix:/tmp/q.sock,server=on,wait=off").unwrap();
        assert_eq!(c.address, QmpAddress::Unix("/tmp/q.sock".into()));
        assert!(!c.wait);
        let c = parse_spec("tcp::4444,server,nowait").unwrap();
        assert_eq!(c.address, QmpAddress::Tcp("127.0.0.1:4444".into()));
        assert!(parse_spec("tcp:localhost:4444,server").unwrap().wait);
        assert!(parse_spec("unix:/x").is_err(), "client mode");
        assert!(parse_spec("stdio,server").is_err());
        assert!(parse_spec("tcp::x,server").is_err());
    }

    #[test]
    fn a_unix_client_negotiates_and_gets_replies_and_events() {
        let path = std::env::temp_dir().join(format!("kemu-qmp-{}.sock", std::process::id()));
        let handle = MachineHandle::new(false);
        handle.end();
        let cfg = QmpConfig {
            address: QmpAddress::Unix(path.clone()),
            wait: true,
        };
        let mut server = QmpServer::start(&cfg, handle.clone()).unwrap();
        let mut client = UnixStream::connect(&path).unwrap();
        server.wait_for_client();
        let mut lines = BufReader::new(client.try_clone().unwrap()).lines();
        let greeting: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(greeting["QMP"]["capabilities"].is_array());
        // Two requests in one write, no newline between them.
        client
            .write_all(br#"{"execute":"qmp_capabilities"}{"execute":"stop","id":1}"#)
            .unwrap();
        let r: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(r, serde_json::json!({"return": {}}));
        // With no machine yet, `stop` only flips the state: STOP event, then the reply.
        let e: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(e["event"], "STOP");
        let r: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(r["id"], 1);
        client.write_all(b"{bad json").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let r: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(r["error"]["class"], "GenericError");
        drop(server);
        assert!(!path.exists());
    }
}
