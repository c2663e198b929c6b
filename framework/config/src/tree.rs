//! Operations on the untyped config tree (`serde_json::Value`): deep merge, and reading and
//! writing at a key path.
use serde_json::{Map, Value};

/// Splits a dotted key path (`a.b.c`) into segments. Empty segments are kept so that callers
/// can reject them.
pub fn split_path(path: &str) -> Vec<String> {
    path.split('.').map(String::from).collect()
}

/// Joins segments with `.`; the empty path is written `.` (the document itself).
pub fn join_path(path: &[String]) -> String {
    if path.is_empty() {
        ".".to_string()
    } else {
        path.join(".")
    }
}

/// Deep merge of `top` onto `base`: mappings merge key by key (recursively), anything else in
/// `top` (scalars, lists, null) replaces what `base` has. `top` wins.
pub fn deep_merge(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(b), Value::Object(t)) => {
            for (k, v) in t {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, t) => *b = t,
    }
}

/// The value at `path` (mapping keys, or decimal indices into lists).
pub fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Sets `path` to `new`, replacing what was there. Missing (or null) intermediate mappings are
/// created. Fails with a message when an intermediate value is a scalar or list that the path
/// would have to go through (a list item may be addressed by an existing index).
pub fn set_path(root: &mut Value, path: &[String], new: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        *root = new;
        return Ok(());
    };
    let mut cur = root;
    for (i, seg) in parents.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        cur = match cur {
            Value::Object(m) => m
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            Value::Array(a) => {
                let len = a.len();
                match seg.parse::<usize>().ok().and_then(|j| a.get_mut(j)) {
                    Some(item) => item,
                    None => {
                        return Err(format!(
                            "`{}` is a list of {len} items; `{seg}` is not an index into it",
                            join_path(&path[..i])
                        ))
                    }
                }
            }
            other => {
                return Err(format!(
                    "`{}` is {}, not a mapping, so `{}` cannot be set inside it",
                    join_path(&path[..i]),
                    kind_name(other),
                    join_path(path)
                ))
            }
        };
    }
    if cur.is_null() {
        *cur = Value::Object(Map::new());
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), new);
            Ok(())
        }
        Value::Array(a) => {
            let len = a.len();
            match last.parse::<usize>().ok().and_then(|j| a.get_mut(j)) {
                Some(item) => {
                    *item = new;
                    Ok(())
                }
                None => Err(format!(
                    "`{}` is a list of {len} items; `{last}` is not an index into it",
                    join_path(parents)
                )),
            }
        }
        other => Err(format!(
            "`{}` is {}, not a mapping, so `{}` cannot be set inside it",
            join_path(parents),
            kind_name(other),
            join_path(path)
        )),
    }
}

/// A short name of a value's kind, for messages.
pub fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_maps_recursively_and_replaces_scalars_and_lists() {
        let mut base = json!({"a": {"x": 1, "y": [1, 2, 3]}, "b": 1, "keep": true});
        deep_merge(
            &mut base,
            json!({"a": {"y": [9], "z": 2}, "b": {"now": "map"}}),
        );
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": [9], "z": 2}, "b": {"now": "map"}, "keep": true})
        );
    }

    #[test]
    fn set_creates_missing_maps_and_refuses_to_cross_scalars() {
        let mut v = json!({"a": 1, "l": [{"k": 0}]});
        set_path(&mut v, &split_path("x.y.z"), json!(3)).unwrap();
        set_path(&mut v, &split_path("l.0.k"), json!(5)).unwrap();
        assert_eq!(v, json!({"a": 1, "x": {"y": {"z": 3}}, "l": [{"k": 5}]}));
        let err = set_path(&mut v, &split_path("a.b"), json!(1)).unwrap_err();
        assert!(err.contains("`a` is a number"), "{err}");
        assert!(set_path(&mut v, &split_path("l.4.k"), json!(1)).is_err());
        assert_eq!(get_path(&v, &split_path("x.y.z")), Some(&json!(3)));
        assert_eq!(get_path(&v, &split_path("l.0.k")), Some(&json!(5)));
        assert_eq!(get_path(&v, &split_path("l.1")), None);
    }
}
