//! Loads strategy plugins from shared libraries, checks their ABI and protocol, and wraps them as strategies.
