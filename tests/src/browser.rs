//! A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! Chromium reads commands on its fd 3 and writes answers and events on its fd 4, one JSON object
//! per message, each ended by a NUL byte), for the dashboard's browser tests. No websocket and
//! no crate beyond serde_json and libc.

use serde_json::{Value, json};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long one protocol command may take.
const CALL_LIMIT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next: u64,
    session: String,
    /// Events seen while waiting for answers, not yet looked at.
    events: Vec<Value>,
    /// Console errors and uncaught exceptions, in words.
    errors: Vec<String>,
    _profile: tempfile::TempDir,
}

/// Both ends of a new pipe, above the standard descriptors and close-on-exec.
fn pipe() -> Result<(RawFd, RawFd), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let mut high = [0; 2];
    for (h, fd) in high.iter_mut().zip(fds) {
        // SAFETY: duplicating a descriptor we own, to one numbered 10 or more.
        *h = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        // SAFETY: closing the original, which nothing else uses.
        unsafe { libc::close(fd) };
        if *h < 0 {
            return Err(format!("fcntl: {}", std::io::Error::last_os_error()));
        }
    }
    Ok((high[0], high[1]))
}

impl Browser {
    /// The Chromium to use: `KAPPA_CHROMIUM`, else the first of the usual names on `PATH`.
    pub fn find() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("KAPPA_CHROMIUM") {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
            .iter()
            .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
            .find(|p| p.is_file())
    }

    /// Starts `exe` headless with a `width`×`height` viewport and attaches to its page.
    pub fn launch(exe: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let profile = tempfile::tempdir().map_err(|e| format!("profile directory: {e}"))?;
        // Commands: we write `cmd_w`, Chromium reads fd 3. Answers: Chromium writes fd 4, we read `out_r`.
        let (cmd_r, cmd_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let log = File::create(profile.path().join("chromium.log")).map_err(|e| format!("log file: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            &format!("--window-size={width},{height}"),
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec; dup2 clears
        // close-on-exec on the new descriptors 3 and 4, and the originals are closed by exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cmd_r, 3) < 0 || libc::dup2(out_w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // SAFETY: the child's ends are ours to close once it has them (or failed to start).
        unsafe {
            libc::close(cmd_r);
            libc::close(out_w);
        }
        // SAFETY: we own these descriptors; the Files close them.
        let (to, from_file) = unsafe { (File::from_raw_fd(cmd_w), File::from_raw_fd(out_r)) };
        let child = spawned.map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let (tx, from) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from_file);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).map(|n| n > 0).unwrap_or(false) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            to,
            from,
            next: 0,
            session: String::new(),
            events: Vec::new(),
            errors: Vec::new(),
            _profile: profile,
        };
        let started = b.start(width, height);
        started.map_err(|e| format!("{e}; chromium said: {}", b.log_tail()))?;
        Ok(b)
    }

    fn start(&mut self, width: u32, height: u32) -> Result<(), String> {
        let targets = self.call_browser("Target.getTargets", json!({}))?;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .map(str::to_string);
        let target = match page {
            Some(t) => t,
            None => self.call_browser("Target.createTarget", json!({"url": "about:blank"}))?["targetId"]
                .as_str()
                .ok_or("no target id")?
                .to_string(),
        };
        let attached = self.call_browser("Target.attachToTarget", json!({"targetId": target, "flatten": true}))?;
        self.session = attached["sessionId"].as_str().ok_or("no session id")?.to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            self.call(domain, json!({}))?;
        }
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self._profile.path().join("chromium.log")).unwrap_or_default();
        log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Records what an event says about errors, and keeps it.
    fn note(&mut self, ev: Value) {
        let p = &ev["params"];
        match ev["method"].as_str() {
            Some("Runtime.consoleAPICalled") if matches!(p["type"].as_str(), Some("error" | "assert")) => {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                x["value"].as_str().map(str::to_string).unwrap_or_else(|| x["description"].to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.errors.push(format!("console.{}: {}", p["type"].as_str().unwrap_or(""), args.join(" ")));
            }
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                let what = d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("?");
                self.errors.push(format!("uncaught {what} at {}:{}", d["url"].as_str().unwrap_or(""), d["lineNumber"]));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                let e = &p["entry"];
                self.errors.push(format!(
                    "{}: {} ({})",
                    e["source"].as_str().unwrap_or("log"),
                    e["text"].as_str().unwrap_or("?"),
                    e["url"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
        self.events.push(ev);
    }

    fn send(&mut self, method: &str, params: Value, session: bool) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).map_err(|e| format!("{method}: cannot write to chromium: {e}"))?;
        let deadline = Instant::now() + CALL_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    if let Some(e) = v.get("error") {
                        return Err(format!("{method}: {e}"));
                    }
                    return Ok(v["result"].clone());
                }
                Ok(v) => self.note(v),
                Err(RecvTimeoutError::Timeout) => return Err(format!("{method}: no answer within {CALL_LIMIT:?}")),
                Err(RecvTimeoutError::Disconnected) => return Err(format!("{method}: chromium exited")),
            }
        }
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, false)
    }

    /// One protocol command on the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, true)
    }

    /// Emulates a light or dark `prefers-color-scheme`.
    pub fn color_scheme(&mut self, dark: bool) -> Result<(), String> {
        let value = if dark { "dark" } else { "light" };
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": value}]}),
        )?;
        Ok(())
    }

    /// Navigates to `url` and waits (at most `limit`) for its load event (none when only the
    /// fragment changes).
    pub fn navigate(&mut self, url: &str, limit: Duration) -> Result<(), String> {
        self.events.clear();
        let r = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(e) = r["errorText"].as_str() {
            return Err(format!("navigating to {url}: {e}"));
        }
        // A change of the fragment alone navigates within the document: no load to wait for.
        if r.get("loaderId").is_none() {
            return Ok(());
        }
        let deadline = Instant::now() + limit;
        loop {
            if self.events.iter().any(|e| e["method"] == "Page.loadEventFired") {
                return Ok(());
            }
            match self.from.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(v) => self.note(v),
                Err(_) => return Err(self.failed(format!("{url} did not load within {limit:?}"))),
            }
        }
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, js: &str) -> Result<Value, String> {
        let r =
            self.call("Runtime.evaluate", json!({"expression": js, "returnByValue": true, "awaitPromise": true}))?;
        if let Some(d) = r.get("exceptionDetails") {
            let what = d["exception"]["description"].as_str().or(d["text"].as_str()).unwrap_or("?");
            return Err(self.failed(format!("`{js}` threw {what}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `js` every 100 ms until its value is truthy (at most `limit`), and returns it.
    pub fn wait_for(&mut self, js: &str, limit: Duration, what: &str) -> Result<Value, String> {
        let started = Instant::now();
        loop {
            let v = self.eval(js)?;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(v);
            }
            if started.elapsed() > limit {
                return Err(self.failed(format!("timed out after {limit:?} waiting for {what} (`{js}` gave {v})")));
            }
            // Events keep arriving meanwhile; look at them rather than sleep blind.
            if let Ok(v) = self.from.recv_timeout(Duration::from_millis(100)) {
                self.note(v);
            }
        }
    }

    /// A failure's message with the page's errors so far.
    fn failed(&self, msg: String) -> String {
        if self.errors.is_empty() { msg } else { format!("{msg}; the page's errors: {:?}", self.errors) }
    }

    /// Console errors and uncaught exceptions seen so far (a failed request is logged as
    /// `network: …`).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Saves a PNG of the viewport (or of the whole page, `full`) to `path`.
    pub fn screenshot(&mut self, path: &Path, full: bool) -> Result<(), String> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": full}))?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let png = base64(data).ok_or("the screenshot is not base64")?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call_browser("Browser.close", json!({}));
        if crate::try_wait_until(Duration::from_secs(5), || matches!(self.child.try_wait(), Ok(Some(_)))).is_some() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Decodes standard base64 (padding optional); `None` on any other character.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes() {
        assert_eq!(super::base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(super::base64("aGk").as_deref(), Some(&b"hi"[..]));
        assert_eq!(super::base64("a*b"), None);
    }
}
