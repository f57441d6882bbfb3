//! A minimal HTTP/1.1 client for the dashboard tests (one request per connection, chunked bodies
//! decoded), so the tests need no HTTP crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status, headers (names lowercased) and body.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics, naming the body, when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `host:port` of a base URL such as `http://127.0.0.1:8080/`.
fn host(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

fn connect(base: &str) -> TcpStream {
    let s = TcpStream::connect(host(base)).unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s
}

fn head(s: &mut TcpStream, method: &str, base: &str, path: &str, headers: &[(&str, &str)], body: &str) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {}\r\n", host(base)));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send request");
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// Sends one request to `base` (`http://HOST:PORT/`) and reads the whole response.
pub fn request(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut s = connect(base);
    head(&mut s, method, base, path, headers, body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).expect("chunk size");
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).expect("chunk");
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).expect("body");
    }
    Response { status, headers, body }
}

/// `GET path`.
pub fn get(base: &str, path: &str) -> Response {
    request(base, "GET", path, &[], "")
}

/// `GET path` with headers.
pub fn get_with(base: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    request(base, "GET", path, headers, "")
}

/// Opens the event stream at `path` and returns the status, the headers and the first event's
/// name and data (the stream itself never ends).
pub fn first_event(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String, String) {
    let mut s = connect(base);
    head(&mut s, "GET", base, path, headers, "");
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let (mut event, mut data) = (String::new(), String::new());
    let mut line = String::new();
    // Chunk-size lines and keep-alive comments are skipped; an event ends at its data line.
    while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        let l = line.trim_end();
        if let Some(e) = l.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            data = d.to_string();
            break;
        }
        line.clear();
    }
    (status, headers, event, data)
}
