//! DARTS strategies: first and second order (Liu et al. 2019).
