//! YAML experiment configs: includes, overrides, strict typed decoding with file, line and key path in every error; sweep expansion.
