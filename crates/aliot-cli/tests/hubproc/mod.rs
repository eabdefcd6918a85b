//! Helpers for the `aliot hub` / `aliot admin` tests: a hub process (killed on drop) whose
//! endpoints are read from its stdout, the admin CLI, and a tiny blocking MQTT device.
#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aliot_protocol::{DeviceIdentity, SignOptions, sign};
use bytes::{Bytes, BytesMut};
use rmqtt_codec::types::Publish;
use rmqtt_codec::v3::{Codec, Connect, Packet, QoS};
use tokio_util::codec::{Decoder as _, Encoder as _};

/// Guard against a hung test; never used to wait for something to happen.
pub const GUARD: Duration = Duration::from_secs(30);

pub fn aliot() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aliot"));
    // Never read the developer's own data directory or admin settings.
    cmd.env_remove("ALIOT_ADMIN_URL")
        .env_remove("ALIOT_ADMIN_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

/// A running `aliot hub` child process, killed (SIGKILL) when dropped.
pub struct HubProcess {
    pub child: Child,
    pub admin_url: String,
    pub mqtt: SocketAddr,
    /// Every stdout line after the ones read at start.
    pub lines: mpsc::Receiver<String>,
    /// The stdout lines read at start.
    pub banner: Vec<String>,
}

impl HubProcess {
    /// Starts `aliot hub --data-dir DIR --mqtt 127.0.0.1:0 --admin 127.0.0.1:0 EXTRA…` and reads
    /// its endpoints from stdout.
    pub fn start(data_dir: &Path, extra: &[&str]) -> HubProcess {
        let mut child = aliot()
            .args(["hub", "--data-dir"])
            .arg(data_dir)
            .args(["--mqtt", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn aliot hub");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut hub = HubProcess {
            child,
            admin_url: String::new(),
            mqtt: "0.0.0.0:0".parse().expect("addr"),
            lines,
            banner: vec![],
        };
        let mut mqtt = None;
        // Up to the closing line of the banner.
        while !hub.banner.last().is_some_and(|l| l.contains("stops the hub")) {
            let line = hub
                .next_line()
                .unwrap_or_else(|| panic!("the hub exited before printing its endpoints: {:?}", hub.banner));
            let t = line.trim();
            if let Some(v) = t.strip_prefix("admin:") {
                hub.admin_url = v.trim().to_owned();
            } else if let Some(v) = t.strip_prefix("mqtt:") {
                mqtt = Some(v.trim().parse().expect("mqtt address"));
            }
            hub.banner.push(line);
        }
        hub.mqtt = mqtt.expect("mqtt address");
        hub
    }

    /// The next stdout line, or `None` when stdout closed.
    pub fn next_line(&self) -> Option<String> {
        match self.lines.recv_timeout(GUARD) {
            Ok(l) => Some(l),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("no output from the hub within the guard"),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        wait_guarded(&mut self.child)
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// Waits for a child with the hang guard (a helper thread does the blocking wait).
pub fn wait_guarded(child: &mut Child) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(GUARD) {
            Ok(r) => r.expect("wait"),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("process {pid} did not exit within the guard");
            }
        }
    })
}

/// `aliot admin --data-dir DIR ARGS…`, with HOME pointing at the data dir's parent so that no
/// default data directory of the machine is used.
pub fn admin(data_dir: &Path, args: &[&str]) -> Output {
    let mut cmd = aliot();
    cmd.arg("admin").arg("--data-dir").arg(data_dir).args(args);
    cmd.env("HOME", data_dir).env("XDG_DATA_HOME", data_dir);
    run_guarded(cmd)
}

/// Runs a command to completion with the hang guard.
pub fn run_guarded(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(GUARD) {
        Ok(r) => r.expect("output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("command did not finish within the guard");
        }
    }
}

/// The JSON stdout of a successful command.
pub fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A blocking MQTT 3.1.1 device on rmqtt-codec, signed like the Python SDK (`_ss=1`).
pub struct RawDevice {
    stream: TcpStream,
    codec: Codec,
    buf: BytesMut,
}

impl RawDevice {
    /// Connects; returns the device and the CONNACK return code.
    pub fn connect(addr: SocketAddr, pk: &str, dn: &str, secret: &str) -> (RawDevice, u8) {
        let id = DeviceIdentity::new(pk, dn, secret).expect("identity");
        let creds = sign(
            &id,
            &SignOptions {
                timestamp: Some("1700000000".into()),
                extra_params: vec![("_ss".into(), "1".into())],
                ..SignOptions::default()
            },
        )
        .expect("sign");
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(GUARD)).expect("timeout");
        let mut dev = RawDevice {
            stream,
            codec: Codec::new(0),
            buf: BytesMut::new(),
        };
        dev.send(Packet::Connect(Box::new(Connect {
            clean_session: true,
            keep_alive: 60,
            client_id: creds.client_id.clone().into(),
            username: Some(creds.username.clone().into()),
            password: Some(Bytes::from(creds.password.clone())),
            ..Connect::default()
        })));
        match dev.recv() {
            Some(Packet::ConnectAck(ack)) => {
                let code = u8::from(ack.return_code);
                (dev, code)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        self.codec.encode(packet, &mut out).expect("encode");
        self.stream.write_all(&out).expect("write");
    }

    /// The next packet, `None` when the hub closed the connection.
    pub fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some((p, _)) = self
                .codec
                .decode(&mut self.buf)
                .expect("hub sent a malformed packet")
            {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("nothing from the hub within the guard")
                }
                Err(_) => return None,
            }
        }
    }

    /// The next PUBLISH (acknowledged if QoS 1).
    pub fn recv_publish(&mut self) -> (String, Bytes) {
        loop {
            match self.recv() {
                Some(Packet::Publish(p)) => {
                    let p: Publish = *p;
                    if let Some(id) = p.packet_id {
                        self.send(Packet::PublishAck { packet_id: id });
                    }
                    return (p.topic.to_string(), p.payload);
                }
                Some(_) => {}
                None => panic!("connection closed while waiting for a message"),
            }
        }
    }

    /// A QoS 0 PUBLISH.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.send(Packet::Publish(Box::new(Publish {
            dup: false,
            retain: false,
            qos: QoS::AtMostOnce,
            topic: topic.to_owned().into(),
            packet_id: None,
            payload: Bytes::copy_from_slice(payload),
            properties: None,
        })));
    }
}
