//! Parsing of the admin commands' small argument languages.

use anyhow::{bail, Result};

/// Where a consumer starts in a partition without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartFrom {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

/// `beginning`, `end`, `offset:N` or `timestamp:MS`.
pub(crate) fn parse_from(s: &str) -> Result<StartFrom, String> {
    let s = s.trim();
    match s {
        "beginning" | "earliest" => return Ok(StartFrom::Beginning),
        "end" | "latest" => return Ok(StartFrom::End),
        _ => {}
    }
    let number = |n: &str, what: &str| -> Result<i64, String> {
        n.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| format!("`{n}` is not a {what} (a number ≥ 0)"))
    };
    if let Some(n) = s.strip_prefix("offset:") {
        return Ok(StartFrom::Offset(number(n, "offset")?));
    }
    if let Some(n) = s.strip_prefix("timestamp:") {
        return Ok(StartFrom::Timestamp(number(n, "timestamp in milliseconds")?));
    }
    Err(format!("`{s}`: expected beginning, end, offset:N or timestamp:MS"))
}

/// `key=value` (the value may contain `=`; the key may not be empty).
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE")),
    }
}

/// `1,2,3`: distinct broker ids.
pub(crate) fn parse_replicas(s: &str) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Ok(id) = part.parse::<i32>() else { bail!("`{part}` in --replicas is not a broker id") };
        if out.contains(&id) {
            bail!("broker {id} appears twice in --replicas");
        }
        out.push(id);
    }
    if out.is_empty() {
        bail!("--replicas needs at least one broker id");
    }
    Ok(out)
}

/// Produce acknowledgements: `all` (-1), `1` or `0`.
pub(crate) fn parse_acks(s: &str) -> Result<i16, String> {
    match s.trim() {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => Err(format!("`{other}`: expected all, 1 or 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_specs() {
        assert_eq!(parse_from("beginning"), Ok(StartFrom::Beginning));
        assert_eq!(parse_from("end"), Ok(StartFrom::End));
        assert_eq!(parse_from("offset:42"), Ok(StartFrom::Offset(42)));
        assert_eq!(parse_from("timestamp:1700000000000"), Ok(StartFrom::Timestamp(1_700_000_000_000)));
        assert!(parse_from("offset:-1").is_err());
        assert!(parse_from("offset:").is_err());
        assert!(parse_from("offset:x").is_err());
        assert!(parse_from("timestamp:").is_err());
        assert!(parse_from("middle").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("retention.ms=1000"), Ok(("retention.ms".into(), "1000".into())));
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), "".into())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn replicas_and_acks() {
        assert_eq!(parse_replicas("1, 2,3").expect("valid"), vec![1, 2, 3]);
        assert!(parse_replicas("1,1").is_err());
        assert!(parse_replicas("").is_err());
        assert!(parse_replicas("a").is_err());
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert!(parse_acks("2").is_err());
    }
}
