//! The supernet trainer: owns supernet weights, their optimizer and the data; answers strategies with plain data.
