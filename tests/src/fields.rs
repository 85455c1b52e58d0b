//! Field-by-field comparison of two protocol messages, for differential tests.
//!
//! A response is flattened into `path = value` pairs through its pretty `Debug` form
//! (every kafka-protocol message derives `Debug`), e.g.
//! `topics[0].partitions[1].error_code = 0`. Two flattened responses are compared path
//! by path; [`Rules`] say which paths hold instance-specific values (node ids, cluster
//! ids, ports) that are never compared, and which differences are kept on purpose,
//! each with its reason.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// `path = value` for every leaf of a message.
pub type Flat = BTreeMap<String, String>;

#[derive(Clone, Copy, PartialEq)]
enum Open {
    Struct,
    List,
    /// `Some(`, a tuple struct such as `BrokerId(`: adds nothing to the path.
    Wrapper,
}

struct Frame {
    /// The path of this node.
    path: String,
    kind: Open,
    /// The next element's index, for lists.
    next: usize,
}

/// Flattens `value` through its pretty `Debug` output.
pub fn flatten(value: &impl Debug) -> Flat {
    flatten_text(&format!("{value:#?}"))
}

fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

fn flatten_text(text: &str) -> Flat {
    let mut out = Flat::new();
    let mut stack: Vec<Frame> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        let line = line.strip_suffix(',').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line, "}" | "]" | ")") {
            stack.pop();
            continue;
        }
        // `field: rest` inside a struct; a bare `rest` in a list or a wrapper.
        let parent = stack.last();
        let (field, rest) = match parent {
            Some(f) if f.kind == Open::Struct => match line.split_once(": ") {
                Some((name, rest)) if !name.contains(['"', ' ', '(']) => (Some(name), rest),
                _ => (None, line),
            },
            _ => (None, line),
        };
        let path = match (parent, field) {
            (None, _) => String::new(),
            (Some(p), Some(name)) => join(&p.path, name),
            (Some(p), None) if p.kind == Open::List => format!("{}[{}]", p.path, p.next),
            (Some(p), None) => p.path.clone(),
        };
        if let Some(top) = stack.last_mut() {
            if top.kind == Open::List {
                top.next += 1;
            }
        }
        let kind = if rest.ends_with('{') {
            Some(Open::Struct)
        } else if rest == "[" {
            Some(Open::List)
        } else if rest.ends_with('(') && !rest.starts_with('"') {
            Some(Open::Wrapper)
        } else {
            None
        };
        match kind {
            Some(kind) => stack.push(Frame { path, kind, next: 0 }),
            None => {
                out.insert(path, rest.to_string());
            }
        }
    }
    out
}

/// Names the elements of every list matching `list` (a glob of the list's path) by
/// their `key` field instead of their position: `configs[3].value` becomes
/// `configs[retention.ms].value`. Lists whose order means nothing (configs, members)
/// are then compared element by element, whatever order each broker chose.
pub fn rekey(flat: Flat, list: &str, key: &str) -> Flat {
    let suffix = format!(".{key}");
    // "configs[3]" -> "configs[retention.ms]"
    let mut names = BTreeMap::new();
    for (path, value) in &flat {
        let Some(element) = path.strip_suffix(&suffix).filter(|e| e.ends_with(']')) else { continue };
        let Some(open) = element.rfind('[') else { continue };
        if glob(list, &element[..open]) {
            names.insert(element.to_string(), format!("{}[{}]", &element[..open], value.trim_matches('"')));
        }
    }
    flat.into_iter()
        .map(|(path, value)| {
            let renamed = names.iter().find_map(|(old, new)| {
                let rest = path.strip_prefix(old.as_str())?;
                (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then(|| format!("{new}{rest}"))
            });
            (renamed.unwrap_or(path), value)
        })
        .collect()
}

/// Whether `path` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, path: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == path;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !path.starts_with(first) || !path[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &path[first.len()..path.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A difference kept on purpose: in scenarios matching `scenario`, paths matching
/// `path` may differ (or, with `karst_lacks`, may be absent from Karst's answer only).
#[derive(Debug, Clone, Copy)]
pub struct Kept {
    pub scenario: &'static str,
    pub path: &'static str,
    pub karst_lacks: bool,
    pub why: &'static str,
}

/// What is not compared and what may differ.
#[derive(Debug, Default, Clone)]
pub struct Rules {
    /// Instance-specific paths, never compared: (path glob, what it holds).
    pub ignore: Vec<(&'static str, &'static str)>,
    pub kept: Vec<Kept>,
}

/// One path whose values differ.
#[derive(Debug, Clone)]
pub struct Difference {
    pub path: String,
    pub kafka: Option<String>,
    pub karst: Option<String>,
    /// The kept difference that covers it, if one does.
    pub kept: Option<Kept>,
}

impl Difference {
    pub fn show(&self) -> String {
        let v = |s: &Option<String>| s.as_deref().map_or_else(|| "(absent)".to_string(), shorten);
        format!("{}: Kafka {} / Karst {}", self.path, v(&self.kafka), v(&self.karst))
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let cut = (0..=MAX).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}… ({} chars)", &s[..cut], s.len())
    }
}

/// Compares two flattened messages of `scenario` under `rules`; returns every
/// differing path that is not ignored (kept ones marked).
pub fn compare(scenario: &str, kafka: &Flat, karst: &Flat, rules: &Rules) -> Vec<Difference> {
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&String> = kafka.keys().chain(karst.keys()).collect();
    for path in paths {
        if rules.ignore.iter().any(|(g, _)| glob(g, path)) {
            continue;
        }
        let (a, b) = (kafka.get(path), karst.get(path));
        if a == b {
            continue;
        }
        let kept = rules.kept.iter().find(|k| glob(k.scenario, scenario) && glob(k.path, path) && (!k.karst_lacks || b.is_none())).copied();
        out.push(Difference { path: path.clone(), kafka: a.cloned(), karst: b.cloned(), kept });
    }
    out
}

#[cfg(test)]
mod tests {
    // The structs exist to be printed with Debug.
    #![allow(dead_code)]

    use super::*;

    #[derive(Debug)]
    struct Id(i32);

    #[derive(Debug)]
    struct Part {
        index: i32,
        leader: Id,
        name: Option<String>,
        nodes: Vec<i32>,
        empty: Vec<i32>,
    }

    #[derive(Debug)]
    struct Resp {
        error: i16,
        parts: Vec<Part>,
        tail: Option<Vec<u8>>,
    }

    #[test]
    fn flattens_structs_lists_wrappers_and_strings() {
        let r = Resp {
            error: 3,
            parts: vec![
                Part { index: 0, leader: Id(7), name: Some("a: {b}, c(".into()), nodes: vec![1, 2], empty: vec![] },
                Part { index: 1, leader: Id(8), name: None, nodes: vec![3], empty: vec![] },
            ],
            tail: None,
        };
        let f = flatten(&r);
        let want: Flat = [
            ("error", "3"),
            ("parts[0].index", "0"),
            ("parts[0].leader", "7"),
            ("parts[0].name", "\"a: {b}, c(\""),
            ("parts[0].nodes[0]", "1"),
            ("parts[0].nodes[1]", "2"),
            ("parts[0].empty", "[]"),
            ("parts[1].index", "1"),
            ("parts[1].leader", "8"),
            ("parts[1].name", "None"),
            ("parts[1].nodes[0]", "3"),
            ("parts[1].empty", "[]"),
            ("tail", "None"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(f, want);
    }

    #[test]
    fn rekeyed_lists_compare_by_name_not_position() {
        let f: Flat = [
            ("results[0].configs[0].name", "\"b\""),
            ("results[0].configs[0].value", "2"),
            ("results[0].configs[0].synonyms[0].name", "\"log.b\""),
            ("results[0].configs[1].name", "\"a\""),
            ("results[0].configs[1].value", "1"),
            ("results[0].configs[10].name", "\"c\""),
            ("results[0].error_code", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = rekey(f, "results[*].configs", "name");
        let keys: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "results[0].configs[a].name",
                "results[0].configs[a].value",
                "results[0].configs[b].name",
                "results[0].configs[b].synonyms[0].name",
                "results[0].configs[b].value",
                "results[0].configs[c].name",
                "results[0].error_code",
            ]
        );
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("topics[*].topic_id", "topics[3].topic_id"));
        assert!(glob("*.node_id", "brokers[0].node_id"));
        assert!(!glob("*.node_id", "brokers[0].node_ids"));
        assert!(glob("throttle_time_ms", "throttle_time_ms"));
        assert!(glob("*", "anything"));
        assert!(!glob("a*b*c", "a-c-b"));
    }

    #[test]
    fn compare_ignores_and_marks_kept_differences() {
        let a: Flat = [("x", "1"), ("y", "2"), ("z", "3")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let b: Flat = [("x", "9"), ("y", "2"), ("w", "3")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let rules = Rules {
            ignore: vec![("x", "instance")],
            kept: vec![Kept { scenario: "s*", path: "z", karst_lacks: false, why: "on purpose" }],
        };
        let d = compare("s1", &a, &b, &rules);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "w");
        assert!(d[0].kept.is_none());
        assert_eq!(d[1].path, "z");
        assert!(d[1].kept.is_some());
    }
}
