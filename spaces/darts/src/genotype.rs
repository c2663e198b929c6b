//! The DARTS genotype notation (quark0/darts `cnn/genotypes.py`):
//! `Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...],
//! reduce_concat=range(2, 6))`, two `(op, input)` pairs per intermediate node, input 0 and
//! 1 being the two cell inputs and `2 + i` intermediate node `i`.
//!
//! Cells in which some node has other than two inputs (DARTS-CC's "simple" extraction can
//! keep any number, including none) use the nested form `normal=[[('op', j), ...], [], ...]`,
//! one list per node.
use nas_core::{NasError, Result};

/// One `(operation, input)` pair.
pub type Gene = (String, usize);

/// A parsed genotype: per cell type, the incoming genes of each intermediate node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Genotype {
    /// Normal cell: `normal[node]` lists that node's genes.
    pub normal: Vec<Vec<Gene>>,
    /// Reduction cell, likewise.
    pub reduce: Vec<Vec<Gene>>,
    /// Concatenated nodes of the normal cell (DARTS: `range(2, 6)`).
    pub normal_concat: Vec<usize>,
    /// Concatenated nodes of the reduction cell.
    pub reduce_concat: Vec<usize>,
}

/// The DARTS_V2 genotype of the paper (second-order search), as published in
/// quark0/darts `cnn/genotypes.py`.
pub const DARTS_V2: &str = "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])";

/// The DARTS_V1 genotype (first-order search) of the same file.
pub const DARTS_V1: &str = "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])";

/// The longest `range(a, b)` a concat may name.
const MAX_CONCAT: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(usize),
    Punct(char),
}

fn tokenize(s: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            let t: String = cs[st..i].iter().collect();
            out.push(Tok::Int(t.parse().map_err(|_| bad(s, "number too large"))?));
        } else if c.is_alphabetic() || c == '_' {
            let st = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(cs[st..i].iter().collect()));
        } else if c == '\'' || c == '"' {
            let q = c;
            let st = i + 1;
            i += 1;
            while i < cs.len() && cs[i] != q {
                i += 1;
            }
            if i >= cs.len() {
                return Err(bad(s, "unterminated string"));
            }
            out.push(Tok::Str(cs[st..i].iter().collect()));
            i += 1;
        } else if "()[],=".contains(c) {
            out.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(bad(s, &format!("unexpected character `{c}`")));
        }
    }
    Ok(out)
}

fn bad(text: &str, why: &str) -> NasError {
    let shown: String = text.chars().take(80).collect();
    NasError::Architecture(format!("cannot parse DARTS genotype `{shown}`: {why}"))
}

struct Parser<'a> {
    toks: Vec<Tok>,
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<Tok> {
        let t = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or_else(|| bad(self.text, "unexpected end"))?;
        self.at += 1;
        Ok(t)
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn expect(&mut self, c: char) -> Result<()> {
        match self.next()? {
            Tok::Punct(p) if p == c => Ok(()),
            t => Err(bad(self.text, &format!("expected `{c}`, found {t:?}"))),
        }
    }
    fn int(&mut self) -> Result<usize> {
        match self.next()? {
            Tok::Int(v) => Ok(v),
            t => Err(bad(self.text, &format!("expected a number, found {t:?}"))),
        }
    }
    fn gene(&mut self) -> Result<Gene> {
        self.expect('(')?;
        let op = match self.next()? {
            Tok::Str(s) => s,
            t => Err(bad(
                self.text,
                &format!("expected an op name in quotes, found {t:?}"),
            ))?,
        };
        self.expect(',')?;
        let j = self.int()?;
        self.expect(')')?;
        Ok((op, j))
    }
    /// `[gene, ...]` (flat, two per node) or `[[gene, ...], ...]` (nested).
    fn genes(&mut self) -> Result<Vec<Vec<Gene>>> {
        self.expect('[')?;
        let nested = matches!(self.peek(), Some(Tok::Punct('[')));
        let mut flat = Vec::new();
        let mut nodes = Vec::new();
        loop {
            if let Some(Tok::Punct(']')) = self.peek() {
                self.at += 1;
                break;
            }
            if nested {
                self.expect('[')?;
                let mut node = Vec::new();
                loop {
                    if let Some(Tok::Punct(']')) = self.peek() {
                        self.at += 1;
                        break;
                    }
                    node.push(self.gene()?);
                    if let Some(Tok::Punct(',')) = self.peek() {
                        self.at += 1;
                    }
                }
                nodes.push(node);
            } else {
                flat.push(self.gene()?);
            }
            if let Some(Tok::Punct(',')) = self.peek() {
                self.at += 1;
            }
        }
        if nested {
            return Ok(nodes);
        }
        if flat.len() % 2 != 0 {
            return Err(bad(
                self.text,
                "the flat form needs two genes per node (an even count)",
            ));
        }
        Ok(flat.chunks(2).map(|c| c.to_vec()).collect())
    }
    fn concat(&mut self) -> Result<Vec<usize>> {
        match self.next()? {
            Tok::Ident(r) if r == "range" => {
                self.expect('(')?;
                let a = self.int()?;
                self.expect(',')?;
                let b = self.int()?;
                self.expect(')')?;
                // A cell has a handful of nodes; a huge range is a typo (or fuzz), and
                // collecting it would exhaust memory.
                if b.saturating_sub(a) > MAX_CONCAT {
                    return Err(bad(
                        self.text,
                        &format!("range({a}, {b}) is longer than any cell ({MAX_CONCAT} nodes)"),
                    ));
                }
                Ok((a..b).collect())
            }
            Tok::Punct('[') => {
                let mut v = Vec::new();
                loop {
                    match self.next()? {
                        Tok::Punct(']') => break,
                        Tok::Punct(',') => {}
                        Tok::Int(i) => v.push(i),
                        t => return Err(bad(self.text, &format!("bad concat entry {t:?}"))),
                    }
                }
                Ok(v)
            }
            t => Err(bad(
                self.text,
                &format!("expected range(..) or a list, found {t:?}"),
            )),
        }
    }
}

impl Genotype {
    /// Parses the notation (flat or nested form; keyword arguments in any order).
    pub fn parse(text: &str) -> Result<Genotype> {
        let mut p = Parser {
            toks: tokenize(text.trim())?,
            at: 0,
            text,
        };
        match p.next()? {
            Tok::Ident(g) if g == "Genotype" => {}
            _ => return Err(bad(text, "must start with `Genotype(`")),
        }
        p.expect('(')?;
        let (mut normal, mut reduce, mut nc, mut rc) = (None, None, None, None);
        loop {
            let key = match p.next()? {
                Tok::Ident(k) => k,
                Tok::Punct(')') => break,
                t => return Err(bad(text, &format!("expected a keyword, found {t:?}"))),
            };
            p.expect('=')?;
            match key.as_str() {
                "normal" => normal = Some(p.genes()?),
                "reduce" => reduce = Some(p.genes()?),
                "normal_concat" => nc = Some(p.concat()?),
                "reduce_concat" => rc = Some(p.concat()?),
                k => return Err(bad(text, &format!("unknown field `{k}`"))),
            }
            match p.next()? {
                Tok::Punct(',') => {}
                Tok::Punct(')') => break,
                t => return Err(bad(text, &format!("expected `,` or `)`, found {t:?}"))),
            }
        }
        if p.at != p.toks.len() {
            return Err(bad(text, "trailing text after `)`"));
        }
        let normal = normal.ok_or_else(|| bad(text, "missing `normal`"))?;
        let reduce = reduce.ok_or_else(|| bad(text, "missing `reduce`"))?;
        let default_concat = |n: usize| (2..2 + n).collect::<Vec<_>>();
        Ok(Genotype {
            normal_concat: nc.unwrap_or_else(|| default_concat(normal.len())),
            reduce_concat: rc.unwrap_or_else(|| default_concat(reduce.len())),
            normal,
            reduce,
        })
    }

    /// The notation: the flat DARTS form when every node has exactly two genes, else the
    /// nested form. Concats are written as `range(a, b)` when contiguous.
    pub fn format(&self) -> String {
        fn cell(nodes: &[Vec<Gene>]) -> String {
            let g = |(op, j): &Gene| format!("('{op}', {j})");
            if nodes.iter().all(|n| n.len() == 2) {
                let v: Vec<String> = nodes.iter().flatten().map(g).collect();
                format!("[{}]", v.join(", "))
            } else {
                let v: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("[{}]", n.iter().map(g).collect::<Vec<_>>().join(", ")))
                    .collect();
                format!("[{}]", v.join(", "))
            }
        }
        fn concat(c: &[usize]) -> String {
            if !c.is_empty() && c.windows(2).all(|w| w[1] == w[0] + 1) {
                format!("range({}, {})", c[0], c[c.len() - 1] + 1)
            } else {
                format!(
                    "[{}]",
                    c.iter()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        format!(
            "Genotype(normal={}, normal_concat={}, reduce={}, reduce_concat={})",
            cell(&self.normal),
            concat(&self.normal_concat),
            cell(&self.reduce),
            concat(&self.reduce_concat)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_published_genotypes() {
        let g = Genotype::parse(DARTS_V2).unwrap();
        assert_eq!(g.normal.len(), 4);
        assert_eq!(g.normal[3][1], ("dil_conv_3x3".to_string(), 2));
        assert_eq!(g.reduce_concat, vec![2, 3, 4, 5]);
        let again = Genotype::parse(&g.format()).unwrap();
        assert_eq!(g, again);
    }

    #[test]
    fn nested_form_and_errors() {
        let t = "Genotype(normal=[[('sep_conv_3x3', 0)], [], [('skip_connect', 1), ('none', 0), ('max_pool_3x3', 2)], []], normal_concat=range(2, 6), reduce=[[], [], [], []], reduce_concat=range(2, 6))";
        let g = Genotype::parse(t).unwrap();
        assert_eq!(g.normal[2].len(), 3);
        assert_eq!(g.format(), t);
        for badtext in [
            "Genotype(normal=[('a', 0)]",
            "Genotyp(normal=[])",
            "Genotype(normal=[('a', 0), ('b', 1), ('c', 1)], reduce=[])",
            "Genotype(normal=[('a' 0)], reduce=[])",
            "Genotype(normal=[], reduce=[], colour=[])",
        ] {
            let e = Genotype::parse(badtext).unwrap_err().to_string();
            assert!(e.contains("cannot parse DARTS genotype"), "{e}");
        }
    }
}
