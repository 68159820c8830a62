//! QMP's commands and messages: one JSON request in, one JSON reply out, and QMP's events.
//!
//! A connection starts in capabilities-negotiation mode, where only `qmp_capabilities` is
//! accepted (as QEMU); then `query-status`, `stop`, `cont`, `system_reset`,
//! `system_powerdown`, `quit`, `query-cpus-fast`, `human-monitor-command`, `query-commands`
//! and `query-version`. Errors are `{"error": {"class": ..., "desc": ...}}`; a request's `id`
//! is echoed in its reply.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::machine::handle::{MachineEvent, MachineHandle, RunStatus};
use crate::monitor::commands::HmpSession;

/// The commands this server knows (also `query-commands`' answer).
pub const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-status",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "quit",
    "query-cpus-fast",
    "human-monitor-command",
    "query-commands",
    "query-version",
];

/// The version QMP reports: kemu's own, in QEMU's `VersionInfo` shape.
fn version() -> Value {
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    json!({
        "qemu": {
            "major": parts.next().unwrap_or(0),
            "minor": parts.next().unwrap_or(0),
            "micro": parts.next().unwrap_or(0),
        },
        "package": format!("kemu {v}"),
    })
}

/// The greeting a client gets on connect.
pub fn greeting() -> Value {
    json!({"QMP": {"version": version(), "capabilities": []}})
}

/// The current time as QMP stamps events.
fn timestamp() -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({"seconds": now.as_secs(), "microseconds": now.subsec_micros()})
}

/// An event message.
pub fn event_message(e: &MachineEvent) -> Value {
    let (name, data) = match e {
        MachineEvent::Stop => ("STOP", None),
        MachineEvent::Resume => ("RESUME", None),
        MachineEvent::Powerdown => ("POWERDOWN", None),
        MachineEvent::Reset { guest, reason } => {
            ("RESET", Some(json!({"guest": guest, "reason": reason})))
        }
        MachineEvent::Shutdown { guest, reason } => {
            ("SHUTDOWN", Some(json!({"guest": guest, "reason": reason})))
        }
    };
    let mut m = Map::new();
    m.insert("event".into(), name.into());
    if let Some(d) = data {
        m.insert("data".into(), d);
    }
    m.insert("timestamp".into(), timestamp());
    Value::Object(m)
}

/// What the connection does after sending a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Nothing.
    Nothing,
    /// Negotiation is done: start sending events.
    Negotiated,
    /// End the machine (the reply went out first, as QEMU's `quit`).
    Quit,
}

/// One connection's command state.
pub struct Dispatcher {
    handle: Arc<MachineHandle>,
    negotiated: bool,
    hmp: HmpSession,
}

fn error(class: &str, desc: impl Into<String>) -> Value {
    json!({"error": {"class": class, "desc": desc.into()}})
}

impl Dispatcher {
    /// A fresh connection's dispatcher.
    pub fn new(handle: Arc<MachineHandle>) -> Self {
        Dispatcher {
            hmp: HmpSession::new(handle.clone()),
            handle,
            negotiated: false,
        }
    }

    /// Serve one request; the reply carries the request's `id`.
    pub fn handle(&mut self, request: &Value) -> (Value, After) {
        let id = request.get("id").cloned();
        let (mut reply, after) = self.reply(request);
        if let (Some(id), Value::Object(m)) = (id, &mut reply) {
            m.insert("id".into(), id);
        }
        (reply, after)
    }

    fn reply(&mut self, request: &Value) -> (Value, After) {
        let Some(obj) = request.as_object() else {
            return (
                error("GenericError", "QMP input must be a JSON object"),
                After::Nothing,
            );
        };
        let Some(cmd) = obj.get("execute").or_else(|| obj.get("exec-oob")) else {
            return (
                error("GenericError", "QMP input lacks member 'execute'"),
                After::Nothing,
            );
        };
        let Some(cmd) = cmd.as_str() else {
            return (
                error(
                    "GenericError",
                    "QMP input member 'execute' must be a string",
                ),
                After::Nothing,
            );
        };
        let empty = Map::new();
        let args = match obj.get("arguments") {
            None => &empty,
            Some(Value::Object(m)) => m,
            Some(_) => {
                return (
                    error(
                        "GenericError",
                        "QMP input member 'arguments' must be an object",
                    ),
                    After::Nothing,
                )
            }
        };
        if !self.negotiated {
            if cmd == "qmp_capabilities" {
                self.negotiated = true;
                return (json!({"return": {}}), After::Negotiated);
            }
            return (
                error(
                    "CommandNotFound",
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                ),
                After::Nothing,
            );
        }
        if cmd != "query-commands" && cmd != "query-version" {
            self.handle
                .wait_for_cycle(std::time::Duration::from_secs(5));
        }
        let ok = |v: Value| (json!({ "return": v }), After::Nothing);
        match cmd {
            "qmp_capabilities" => (
                error(
                    "CommandNotFound",
                    "Capabilities negotiation is already complete, command ignored",
                ),
                After::Nothing,
            ),
            "query-status" => {
                let st = self.handle.status();
                ok(json!({
                    "running": st == RunStatus::Running,
                    "singlestep": false,
                    "status": st.name(),
                }))
            }
            "stop" => {
                self.handle.stop();
                ok(json!({}))
            }
            "cont" => {
                self.handle.cont();
                ok(json!({}))
            }
            "system_reset" => match self.handle.system_reset() {
                Ok(()) => ok(json!({})),
                Err(e) => (error("GenericError", e.to_string()), After::Nothing),
            },
            "system_powerdown" => match self.handle.system_powerdown() {
                Ok(()) => ok(json!({})),
                Err(e) => (error("GenericError", e.to_string()), After::Nothing),
            },
            "quit" => (json!({"return": {}}), After::Quit),
            "query-cpus-fast" => ok(self.cpus()),
            "human-monitor-command" => match args.get("command-line").and_then(Value::as_str) {
                Some(line) => {
                    if let Some(Value::Number(n)) = args.get("cpu-index") {
                        let _ = self.hmp.execute(&format!("cpu {n}"));
                    }
                    let reply = self.hmp.execute(line);
                    if reply.quit {
                        return (json!({"return": reply.text}), After::Nothing);
                    }
                    ok(Value::String(reply.text))
                }
                None => (
                    error("GenericError", "Parameter 'command-line' is missing"),
                    After::Nothing,
                ),
            },
            "query-commands" => ok(Value::Array(
                COMMANDS.iter().map(|c| json!({ "name": c })).collect(),
            )),
            "query-version" => ok(version()),
            other => (
                error(
                    "CommandNotFound",
                    format!("The command {other} has not been found"),
                ),
                After::Nothing,
            ),
        }
    }

    fn cpus(&self) -> Value {
        let cpus = self.handle.cycle().map(|c| c.cpus).unwrap_or(0);
        Value::Array(
            (0..cpus)
                .map(|i| {
                    json!({
                        "cpu-index": i,
                        "thread-id": self.handle.thread_id(i),
                        "qom-path": format!("/machine/unattached/device[{i}]"),
                        "target": "x86_64",
                        "props": {"socket-id": i, "core-id": 0, "thread-id": 0},
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(d: &mut Dispatcher, s: &str) -> (Value, After) {
        d.handle(&serde_json::from_str(s).unwrap())
    }

    #[test]
    fn negotiation_comes_first_and_ids_are_echoed() {
        let handle = MachineHandle::new(false);
        handle.end();
        let mut d = Dispatcher::new(handle);
        let (r, _) = run(&mut d, r#"{"execute":"query-status","id":7}"#);
        assert_eq!(r["error"]["class"], "CommandNotFound");
        assert_eq!(r["id"], 7);
        let (r, after) = run(&mut d, r#"{"execute":"qmp_capabilities","arguments":{}}"#);
        assert_eq!(r, json!({"return": {}}));
        assert_eq!(after, After::Negotiated);
        let (r, _) = run(&mut d, r#"{"execute":"query-status","id":"a"}"#);
        assert_eq!(r["return"]["status"], "shutdown");
        assert_eq!(r["return"]["running"], false);
        assert_eq!(r["id"], "a");
        let (r, _) = run(&mut d, r#"{"execute":"frobnicate"}"#);
        assert_eq!(
            r["error"]["desc"],
            "The command frobnicate has not been found"
        );
        let (r, _) = run(&mut d, r#"{"execute":"system_powerdown"}"#);
        assert_eq!(r["error"]["class"], "GenericError");
        let (r, _) = run(
            &mut d,
            r#"{"execute":"human-monitor-command","arguments":{"command-line":"help stop"}}"#,
        );
        assert_eq!(r["return"], "stop -- stop emulation\n");
        let (_, after) = run(&mut d, r#"{"execute":"quit"}"#);
        assert_eq!(after, After::Quit);
    }

    #[test]
    fn greeting_and_events_have_qemus_shape() {
        let g = greeting();
        assert!(g["QMP"]["version"]["qemu"]["major"].is_u64());
        assert!(g["QMP"]["capabilities"].as_array().unwrap().is_empty());
        let e = event_message(&MachineEvent::Shutdown {
            guest: true,
            reason: "guest-shutdown",
        });
        assert_eq!(e["event"], "SHUTDOWN");
        assert_eq!(e["data"]["guest"], true);
        assert!(e["timestamp"]["seconds"].as_u64().unwrap() > 0);
        assert!(event_message(&MachineEvent::Stop).get("data").is_none());
    }
}
