//! A context's index for `Match` lookups, so a call finds its extension in a large dialplan
//! without trying every extension: exact extensions by hash, patterns through a trie of their
//! positions (what Asterisk's `extenpatternmatchnew` does). Among everything that matches, the
//! first in Asterisk's order wins — the same answer as walking the sorted list
//! ([`crate::pattern::matches`] is the reference, and the tests compare the two).

use std::collections::HashMap;

/// One pattern position.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Element {
    Literal(u8),
    /// A set of bytes (X, Z, N, `[...]`).
    Set([u64; 4]),
}

impl Element {
    fn accepts(&self, c: u8) -> bool {
        match self {
            Element::Literal(l) => *l == c,
            Element::Set(bits) => bits[usize::from(c >> 6)] & (1 << (c & 63)) != 0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    children: Vec<(Element, usize)>,
    /// Patterns that end here (the data must end here too).
    ends: Vec<usize>,
    /// Patterns with `.` here: match if at least one more character remains.
    dot: Vec<usize>,
    /// Patterns with `!` here: match whatever remains.
    bang: Vec<usize>,
}

/// The index; positions refer to the context's sorted extension list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    exact: HashMap<Vec<u8>, Vec<usize>>,
    nodes: Vec<Node>,
}

impl Default for Index {
    fn default() -> Self {
        Index { exact: HashMap::new(), nodes: vec![Node::default()] }
    }
}

fn strip(s: &str) -> Vec<u8> {
    s.bytes().filter(|c| *c != b'-' && *c != b' ').collect()
}

/// Parses a pattern (without `_`) into elements and how it ends: `None` exactly, `Some(b'.')`
/// or `Some(b'!')`. `None` overall for a pattern this index cannot hold (an unterminated set).
fn elements(pattern: &[u8]) -> Option<(Vec<Element>, Option<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        let c = pattern[i];
        let mut set = [0u64; 4];
        let mut mark = |from: u8, to: u8| {
            for ch in from..=to {
                set[usize::from(ch >> 6)] |= 1 << (ch & 63);
            }
        };
        match c.to_ascii_uppercase() {
            b'-' | b' ' => {
                i += 1;
                continue;
            }
            b'/' => break,
            b'.' | b'!' => return Some((out, Some(c))),
            b'X' => mark(b'0', b'9'),
            b'Z' => mark(b'1', b'9'),
            b'N' => mark(b'2', b'9'),
            b'[' => {
                let end = i + pattern[i..].iter().position(|b| *b == b']')?;
                let body = &pattern[i + 1..end];
                if body.is_empty() {
                    i = end + 1;
                    continue; // an empty set is ignored, as pbx.c does
                }
                let mut j = 0;
                while j < body.len() {
                    if j + 2 < body.len() && body[j + 1] == b'-' {
                        mark(body[j], body[j + 2]);
                        j += 3;
                    } else {
                        mark(body[j], body[j]);
                        j += 1;
                    }
                }
                i = end;
            }
            _ => {
                out.push(Element::Literal(c));
                i += 1;
                continue;
            }
        }
        out.push(Element::Set(set));
        i += 1;
    }
    Some((out, None))
}

impl Index {
    /// Builds the index of extension names in their sorted order. Patterns the trie cannot
    /// hold are reported back for a slow path.
    pub fn build<'a>(names: impl Iterator<Item = &'a str>) -> (Index, Vec<usize>) {
        let mut index = Index { exact: HashMap::new(), nodes: vec![Node::default()] };
        let mut slow = Vec::new();
        for (position, name) in names.enumerate() {
            let Some(pattern) = name.strip_prefix('_') else {
                index.exact.entry(strip(name)).or_default().push(position);
                continue;
            };
            let Some((elements, end)) = elements(pattern.as_bytes()) else {
                slow.push(position);
                continue;
            };
            let mut node = 0;
            for element in elements {
                let existing = index.nodes[node].children.iter().find(|(e, _)| *e == element).map(|(_, n)| *n);
                node = match existing {
                    Some(n) => n,
                    None => {
                        index.nodes.push(Node::default());
                        let n = index.nodes.len() - 1;
                        index.nodes[node].children.push((element, n));
                        n
                    }
                };
            }
            match end {
                None => index.nodes[node].ends.push(position),
                Some(b'.') => index.nodes[node].dot.push(position),
                Some(_) => index.nodes[node].bang.push(position),
            }
        }
        (index, slow)
    }

    /// Every extension position that `Match`es `data`, in no particular order.
    pub fn candidates(&self, data: &str, out: &mut Vec<usize>) {
        let stripped = strip(data);
        if let Some(list) = self.exact.get(stripped.as_slice()) {
            out.extend_from_slice(list);
        }
        // Dashes in the data are ignored by patterns too.
        let data: &[u8] = if stripped.len() == data.len() { data.as_bytes() } else { &stripped };
        let mut stack: Vec<(usize, usize)> = vec![(0, 0)];
        while let Some((node, at)) = stack.pop() {
            let n = &self.nodes[node];
            out.extend_from_slice(&n.bang);
            if at == data.len() {
                out.extend_from_slice(&n.ends);
                continue;
            }
            out.extend_from_slice(&n.dot);
            let c = data[at];
            for (element, child) in &n.children {
                if element.accepts(c) {
                    stack.push((*child, at + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{ext_cmp, matches, Mode};
    use proptest::prelude::*;

    /// The reference: the first extension in Asterisk's order that matches.
    fn linear(names: &[String], data: &str) -> Option<usize> {
        names.iter().position(|n| matches(n, data, Mode::Match))
    }

    fn indexed(names: &[String], data: &str) -> Option<usize> {
        let (index, slow) = Index::build(names.iter().map(String::as_str));
        let mut found = Vec::new();
        index.candidates(data, &mut found);
        found.extend(slow.into_iter().filter(|i| matches(&names[*i], data, Mode::Match)));
        found.into_iter().min()
    }

    proptest! {
        #[test]
        fn the_index_finds_what_the_sorted_walk_finds(
            names in proptest::collection::vec(prop_oneof![
                "[0-9]{1,5}",
                "_[0-9XNZ]{1,5}",
                "_[0-9XNZ]{0,4}[.!]",
                "_[0-9]{0,2}\\[[0-9]{1,3}\\][0-9X]{0,2}",
                "_1-2X",
                "_\\[\\]1X",
            ], 1..40),
            data in "[0-9-]{0,7}",
        ) {
            let mut names = names;
            names.sort_by(|a, b| ext_cmp(a, b));
            names.dedup();
            prop_assert_eq!(indexed(&names, &data), linear(&names, &data), "{:?} with {:?}", names, data);
        }
    }
}
