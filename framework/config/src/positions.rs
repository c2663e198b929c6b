//! Where every key of one YAML text sits: a key path -> `line:column` index.
//!
//! The typed decode runs on the merged `serde_json::Value`, which has no positions. This
//! module walks a file's own text once with the YAML event parser (`granit_parser`, the
//! parser under `serde-saphyr`) and remembers, for every key path, where its key and its
//! value start, so that an error at a key path can be pointed back to the text.
use std::collections::BTreeMap;

use serde_saphyr::granit_parser::{Event, Parser, Span};

/// A 1-based line and column in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, counted from 1.
    pub line: usize,
    /// Column, counted from 1.
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// The kind of YAML node found at a key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A mapping: its keys are indexed below it.
    Map,
    /// A sequence: its items are indexed below it as `0`, `1`, ...
    Seq,
    /// A scalar or an alias.
    Scalar,
}

/// One indexed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Where its key starts (none for sequence items and the root).
    pub key: Option<Pos>,
    /// Where its value starts.
    pub value: Pos,
    /// What kind of node the value is.
    pub kind: NodeKind,
}

impl Entry {
    /// The key's position where there is one, else the value's.
    pub fn key_or_value(&self) -> Pos {
        self.key.unwrap_or(self.value)
    }
}

/// Key path (one segment per mapping key or sequence index) -> [`Entry`], for one text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PosIndex {
    entries: BTreeMap<Vec<String>, Entry>,
}

impl PosIndex {
    /// Indexes `text`. Returns an empty index when the text does not parse (the caller reports
    /// syntax errors from the real parse; the index only adds positions).
    pub fn build(text: &str) -> PosIndex {
        let mut walker = Walker::default();
        for item in Parser::new_from_str(text) {
            match item {
                Ok((event, span)) => {
                    if walker.event(event, span).is_err() {
                        return PosIndex::default();
                    }
                }
                Err(_) => return PosIndex::default(),
            }
        }
        PosIndex {
            entries: walker.entries,
        }
    }

    /// The entry at `path`, if the text has that key path.
    pub fn get(&self, path: &[String]) -> Option<&Entry> {
        self.entries.get(path)
    }

    /// Number of indexed nodes (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn pos(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        col: span.start.col() + 1,
    }
}

/// One open collection while walking the events.
enum Frame {
    Map {
        prefix: Vec<String>,
        /// The key just read, waiting for its value.
        key: Option<(String, Pos)>,
    },
    Seq {
        prefix: Vec<String>,
        next: usize,
    },
    /// A collection used as a mapping key (complex key): skipped, `depth` levels open.
    SkipKey {
        depth: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    entries: BTreeMap<Vec<String>, Entry>,
    /// Only the first document is indexed (configs are single documents).
    done: bool,
}

/// Where the next node goes.
enum Slot {
    /// A value at this path, with its key position.
    Value(Vec<String>, Option<Pos>),
    /// A mapping key.
    Key,
    /// Inside a skipped complex key.
    Skip,
}

impl Walker {
    fn slot(&mut self) -> Slot {
        match self.stack.last_mut() {
            None => Slot::Value(Vec::new(), None),
            Some(Frame::SkipKey { .. }) => Slot::Skip,
            Some(Frame::Seq { prefix, next }) => {
                let mut path = prefix.clone();
                path.push(next.to_string());
                *next += 1;
                Slot::Value(path, None)
            }
            Some(Frame::Map { prefix, key }) => match key.take() {
                None => Slot::Key,
                Some((k, at)) => {
                    let mut path = prefix.clone();
                    path.push(k);
                    Slot::Value(path, Some(at))
                }
            },
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), ()> {
        if self.done {
            return Ok(());
        }
        let here = pos(&span);
        match event {
            Event::DocumentEnd if self.stack.is_empty() && !self.entries.is_empty() => {
                self.done = true;
            }
            Event::Scalar(text, ..) => match self.slot() {
                Slot::Value(path, key) => self.record(path, key, here, NodeKind::Scalar),
                Slot::Key => self.set_key(text.into_owned(), here),
                Slot::Skip => {}
            },
            Event::Alias(_) => match self.slot() {
                Slot::Value(path, key) => self.record(path, key, here, NodeKind::Scalar),
                Slot::Key => self.set_key("*".into(), here),
                Slot::Skip => {}
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                match self.slot() {
                    Slot::Value(path, key) => {
                        let kind = if is_map { NodeKind::Map } else { NodeKind::Seq };
                        self.record(path.clone(), key, here, kind);
                        self.stack.push(if is_map {
                            Frame::Map {
                                prefix: path,
                                key: None,
                            }
                        } else {
                            Frame::Seq {
                                prefix: path,
                                next: 0,
                            }
                        });
                    }
                    Slot::Key => self.stack.push(Frame::SkipKey { depth: 1 }),
                    Slot::Skip => {
                        if let Some(Frame::SkipKey { depth }) = self.stack.last_mut() {
                            *depth += 1;
                        }
                    }
                }
            }
            Event::MappingEnd | Event::SequenceEnd => match self.stack.last_mut() {
                Some(Frame::SkipKey { depth }) => {
                    *depth -= 1;
                    if *depth == 0 {
                        self.stack.pop();
                        // The complex key is done; its value follows under a placeholder.
                        self.set_key("?".into(), here);
                    }
                }
                Some(_) => {
                    self.stack.pop();
                }
                None => return Err(()),
            },
            _ => {}
        }
        Ok(())
    }

    fn set_key(&mut self, k: String, at: Pos) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = Some((k, at));
        }
    }

    fn record(&mut self, path: Vec<String>, key: Option<Pos>, value: Pos, kind: NodeKind) {
        // Duplicate keys are rejected by the real parse; keep the first position here.
        self.entries
            .entry(path)
            .or_insert(Entry { key, value, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.')
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    }

    #[test]
    fn indexes_keys_values_and_items() {
        // Positions counted by hand from the text below.
        let text = "a:\n  b: 1\n  c: [x, {d: 2}]\nlist:\n  - k: v\n  - 3\n";
        let idx = PosIndex::build(text);
        let e = idx.get(&p("a.b")).unwrap();
        assert_eq!(e.key, Some(Pos { line: 2, col: 3 }));
        assert_eq!(e.value, Pos { line: 2, col: 6 });
        assert_eq!(e.kind, NodeKind::Scalar);
        assert_eq!(idx.get(&p("a")).unwrap().kind, NodeKind::Map);
        assert_eq!(idx.get(&p("a.c")).unwrap().kind, NodeKind::Seq);
        assert_eq!(
            idx.get(&p("a.c.1.d")).unwrap().value,
            Pos { line: 3, col: 14 }
        );
        assert_eq!(
            idx.get(&p("list.0.k")).unwrap().key,
            Some(Pos { line: 5, col: 5 })
        );
        assert_eq!(
            idx.get(&p("list.1")).unwrap().value,
            Pos { line: 6, col: 5 }
        );
        assert!(idx.get(&p("a.z")).is_none());
    }

    #[test]
    fn complex_keys_are_skipped_and_bad_text_gives_empty_index() {
        let idx = PosIndex::build("? [a, b]\n: 1\nz: 2\n");
        assert_eq!(idx.get(&p("z")).unwrap().key, Some(Pos { line: 3, col: 1 }));
        assert!(PosIndex::build("a: [1, 2\n").is_empty());
    }
}
