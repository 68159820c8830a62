//! The gdb thread's input and output: one queue carries both the bytes gdb sends (read off the
//! socket by a small reader thread) and the hub's stop events, so the blocking event loop
//! waits on one thing. Output is buffered and written on gdbstub's `flush`.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, Sender};

use gdbstub::common::Signal;
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::MultiThreadStopReason;

use super::hub::{HubEvent, StopKind};
use super::target::MachineTarget;

/// What reaches the gdb thread.
#[derive(Debug)]
pub enum Input {
    /// A byte from gdb.
    Byte(u8),
    /// A stop or the machine's end.
    Event(HubEvent),
    /// gdb hung up.
    Closed,
}

/// Read `stream` until it closes, forwarding each byte to `tx`.
pub fn spawn_reader(mut stream: TcpStream, tx: Sender<Input>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("gdb-reader".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match Read::read(&mut stream, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if buf[..n].iter().any(|&b| tx.send(Input::Byte(b)).is_err()) {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Input::Closed);
        })
        .map(|_| ())
}

/// gdbstub's connection over the socket and the input queue.
pub struct GdbConn {
    stream: TcpStream,
    out: Vec<u8>,
    rx: Receiver<Input>,
    /// Stop events that arrived while gdbstub was reading a packet.
    events: VecDeque<HubEvent>,
    peeked: Option<u8>,
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "gdb connection closed")
}

impl GdbConn {
    /// A connection writing to `stream`, reading from `rx`.
    pub fn new(stream: TcpStream, rx: Receiver<Input>) -> Self {
        GdbConn {
            stream,
            out: Vec::with_capacity(4096),
            rx,
            events: VecDeque::new(),
            peeked: None,
        }
    }

    /// The next input, stop events queued earlier first.
    fn next(&mut self) -> Result<Input, std::io::Error> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Input::Event(e));
        }
        self.rx.recv().map_err(|_| closed())
    }
}

impl Connection for GdbConn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), std::io::Error> {
        self.out.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), std::io::Error> {
        self.out.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), std::io::Error> {
        Write::write_all(&mut self.stream, &self.out)?;
        self.out.clear();
        Write::flush(&mut self.stream)
    }

    fn on_session_start(&mut self) -> Result<(), std::io::Error> {
        self.stream.set_nodelay(true)
    }
}

impl ConnectionExt for GdbConn {
    fn read(&mut self) -> Result<u8, std::io::Error> {
        if let Some(b) = self.peeked.take() {
            return Ok(b);
        }
        loop {
            // gdb is talking to a stopped machine: only its bytes matter now. The end of the
            // machine ends the session.
            match self.rx.recv().map_err(|_| closed())? {
                Input::Byte(b) => return Ok(b),
                Input::Event(HubEvent::Exited(_)) | Input::Closed => return Err(closed()),
                Input::Event(e) => self.events.push_back(e),
            }
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, std::io::Error> {
        if self.peeked.is_none() {
            self.peeked = Some(self.read()?);
        }
        Ok(self.peeked)
    }
}

/// The stop reason gdb gets for a hub event.
pub fn stop_reason(e: HubEvent) -> MultiThreadStopReason<u64> {
    let tid =
        |vcpu: usize| std::num::NonZeroUsize::new(vcpu + 1).unwrap_or(std::num::NonZeroUsize::MIN);
    match e {
        HubEvent::Exited(status) => MultiThreadStopReason::Exited(status as u8),
        HubEvent::Stopped { vcpu, kind } => match kind {
            StopKind::SwBreak => MultiThreadStopReason::SwBreak(tid(vcpu)),
            StopKind::HwBreak => MultiThreadStopReason::HwBreak(tid(vcpu)),
            StopKind::Step | StopKind::Trap => MultiThreadStopReason::SignalWithThread {
                tid: tid(vcpu),
                signal: Signal::SIGTRAP,
            },
        },
    }
}

/// gdbstub's blocking event loop over [`GdbConn`].
pub enum EventLoop {}

impl BlockingEventLoop for EventLoop {
    type Target = MachineTarget;
    type Connection = GdbConn;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        _target: &mut MachineTarget,
        conn: &mut GdbConn,
    ) -> Result<
        Event<MultiThreadStopReason<u64>>,
        WaitForStopReasonError<super::hub::NoAnswer, std::io::Error>,
    > {
        if let Some(b) = conn.peeked.take() {
            return Ok(Event::IncomingData(b));
        }
        match conn.next().map_err(WaitForStopReasonError::Connection)? {
            Input::Byte(b) => Ok(Event::IncomingData(b)),
            Input::Event(e) => Ok(Event::TargetStopped(stop_reason(e))),
            Input::Closed => Err(WaitForStopReasonError::Connection(closed())),
        }
    }

    fn on_interrupt(
        target: &mut MachineTarget,
    ) -> Result<Option<MultiThreadStopReason<u64>>, super::hub::NoAnswer> {
        // If a stop was already on its way, that one is the answer.
        let tid = std::num::NonZeroUsize::MIN;
        Ok(target
            .hub()
            .interrupt()
            .then_some(MultiThreadStopReason::SignalWithThread {
                tid,
                signal: Signal::SIGINT,
            }))
    }
}
