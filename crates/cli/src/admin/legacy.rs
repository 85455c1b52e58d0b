//! `karst cluster legacy-clients`: how much traffic still needs the pre-0.11
//! protocol, read from a broker's admin listener (`/metrics`), so operators can see
//! who would break on a broker that dropped it (Kafka 4 did).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::output::{self, outln};
use super::Format;

const TIMEOUT: Duration = Duration::from_secs(10);
/// A scrape larger than this is not a Karst admin listener's.
const MAX_BODY: u64 = 64 << 20;

/// One sample of the text exposition: name, labels, value.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `name{k="v",...} value` lines; comments and other shapes are skipped.
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (name, value) = line.split_once(' ')?;
            return Some(Sample { name: name.to_string(), labels: BTreeMap::new(), value: value.trim().parse().ok()? });
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        let (start, c) = chars.next()?;
        if c == '}' {
            let value = rest[start + 1..].trim().split(' ').next()?.parse().ok()?;
            return Some(Sample { name: name.to_string(), labels, value });
        }
        if c == ',' {
            continue;
        }
        let eq = rest[start..].find("=\"")? + start;
        let key = rest[start..eq].to_string();
        while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
            chars.next();
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(key, value);
    }
}

async fn scrape(admin: &str) -> Result<String> {
    let fetch = async {
        let mut s = TcpStream::connect(admin).await.with_context(|| format!("connecting to the admin listener {admin}"))?;
        s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {admin}\r\n\r\n").as_bytes()).await?;
        let mut raw = Vec::new();
        s.take(MAX_BODY).read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(TIMEOUT, fetch).await.with_context(|| format!("no answer from {admin} in {TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("{admin} did not answer HTTP"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        bail!("{admin} answered GET /metrics with {status:?}");
    }
    Ok(body.to_string())
}

/// (api, version) → requests, and topic → (records up-converted, down-converted).
type Traffic = (BTreeMap<(String, i64), f64>, BTreeMap<String, (f64, f64)>);

fn legacy_traffic(samples: &[Sample]) -> Traffic {
    let mut requests = BTreeMap::new();
    let mut converted: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for s in samples {
        match s.name.as_str() {
            "karst_legacy_requests_total" => {
                let api = s.labels.get("api").cloned().unwrap_or_default();
                let version = s.labels.get("version").and_then(|v| v.parse().ok()).unwrap_or(-1);
                requests.insert((api, version), s.value);
            }
            "karst_up_converted_records_total" | "karst_down_converted_records_total" => {
                let topic = s.labels.get("topic").cloned().unwrap_or_default();
                let entry = converted.entry(topic).or_default();
                if s.name.starts_with("karst_up") {
                    entry.0 = s.value;
                } else {
                    entry.1 = s.value;
                }
            }
            _ => {}
        }
    }
    (requests, converted)
}

pub(crate) async fn run(admin: &str, out: Format) -> Result<()> {
    let (requests, converted) = legacy_traffic(&parse_exposition(&scrape(admin).await?));
    match out {
        Format::Json => output::json(&json!({
            "requests": requests.iter().map(|((api, v), n)| json!({"api": api, "version": v, "requests": n})).collect::<Vec<_>>(),
            "converted_records": converted.iter().map(|(t, (up, down))| json!({"topic": t, "up_converted": up, "down_converted": down})).collect::<Vec<_>>(),
        })),
        Format::Text => {
            if requests.is_empty() && converted.is_empty() {
                outln!("No pre-0.11 requests since this broker started: no client here needs the old protocol.")?;
                return Ok(());
            }
            outln!("Requests in pre-0.11 versions since this broker started:")?;
            let rows: Vec<Vec<String>> = requests.iter().map(|((api, v), n)| vec![api.clone(), format!("v{v}"), format!("{n}")]).collect();
            output::table(&["API", "VERSION", "REQUESTS"], &rows)?;
            outln!()?;
            outln!("Records converted between message formats v0/v1 and v2, by topic:")?;
            let rows: Vec<Vec<String>> =
                converted.iter().map(|(t, (up, down))| vec![t.clone(), format!("{up}"), format!("{down}")]).collect();
            output::table(&["TOPIC", "PRODUCED (UP-CONVERTED)", "FETCHED (DOWN-CONVERTED)"], &rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let text = "# HELP x y\nkarst_legacy_requests_total{api=\"Produce\",version=\"0\"} 12\nplain 3.5\n\
                    karst_up_converted_records_total{topic=\"a \\\"q\\\" b\"} 7\nbroken{api=\"x\" 1\n";
        let samples = parse_exposition(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].labels["api"], "Produce");
        assert_eq!(samples[0].labels["version"], "0");
        assert_eq!(samples[0].value, 12.0);
        assert_eq!(samples[1], Sample { name: "plain".into(), labels: BTreeMap::new(), value: 3.5 });
        assert_eq!(samples[2].labels["topic"], "a \"q\" b");
    }

    #[test]
    fn traffic_by_api_version_and_topic() {
        let text = "karst_legacy_requests_total{api=\"Fetch\",version=\"1\"} 4\n\
                    karst_down_converted_records_total{topic=\"t\"} 9\nkarst_up_converted_records_total{topic=\"t\"} 2\n\
                    karst_requests_total{api=\"Fetch\"} 100\n";
        let (requests, converted) = legacy_traffic(&parse_exposition(text));
        assert_eq!(requests, BTreeMap::from([(("Fetch".to_string(), 1), 4.0)]));
        assert_eq!(converted, BTreeMap::from([("t".to_string(), (2.0, 9.0))]));
    }
}
