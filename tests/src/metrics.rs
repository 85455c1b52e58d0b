//! Reading a broker's admin endpoint: a one-shot HTTP/1.1 GET (or PUT) over a raw
//! `TcpStream`, and a strict parser of the Prometheus text exposition (0.0.4)
//! that rejects what it does not understand instead of guessing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

const TIMEOUT: Duration = Duration::from_secs(15);
/// Largest response read.
const MAX_RESPONSE: u64 = 16 << 20;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Connection: close` and optional extra header lines.
pub fn http_get(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> Result<HttpResponse> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = exchange(addr, req.as_bytes())?;
    parse_http(&raw)
}

/// `PUT path` of a JSON `body` with `Connection: close` (Kafka Connect's REST API).
pub fn http_put_json(addr: SocketAddr, path: &str, body: &str) -> Result<HttpResponse> {
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let raw = exchange(addr, req.as_bytes())?;
    parse_http(&raw)
}

/// Writes `bytes`, then reads until the server closes (bounded by size and time).
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(bytes).context("writing the request")?;
    let mut out = Vec::new();
    match s.take(MAX_RESPONSE).read_to_end(&mut out) {
        Ok(_) => Ok(out),
        // A server that closes with unread request bytes resets the connection.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(out),
        Err(e) => Err(e).context("reading the response"),
    }
}

fn parse_http(raw: &[u8]) -> Result<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).context("header bytes are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        bail!("not an HTTP/1.1 status line: {status_line:?}");
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':').ok_or_else(|| anyhow!("bad header line {l:?}"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().context("content-length")?;
        if body.len() < len {
            bail!("body cut short: {} of {len} bytes", body.len());
        }
        body.truncate(len);
    }
    Ok(HttpResponse { status, headers, body: String::from_utf8(body).context("body is not UTF-8")? })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol])?.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            bail!("chunk cut short");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The broker's `/metrics`, parsed (from its admin listener).
pub fn scrape(b: &crate::Broker) -> Result<Exposition> {
    let admin = b.admin_addr().ok_or_else(|| anyhow::anyhow!("the broker printed no admin address"))?;
    let r = http_get(admin, "/metrics", &[])?;
    anyhow::ensure!(r.status == 200, "/metrics answered {}: {}", r.status, r.body);
    parse_exposition(&r.body)
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Metric family name → its `# TYPE`.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// The sample `name` whose labels include every pair of `labels`; an error if
    /// none or several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        match found.as_slice() {
            [s] => Ok(s.value),
            [] => bail!("no sample {name}{labels:?}"),
            _ => bail!("{} samples match {name}{labels:?}", found.len()),
        }
    }

    /// Like [`Exposition::value`], but 0 when the series does not exist (yet).
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
    }
}

/// Parses Prometheus text format 0.0.4 strictly.
pub fn parse_exposition(text: &str) -> Result<Exposition> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let fail = |why: &str| anyhow!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| fail("TYPE without a type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped", "unknown"].contains(&kind) {
                return Err(fail("unknown type"));
            }
            out.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue; // HELP and comments
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| fail("no value"))?;
        let name = &line[..name_end];
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(fail("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            let (parsed, remaining) = parse_labels(after).map_err(|e| fail(&e))?;
            labels = parsed;
            rest = remaining;
        }
        let mut fields = rest.split_ascii_whitespace();
        let value = fields.next().ok_or_else(|| fail("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse::<f64>().map_err(|_| fail("bad value"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| fail("bad timestamp"))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing fields"));
        }
        out.samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(out)
}

/// Parses `k="v",...}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> std::result::Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let key = &s[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("bad escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        s = &s[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_labels_and_escapes() {
        let text =
            "# HELP a_total A.\n# TYPE a_total counter\na_total{topic=\"t\",g=\"q\\\"x\\\\y\\nz\"} 3\nb 1.5e3\nh_bucket{le=\"+Inf\"} 2\n";
        let e = parse_exposition(text).expect("parses");
        assert_eq!(e.types.get("a_total").map(String::as_str), Some("counter"));
        assert_eq!(e.value("a_total", &[("g", "q\"x\\y\nz")]).expect("found"), 3.0);
        assert_eq!(e.value("b", &[]).expect("found"), 1500.0);
        assert_eq!(e.value("h_bucket", &[("le", "+Inf")]).expect("found"), 2.0);
        assert_eq!(e.value_or_zero("missing", &[]), 0.0);
        assert!(e.value("missing", &[]).is_err());
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in ["x{a=\"1\" 2", "x{a=1} 2", "x 1 2 3", "x{a=\"\\q\"} 1", "9x 1", "x one", "# TYPE x weird", "x{a=\"1\",a=\"2\"} 1"] {
            assert!(parse_exposition(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn parses_http_with_length_and_chunks() {
        let r = parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nabc").expect("parses");
        assert_eq!((r.status, r.body.as_str(), r.header("content-type")), (200, "abc", Some("text/plain")));
        let r = parse_http(b"HTTP/1.1 503 No\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n").expect("parses");
        assert_eq!((r.status, r.body.as_str()), (503, "abc"));
        assert!(parse_http(b"garbage").is_err());
    }
}
