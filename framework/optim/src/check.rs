//! Small value checks shared by the `*Params::check` methods; each error names the key.
use nas_core::params::ensure;
use nas_core::Result;

/// `value` must be finite and `>= 0`.
pub(crate) fn non_negative(component: &str, key: &str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value >= 0.0,
        component,
        key,
        format!("must be a finite number >= 0, got {value}"),
    )
}

/// `value` must be finite and `> 0`.
pub(crate) fn positive(component: &str, key: &str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value > 0.0,
        component,
        key,
        format!("must be a finite number > 0, got {value}"),
    )
}

/// `value` must lie in `[0, 1)`.
pub(crate) fn unit_interval(component: &str, key: &str, value: f64) -> Result<()> {
    ensure(
        (0.0..1.0).contains(&value),
        component,
        key,
        format!("must lie in [0, 1), got {value}"),
    )
}
