//! A tiny HTTP/1.1 file server on 127.0.0.1 for the download tests: Range requests, and modes that
//! misbehave. Each test starts its own server on its own port, so tests running at once never share one.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 for a plain request, 206 for a satisfiable Range, 416 past the end.
    Full,
    /// Ignores Range headers and always sends the whole file with 200.
    NoRange,
    /// Like `Full`, but every response announces its full length and closes after sending half of it.
    DropHalfway,
    /// `DropHalfway` for the first request only, then `Full`.
    DropFirst,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Request path, e.g. `/cifar-10-binary.tar.gz`.
    pub path: String,
    /// First byte of a `Range: bytes=N-` header, when one was sent.
    pub range_start: Option<u64>,
}

struct State {
    mode: Mode,
    files: HashMap<String, Vec<u8>>,
    seen: Vec<Seen>,
}

/// A running server; its thread lives until the test process exits.
pub struct TestServer {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl TestServer {
    /// Serves `files` (path → bytes) on a free port.
    pub fn start(files: Vec<(&str, Vec<u8>)>, mode: Mode) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let files = files.into_iter().map(|(p, b)| (p.to_string(), b)).collect();
        let state = Arc::new(Mutex::new(State {
            mode,
            files,
            seen: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                // A client that hangs up mid-response is part of what is tested; nothing to do about it.
                let _ = serve(stream, &shared);
            }
        });
        TestServer { port, state }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Changes how later requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// A URL on 127.0.0.1 where nothing listens (the port was free a moment ago).
pub fn dead_url(path: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}{path}")
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range_start = value
                .trim()
                .strip_prefix("bytes=")
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse::<u64>().ok());
        }
    }

    let (mode, file) = {
        let mut st = state.lock().unwrap();
        let first = st.seen.is_empty();
        st.seen.push(Seen {
            path: path.clone(),
            range_start,
        });
        let mode = match st.mode {
            Mode::DropFirst if first => Mode::DropHalfway,
            Mode::DropFirst => Mode::Full,
            m => m,
        };
        (mode, st.files.get(&path).cloned())
    };

    let mut out = stream;
    let Some(data) = file else {
        return respond(&mut out, "404 Not Found", &[], b"not found", false);
    };
    let len = data.len() as u64;
    match range_start {
        Some(start) if mode != Mode::NoRange && start >= len => respond(
            &mut out,
            "416 Range Not Satisfiable",
            &[format!("Content-Range: bytes */{len}")],
            b"",
            false,
        ),
        Some(start) if mode != Mode::NoRange => {
            let range = format!("Content-Range: bytes {start}-{}/{len}", len - 1);
            respond(
                &mut out,
                "206 Partial Content",
                &[range],
                &data[start as usize..],
                mode == Mode::DropHalfway,
            )
        }
        _ => respond(&mut out, "200 OK", &[], &data, mode == Mode::DropHalfway),
    }
}

/// Writes a response announcing all of `body`; with `drop_halfway` only half is sent before hanging up.
fn respond(
    out: &mut TcpStream,
    status: &str,
    extra: &[String],
    body: &[u8],
    drop_halfway: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let sent = if drop_halfway { body.len() / 2 } else { body.len() };
    out.write_all(&body[..sent])?;
    out.flush()?;
    out.shutdown(Shutdown::Both)
}
