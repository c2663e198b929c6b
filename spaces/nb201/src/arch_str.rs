//! The benchmark's arch-string notation:
//! `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`, one `|`-delimited group per node 1..3 joined
//! by `+`, each edge written `op~from` with the inputs in increasing order
//! (NAS-Bench-201's `CellStructure.tostr`).
use nas_core::{Architecture, NasError, Result};

use crate::spec::{nb201_spec_ref, NUM_NODES, OPS, SPACE_NAME};

fn err(text: &str, message: impl std::fmt::Display) -> NasError {
    NasError::Architecture(format!("NB201 arch string `{text}`: {message}"))
}

/// Writes `arch` as an arch string. Fails when `arch` is not an NB201 architecture.
pub fn to_arch_str(arch: &Architecture) -> Result<String> {
    nb201_spec_ref().check(arch)?;
    let mut out = String::with_capacity(100);
    let mut d = 0;
    for to in 1..NUM_NODES {
        if to > 1 {
            out.push('+');
        }
        out.push('|');
        for from in 0..to {
            out.push_str(OPS[arch.choices[d]]);
            out.push('~');
            out.push_str(&from.to_string());
            out.push('|');
            d += 1;
        }
    }
    Ok(out)
}

/// Reads an arch string (surrounding white space is ignored).
///
/// Errors ([`NasError::Architecture`]) say which node or edge is wrong: a wrong number of
/// nodes or of edges per node, a missing `~`, an unknown operation, or an input index that
/// is not the expected one.
pub fn parse_arch_str(text: &str) -> Result<Architecture> {
    let s = text.trim();
    if !(s.len() >= 2 && s.starts_with('|') && s.ends_with('|')) {
        return Err(err(text, "must start and end with `|`"));
    }
    let groups: Vec<&str> = s.split('+').collect();
    if groups.len() != NUM_NODES - 1 {
        return Err(err(
            text,
            format!(
                "has {} node groups separated by `+`, expected {}",
                groups.len(),
                NUM_NODES - 1
            ),
        ));
    }
    let mut choices = Vec::with_capacity(6);
    for (g, group) in groups.iter().enumerate() {
        let to = g + 1;
        let inner = group
            .strip_prefix('|')
            .and_then(|x| x.strip_suffix('|'))
            .filter(|x| !x.is_empty())
            .ok_or_else(|| {
                err(
                    text,
                    format!("node {to} group `{group}` is not `|op~i|...|`"),
                )
            })?;
        let edges: Vec<&str> = inner.split('|').collect();
        if edges.len() != to {
            return Err(err(
                text,
                format!("node {to} has {} edges, expected {to}", edges.len()),
            ));
        }
        for (from, edge) in edges.iter().enumerate() {
            let (op, input) = edge
                .split_once('~')
                .ok_or_else(|| err(text, format!("edge `{edge}` of node {to} has no `~`")))?;
            let o = OPS.iter().position(|&x| x == op).ok_or_else(|| {
                err(
                    text,
                    format!(
                        "unknown operation `{op}` on edge {to}<-{from}; known: {}",
                        OPS.join(", ")
                    ),
                )
            })?;
            match input.parse::<usize>() {
                Ok(i) if i == from => {}
                _ => {
                    return Err(err(
                        text,
                        format!(
                            "edge `{edge}` of node {to}: input must be `{from}`, got `{input}`"
                        ),
                    ))
                }
            }
            choices.push(o);
        }
    }
    Ok(Architecture::new(SPACE_NAME, choices))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|";

    #[test]
    fn reads_the_documented_example() {
        let a = parse_arch_str(S).unwrap();
        // Hand-read: conv3x3=3, conv3x3=3, avg=4, skip=1, conv3x3=3, skip=1.
        assert_eq!(a.choices, vec![3, 3, 4, 1, 3, 1]);
        assert_eq!(a.space, "nb201");
        assert_eq!(to_arch_str(&a).unwrap(), S);
        assert_eq!(parse_arch_str(&format!("  {S}\n")).unwrap(), a);
    }

    #[test]
    fn malformed_strings_name_the_problem() {
        let cases = [
            ("", "start and end"),
            ("|none~0|+|none~0|none~1|", "2 node groups"),
            (
                "|none~0|+|none~0|+|none~0|none~1|none~2|",
                "node 2 has 1 edges",
            ),
            (
                "|none~0|+|none~0|conv~1|+|none~0|none~1|none~2|",
                "unknown operation `conv`",
            ),
            ("|none~0|+|none~0|none1|+|none~0|none~1|none~2|", "no `~`"),
            (
                "|none~0|+|none~1|none~0|+|none~0|none~1|none~2|",
                "input must be `0`",
            ),
            ("|none~0|+|none~0|none~x|+|none~0|none~1|none~2|", "got `x`"),
            ("|none~0|+||+|none~0|none~1|none~2|", "node 2 group"),
        ];
        for (s, want) in cases {
            let e = parse_arch_str(s).unwrap_err();
            assert!(matches!(e, NasError::Architecture(_)), "{s}: {e}");
            assert!(e.to_string().contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn writing_checks_the_architecture() {
        assert!(to_arch_str(&Architecture::new("nb201", vec![0; 5])).is_err());
        assert!(to_arch_str(&Architecture::new("nb201", vec![5, 0, 0, 0, 0, 0])).is_err());
        assert!(to_arch_str(&Architecture::new("darts", vec![0; 6])).is_err());
    }
}
